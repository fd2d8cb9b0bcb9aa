"""Spacing of neighbouring dislocations in a pile-up: the papers' mean distance over the 50 points.

Neighbours: two lines of similar orientation that overlap along their length and are the nearest to
each other on their respective sides along the glide direction (perpendicular to the lines), mutually.
So a pile-up of k lines gives k - 1 pairs (1-2, 2-3, ...), never 1-3, and lines of another pile-up
(other orientation, or side by side instead of stacked) are not paired.

Distance of two lines: the mean, over the points of each line that face the other one, of the
distance to the other line's polyline, averaged both ways. Points beyond the other line's ends are
left out, so a line cut by the frame edge does not inflate the spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dislotrack.runtime.results import Line, Spacing


@dataclass(frozen=True)
class SpacingConfig:
    """Which lines count as neighbours in a pile-up."""

    max_angle_deg: float = 30.0  # lines more differently oriented belong to different pile-ups
    min_overlap: float = 0.5  # overlap along the lines, as a fraction of the shorter one
    max_spacing_px: float = float("inf")
    min_facing_points: int = 10  # fewer facing points than this: use all points


def _project(points: np.ndarray, polyline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point to the polyline and whether its nearest point is an end of it."""
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    denom = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12)
    t_raw = np.einsum("pqj,qj->pq", points[:, None, :] - a[None], ab) / denom
    t = np.clip(t_raw, 0.0, 1.0)
    dist = np.linalg.norm(points[:, None, :] - (a[None] + t[..., None] * ab[None]), axis=2)
    k = dist.argmin(axis=1)
    rows = np.arange(len(points))
    at_end = ((k == 0) & (t_raw[rows, k] <= 0)) | ((k == len(ab) - 1) & (t_raw[rows, k] >= 1))
    return dist[rows, k], at_end


def _one_way(points: np.ndarray, other: np.ndarray, min_facing: int) -> float:
    dist, at_end = _project(points, other)
    facing = dist[~at_end]
    return float(facing.mean() if facing.size >= min_facing else dist.mean())


def line_distance(a: np.ndarray, b: np.ndarray, min_facing: int = 10) -> float:
    """Mean distance between two (50, 2) lines over their facing points, symmetric."""
    return 0.5 * (_one_way(a, b, min_facing) + _one_way(b, a, min_facing))


def _direction(points: np.ndarray) -> np.ndarray:
    d = points[-1] - points[0]
    n = np.hypot(*d)
    return d / n if n > 0 else np.array([1.0, 0.0])


def _overlap(a: np.ndarray, b: np.ndarray, u: np.ndarray) -> float:
    pa, pb = a @ u, b @ u
    inter = min(pa.max(), pb.max()) - max(pa.min(), pb.min())
    shorter = min(np.ptp(pa), np.ptp(pb))
    return float(inter / shorter) if shorter > 0 else 0.0


def neighbour_pairs(points: Sequence[np.ndarray], config: SpacingConfig | None = None):
    """(i, j, spacing_px) for the mutually nearest neighbours of a frame's lines, i < j."""
    config = config or SpacingConfig()
    n = len(points)
    dirs = [_direction(p) for p in points]
    centres = [p.mean(axis=0) for p in points]
    cos_max = np.cos(np.radians(config.max_angle_deg))
    best: dict[tuple[int, int], tuple[int, float]] = {}
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            cos = float(dirs[i] @ dirs[j])
            if abs(cos) < cos_max:
                continue
            u = dirs[i] + np.sign(cos) * dirs[j]
            u = u / np.hypot(*u)
            if _overlap(points[i], points[j], u) < config.min_overlap:
                continue
            # u follows line i's own orientation, so "side" is relative to line i
            side = 1 if float((centres[j] - centres[i]) @ np.array([-u[1], u[0]])) > 0 else -1
            d = line_distance(points[i], points[j], config.min_facing_points)
            if d > config.max_spacing_px:
                continue
            if (i, side) not in best or d < best[(i, side)][1]:
                best[(i, side)] = (j, d)
    pairs = []
    for (i, _side), (j, d) in best.items():
        if i < j and any(best.get((j, s), (-1, 0.0))[0] == i for s in (1, -1)):
            pairs.append((i, j, d))
    return sorted(pairs)


def frame_spacings(lines: Sequence[Line], config: SpacingConfig | None = None) -> tuple[Spacing, ...]:
    """Spacings of a frame's neighbouring tracked lines, keyed by track IDs (smaller ID first)."""
    pts = [np.asarray(line.points, dtype=np.float64) for line in lines]
    out = []
    for i, j, d in neighbour_pairs(pts, config):
        a, b = sorted((lines[i].track_id, lines[j].track_id))
        out.append(Spacing(a, b, d))
    return tuple(sorted(out, key=lambda s: (s.track_a, s.track_b)))
