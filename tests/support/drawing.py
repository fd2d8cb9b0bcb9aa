"""Probability maps drawn from known centrelines: test input for the post-processing stages.

Feeding truth-derived maps to the lines stage tests lines, tracking and spacing without depending on
how good a model is.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def curve(x0: float, y0: float, x1: float, y1: float, bow: float = 0.0, n: int = 400) -> np.ndarray:
    """(n, 2) x, y points of a straight or bowed (quadratic) curve from (x0, y0) to (x1, y1)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b = np.array([x0, y0]), np.array([x1, y1])
    normal = np.array([-(y1 - y0), x1 - x0]) / max(np.hypot(x1 - x0, y1 - y0), 1e-9)
    return a + (b - a) * t + bow * 4 * t * (1 - t) * normal


def line_mask(shape: tuple[int, int], xy: np.ndarray, half_width: float = 1.5) -> np.ndarray:
    """Pixels within ``half_width`` of a densely sampled curve."""
    seed = np.ones(shape, dtype=bool)
    ij = np.round(xy[:, ::-1]).astype(int)
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < shape[0]) & (ij[:, 1] >= 0) & (ij[:, 1] < shape[1])
    seed[ij[ok, 0], ij[ok, 1]] = False
    return ndimage.distance_transform_edt(seed) <= half_width


def prob_map(mask: np.ndarray, level: float = 0.9, blur: float = 1.0) -> np.ndarray:
    """A soft probability map whose 0.5 contour is roughly the mask outline."""
    return np.clip(ndimage.gaussian_filter(mask.astype(np.float32), blur) * 2 * level, 0, 1)


def stack(shape: tuple[int, int], n_masks: int, maps: list[np.ndarray]) -> np.ndarray:
    """(n_masks, H, W) model-like output: the given maps first, empty (near-zero) spare masks after."""
    out = np.full((n_masks, *shape), 0.01, dtype=np.float32)
    for i, m in enumerate(maps):
        out[i] = m
    return out
