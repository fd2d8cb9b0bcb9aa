"""Lee thinning of 2D masks, bit-identical to ``skimage.morphology.skeletonize(image, method="lee")``.

Lee's thinning (Lee, Kashyap & Chu 1994) is the method of the paper this runtime follows, so its
skeletons must not change. skimage implements it for 3D only: a 2D image is embedded as one plane of
a zero-padded volume, and every foreground pixel then gets the general 3x3x3 tests (an Euler
look-up over eight octants, a recursive octree labelling). That costs ~2 ms on a frame's packed
canvas. With the planes above and below empty, both tests depend only on the 8 in-plane
neighbours, so here they are evaluated once for all 256 neighbourhood codes, on the 3x3x3
neighbourhood with skimage's rules (its Euler table and octants; its octree labelling, which is
26-connected labelling); the thinning loop (same border order, same candidate collection in raster
order, same sequential re-check, same termination) then only looks codes up in two tables.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit
from scipy import ndimage

# skimage's delta-G_26 column of Table 2 of [Lee94]: Euler characteristic change of an octant,
# indexed by the octant's 8 voxels as bits (bit 0 is the centre, so only odd indices occur).
_EULER_ODD = (
    1, -1, -1, 1, -3, -1, -1, 1, -1, 1, 1, -1, 3, 1, 1, -1, -3, -1, 3, 1, 1, -1, 3, 1, -1, 1, 1, -1,
    3, 1, 1, -1, -3, 3, -1, 1, 1, 3, -1, 1, -1, 1, 1, -1, 3, 1, 1, -1, 1, 3, 3, 1, 5, 3, 3, 1, -1, 1,
    1, -1, 3, 1, 1, -1, -7, -1, -1, 1, -3, -1, -1, 1, -1, 1, 1, -1, 3, 1, 1, -1, -3, -1, 3, 1, 1, -1,
    3, 1, -1, 1, 1, -1, 3, 1, 1, -1, -3, 3, -1, 1, 1, 3, -1, 1, -1, 1, 1, -1, 3, 1, 1, -1, 1, 3, 3, 1,
    5, 3, 3, 1, -1, 1, 1, -1, 3, 1, 1, -1,
)  # fmt: skip
# For each octant, the 27-neighbourhood indices (p, r, c raster order) that give bits 7 down to 1.
_OCTANTS = (
    (2, 1, 11, 10, 5, 4, 14),
    (0, 9, 3, 12, 1, 10, 4),
    (8, 7, 17, 16, 5, 4, 14),
    (6, 15, 7, 16, 3, 12, 4),
    (20, 23, 19, 22, 11, 14, 10),
    (18, 21, 9, 12, 19, 22, 10),
    (26, 23, 17, 14, 25, 22, 16),
    (24, 25, 15, 16, 21, 22, 12),
)
# In-plane neighbours as (dr, dc), in the bit order of a neighbourhood code.
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_CUBE = np.ones((3, 3, 3), dtype=bool)


def _euler_invariant(cube: np.ndarray) -> bool:
    lut = np.zeros(256, dtype=np.int64)
    lut[1::2] = _EULER_ODD
    flat = cube.ravel()
    total = 0
    for octant in _OCTANTS:
        n = 1
        for bit, index in zip((128, 64, 32, 16, 8, 4, 2), octant, strict=True):
            if flat[index]:
                n |= bit
        total += lut[n]
    return total == 0


def _simple(cube: np.ndarray) -> bool:
    """At most one 26-connected piece of foreground around the centre (skimage's octree labelling
    joins voxels that share an octant, which for two neighbours of the centre is 26-adjacency)."""
    rest = cube.copy()
    rest[1, 1, 1] = False
    return ndimage.label(rest, _CUBE)[1] <= 1


@cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Per 8-neighbourhood code: may the pixel be collected as a candidate (not an endpoint, Euler
    invariant, simple), and is it simple (the sequential re-check)."""
    candidate = np.zeros(256, dtype=np.bool_)
    simple = np.zeros(256, dtype=np.bool_)
    for code in range(256):
        cube = np.zeros((3, 3, 3), dtype=bool)
        cube[1, 1, 1] = True
        for bit, (dr, dc) in enumerate(_NEIGHBOURS):
            cube[1, 1 + dr, 1 + dc] = bool(code >> bit & 1)
        simple[code] = _simple(cube)
        endpoint = cube.sum() == 2
        candidate[code] = not endpoint and _euler_invariant(cube) and simple[code]
    return candidate, simple


@njit(cache=True, nogil=True)
def _code(flat, i, width):
    return (
        flat[i - width - 1]
        | flat[i - width] << 1
        | flat[i - width + 1] << 2
        | flat[i - 1] << 3
        | flat[i + 1] << 4
        | flat[i + width - 1] << 5
        | flat[i + width] << 6
        | flat[i + width + 1] << 7
    )


@njit(cache=True, nogil=True)
def _thin(mask, candidate, simple):
    """skimage's loop over the four in-plane border directions (its order: row above, row below,
    column right, column left), until a whole round removes nothing. The mask is copied into a
    zero-padded uint8 image (no bounds checks) while its foreground is listed in raster order, so
    candidates are collected in skimage's order without scanning the background again."""
    h, w = mask.shape
    width = w + 2
    flat = np.zeros((h + 2) * width, dtype=np.uint8)
    fg = np.empty(h * w, dtype=np.int64)
    n = 0
    for y in range(h):
        for x in range(w):
            if mask[y, x]:
                i = (y + 1) * width + x + 1
                flat[i] = 1
                fg[n] = i
                n += 1
    found = np.empty(n, dtype=np.int64)
    borders = (-width, width, 1, -1)
    unchanged = 0
    while unchanged < 4:
        unchanged = 0
        for step in borders:
            m = 0
            for k in range(n):
                i = fg[k]
                if flat[i + step] == 0 and candidate[_code(flat, i, width)]:
                    found[m] = i
                    m += 1
            removed = False
            for k in range(m):
                i = found[k]
                if simple[_code(flat, i, width)]:
                    flat[i] = 0
                    removed = True
            if not removed:
                unchanged += 1
                continue
            kept = 0
            for k in range(n):
                if flat[fg[k]]:
                    fg[kept] = fg[k]
                    kept += 1
            n = kept
    out = np.zeros((h, w), dtype=np.bool_)
    for k in range(n):
        out[fg[k] // width - 1, fg[k] % width - 1] = True
    return out


def lee_skeleton(image: np.ndarray) -> np.ndarray:
    """Lee skeleton of a 2D mask (nonzero is foreground), as skimage's ``method="lee"`` gives it."""
    if image.ndim != 2:
        raise ValueError(f"lee_skeleton needs a 2D image, got {image.ndim}D")
    return _thin(np.asarray(image, dtype=bool), *_tables())
