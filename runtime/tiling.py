"""Tiling for frames larger than the model should see at once, with instances stitched across tiles.

A model with N masks can hold at most N dislocations per input, and a very large frame costs memory
quadratically; so large frames are cut into overlapping tiles, each tile's masks become line
candidates in frame coordinates, and candidates of neighbouring tiles that share pixels in the
overlap are merged into one before skeletonising, so a line crossing a tile border stays one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from dislotrack.runtime.lines import (
    Candidate,
    LineConfig,
    deduplicate,
    find_candidates,
    lines_from_candidates,
    overlap,
    shift_candidate,
)
from dislotrack.runtime.results import Line


@dataclass(frozen=True)
class TileConfig:
    """Frames with a side above ``max_side`` are processed as ``tile``-sized tiles overlapping by
    ``overlap`` pixels (more than a line's width, so a border-crossing line shares pixels)."""

    max_side: int = 1536
    tile: int = 512
    overlap: int = 64
    batch: int = 4
    saturated_fraction: float = 0.9  # this share of the N masks holding distinct lines: retile
    min_tile: int = 128


def is_saturated(masks_with_lines: int, n_masks: int, config: TileConfig) -> bool:
    """Distinct lines in nearly every mask: the frame may hold more dislocations than N masks can."""
    return config.saturated_fraction > 0 and masks_with_lines >= math.ceil(
        config.saturated_fraction * n_masks
    )


def halved(shape: tuple[int, ...], config: TileConfig) -> TileConfig | None:
    """Tiles of about half the frame (multiple of 32) for a saturated frame; None if too small."""
    side = -(-(max(shape[:2]) // 2 + config.overlap) // 32) * 32
    if side < config.min_tile or side >= max(shape[:2]):
        return None
    return replace(config, tile=side)


def needs_tiling(shape: tuple[int, ...], config: TileConfig) -> bool:
    return max(shape[:2]) > config.max_side


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering 0..n with tiles of ``tile`` overlapping by at least ``overlap``."""
    if n <= tile:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, n - tile, step))
    return [*starts, n - tile]


def tile_boxes(height: int, width: int, config: TileConfig) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of every tile."""
    th, tw = min(config.tile, height), min(config.tile, width)
    return [
        (y, x, y + th, x + tw)
        for y in tile_starts(height, th, config.overlap)
        for x in tile_starts(width, tw, config.overlap)
    ]


def _union(cands: Sequence[Candidate]) -> Candidate:
    y0 = min(c.y0 for c in cands)
    x0 = min(c.x0 for c in cands)
    y1 = max(c.bbox[2] for c in cands)
    x1 = max(c.bbox[3] for c in cands)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for c in cands:
        h, w = c.mask.shape
        mask[c.y0 - y0 : c.y0 - y0 + h, c.x0 - x0 : c.x0 - x0 + w] |= c.mask
    n_pix = int(np.count_nonzero(mask))
    mean_prob = sum(c.mean_prob * c.n_pixels for c in cands) / sum(c.n_pixels for c in cands)
    _, n_parts = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    return Candidate(mask, y0, x0, n_pix, float(mean_prob), cands[0].channel, n_parts == 1)


def merge_across_tiles(per_tile: Sequence[Sequence[Candidate]], min_shared: int) -> list[Candidate]:
    """Merge candidates of different tiles that share at least ``min_shared`` pixels (union-find)."""
    flat = [(t, c) for t, cands in enumerate(per_tile) for c in cands]
    parent = list(range(len(flat)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (ti, ci) in enumerate(flat):
        for j in range(i + 1, len(flat)):
            tj, cj = flat[j]
            if ti != tj and overlap(ci, cj) >= min_shared:
                parent[root(j)] = root(i)
    groups: dict[int, list[Candidate]] = {}
    for i, (_, c) in enumerate(flat):
        groups.setdefault(root(i), []).append(c)
    return [g[0] if len(g) == 1 else _union(g) for g in groups.values()]


def predict_lines_tiled(
    model: Any,
    image: np.ndarray,
    threshold: float,
    line_config: LineConfig,
    config: TileConfig,
    with_labels: bool = True,
) -> tuple[tuple[Line, ...], np.ndarray | None]:
    """Lines of one large frame from overlapping tiles, stitched into frame coordinates."""
    boxes = tile_boxes(image.shape[0], image.shape[1], config)
    per_tile: list[list[Candidate]] = []
    for k in range(0, len(boxes), config.batch):
        chunk = boxes[k : k + config.batch]
        probs = model.predict(np.stack([image[y0:y1, x0:x1] for y0, x0, y1, x1 in chunk]))
        for (y0, x0, _, _), p in zip(chunk, probs, strict=True):
            local = deduplicate(find_candidates(p, threshold, line_config), line_config)
            per_tile.append([shift_candidate(c, y0, x0) for c in local])
    merged = merge_across_tiles(per_tile, max(1, line_config.min_pixels // 2))
    kept = deduplicate(merged, line_config)
    return lines_from_candidates(kept, image.shape[:2], line_config, with_labels)
