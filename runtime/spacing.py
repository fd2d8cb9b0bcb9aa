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
from numba import njit

from dislotrack.runtime.results import Line, Spacing


@dataclass(frozen=True)
class SpacingConfig:
    """Which lines count as neighbours in a pile-up."""

    max_angle_deg: float = 30.0  # lines more differently oriented belong to different pile-ups
    min_overlap: float = 0.5  # overlap along the lines, as a fraction of the shorter one
    max_spacing_px: float = float("inf")
    min_facing_points: int = 10  # fewer facing points than this: use all points


def _project(points: np.ndarray, polylines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (B, P, 2) points and (B, Q, 2) polylines: each point's distance to its polyline and
    whether the nearest point is an end of it (the point lies beyond the polyline)."""
    points = np.ascontiguousarray(points, dtype=np.float64)
    polylines = np.ascontiguousarray(polylines, dtype=np.float64)
    return _project_kernel(points, polylines)


@njit(cache=True, nogil=True)
def _project_kernel(points, polylines):
    """Compiled loop over points and segments: it runs once per frame in the sequential stage of the
    pipeline, where numpy's (B, P, S, 2) temporaries cost milliseconds. The first nearest segment
    wins a tie, as ``argmin`` would."""
    n_b, n_p = points.shape[0], points.shape[1]
    n_s = polylines.shape[1] - 1
    dist = np.empty((n_b, n_p))
    at_end = np.zeros((n_b, n_p), dtype=np.bool_)
    for b in range(n_b):
        for p in range(n_p):
            px, py = points[b, p, 0], points[b, p, 1]
            best, best_s, best_t = np.inf, 0, 0.0
            for s in range(n_s):
                ax, ay = polylines[b, s, 0], polylines[b, s, 1]
                abx, aby = polylines[b, s + 1, 0] - ax, polylines[b, s + 1, 1] - ay
                apx, apy = px - ax, py - ay
                t_raw = (apx * abx + apy * aby) / max(abx * abx + aby * aby, 1e-12)
                t = min(max(t_raw, 0.0), 1.0)
                dx, dy = apx - t * abx, apy - t * aby
                d2 = dx * dx + dy * dy
                if d2 < best:
                    best, best_s, best_t = d2, s, t_raw
            dist[b, p] = np.sqrt(best)
            at_end[b, p] = (best_s == 0 and best_t <= 0) or (best_s == n_s - 1 and best_t >= 1)
    return dist, at_end


def _one_way(points: np.ndarray, others: np.ndarray, min_facing: int) -> np.ndarray:
    dist, at_end = _project(points, others)
    facing = ~at_end
    n_facing = facing.sum(axis=1)
    mean_facing = (dist * facing).sum(axis=1) / np.maximum(n_facing, 1)
    return np.where(n_facing >= min_facing, mean_facing, dist.mean(axis=1))


def line_distances(a: np.ndarray, b: np.ndarray, min_facing: int = 10) -> np.ndarray:
    """Mean distance of each pair of (B, 50, 2) lines over their facing points, symmetric."""
    return 0.5 * (_one_way(a, b, min_facing) + _one_way(b, a, min_facing))


def line_distance(a: np.ndarray, b: np.ndarray, min_facing: int = 10) -> float:
    """Mean distance between two (50, 2) lines over their facing points, symmetric."""
    return float(line_distances(a[None], b[None], min_facing)[0])


def _direction(points: np.ndarray) -> np.ndarray:
    d = points[-1] - points[0]
    n = np.hypot(*d)
    return d / n if n > 0 else np.array([1.0, 0.0])


def _overlaps(points: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(n, n) overlap along line i's direction of lines i and j, as a fraction of the shorter one."""
    proj = np.einsum("jpk,ik->ijp", points, dirs)  # line j's points projected on line i's direction
    lo, hi = proj.min(axis=2), proj.max(axis=2)
    own_lo, own_hi = np.diag(lo)[:, None], np.diag(hi)[:, None]
    inter = np.minimum(hi, own_hi) - np.maximum(lo, own_lo)
    shorter = np.minimum(hi - lo, own_hi - own_lo)
    return np.where(shorter > 0, inter / np.maximum(shorter, 1e-9), 0.0)


def neighbour_pairs(
    points: Sequence[np.ndarray], config: SpacingConfig | None = None
) -> list[tuple[int, int, float]]:
    """(i, j, spacing_px) for the mutually nearest neighbours of a frame's lines, i < j.

    Ordering along the glide direction uses the centres' offsets along each line's normal (cheap,
    all pairs at once); the exact mean distance is computed only for the pairs that result.
    """
    config = config or SpacingConfig()
    n = len(points)
    if n < 2:
        return []
    pts = np.stack(points)
    dirs = np.stack([_direction(p) for p in pts])
    centres = pts.mean(axis=1)
    normals = np.stack([-dirs[:, 1], dirs[:, 0]], axis=1)
    offset = np.einsum("ijk,ik->ij", centres[None] - centres[:, None], normals)  # j relative to i
    ok = np.abs(dirs @ dirs.T) >= np.cos(np.radians(config.max_angle_deg))
    ok &= _overlaps(pts, dirs) >= config.min_overlap
    np.fill_diagonal(ok, False)
    nearest = np.full((n, 2), -1)
    for i in range(n):
        for side, sel in enumerate((offset[i] > 0, offset[i] < 0)):
            cand = np.flatnonzero(ok[i] & sel)
            if cand.size:
                nearest[i, side] = cand[np.argmin(np.abs(offset[i, cand]))]
    mutual = sorted({(i, int(j)) for i in range(n) for j in nearest[i] if j > i and i in nearest[j]})
    if not mutual:
        return []
    ii, jj = np.array(mutual).T
    dist = line_distances(pts[ii], pts[jj], config.min_facing_points)
    pairs = [(int(i), int(j), float(d)) for i, j, d in zip(ii, jj, dist, strict=True)]
    return [p for p in pairs if p[2] <= config.max_spacing_px]


def frame_spacings(lines: Sequence[Line], config: SpacingConfig | None = None) -> tuple[Spacing, ...]:
    """Spacings of a frame's neighbouring tracked lines, keyed by track IDs (smaller ID first)."""
    pts = [np.asarray(line.points, dtype=np.float64) for line in lines]
    out = []
    for i, j, d in neighbour_pairs(pts, config):
        a, b = sorted((lines[i].track_id, lines[j].track_id))
        out.append(Spacing(a, b, d))
    return tuple(sorted(out, key=lambda s: (s.track_a, s.track_b)))
