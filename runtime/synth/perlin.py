"""Vectorised 2-D Perlin gradient noise.

Perlin noise on an axis-aligned lattice separates into x and y factors: the x part is evaluated once per
lattice row, and every image row is a weighted sum of four of those rows: per lattice cell one small
matrix product (rows in the cell x 4) @ (4 x image width). No per-pixel Python.
"""

from __future__ import annotations

import numpy as np


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _axis(n: int, lam: float, offset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cell index, fractional position and corner weights along one axis (float32)."""
    t = (np.arange(n, dtype=np.float64) + offset) / lam
    idx = np.floor(t).astype(np.intp)
    f = (t - idx).astype(np.float32)
    w1 = _fade(f)
    return idx, f, (1.0 - w1).astype(np.float32), w1.astype(np.float32)


def perlin(shape: tuple[int, int], lam: float, rng: np.random.Generator) -> np.ndarray:
    """Perlin noise (float32, roughly in [-0.7, 0.7]) with lattice spacing ``lam`` px and random phase."""
    h, w = shape
    ox, oy = rng.uniform(0.0, lam, size=2)
    jx, fx, wx0, wx1 = _axis(w, lam, ox)
    iy, fy, wy0, wy1 = _axis(h, lam, oy)
    ny, nx = int(iy[-1]) + 2, int(jx[-1]) + 2
    theta = rng.uniform(0.0, 2.0 * np.pi, size=(ny, nx))
    gx = np.cos(theta).astype(np.float32)
    gy = np.sin(theta).astype(np.float32)
    # Collapse the x corners for every lattice row: TX carries the x part of the dot product, TY the weights.
    gx0, gx1 = gx[:, jx], gx[:, jx + 1]
    gy0, gy1 = gy[:, jx], gy[:, jx + 1]
    t = np.empty((2 * ny, w), dtype=np.float32)
    t[:ny] = gx0 * (wx0 * fx) + gx1 * (wx1 * (fx - 1.0))
    t[ny:] = gy0 * wx0 + gy1 * wx1
    # Then every image row is a combination of four lattice rows: one (rows of a cell x 4) @ (4 x W) matrix
    # product per lattice cell.
    wts = np.stack([wy0, wy1, wy0 * fy, wy1 * (fy - 1.0)], axis=1)
    out = np.empty((h, w), dtype=np.float32)
    cuts = np.flatnonzero(np.diff(iy)) + 1
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), h], strict=True):
        j = int(iy[a])
        np.matmul(wts[a:b], t[[j, j + 1, ny + j, ny + j + 1]], out=out[a:b])
    return out
