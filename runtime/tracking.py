"""Persistent dislocation identities across frames (trackpy-style streaming linker + batch wrapper).

Cost of continuing a track with a line = mean closest-point distance between their 50-point lines
(symmetric); one optimal assignment per frame (``linear_sum_assignment``) with a gate; a track that
finds no line may be continued up to ``max_gap`` frames later (gap closing: a detection missed in one
frame must not split a track); unmatched lines start tracks, tracks missing too long end.
A second, tighter assignment then pairs the tracks and lines left over when one lies on the other
(directed mean distance): a model may hand a line to one mask in one frame and to two pieces in the
next, and the larger piece must keep the line's identity.
Optional drift compensation: the whole image's shift between frames (phase correlation) is added to
every track's predicted position before matching, so stage drift is not mistaken for glide.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit
from scipy.optimize import linear_sum_assignment

from dislotrack.runtime.geometry import arclength
from dislotrack.runtime.results import Line


@dataclass(frozen=True)
class TrackerConfig:
    """Linking settings; distances in pixels of the original frame."""

    max_cost_px: float = 10.0  # gate: a line farther than this (mean distance) is not the same one
    # When frames are skipped (live processing drops frames), lines move farther between processed frames:
    # the gate grows with the square root of the frame step since the last processed frame, up to this.
    max_gate_px: float = 40.0
    max_gap: int = 3  # frames a track may go undetected and still be continued
    # left-over tracks and lines continue each other when one lies this close (mean distance of its
    # points to the other) to the other: the same dislocation seen whole in one frame, in pieces in
    # the next; tight, because a piece of a neighbour lies at least the pile-up spacing away
    partial_gate_px: float = 3.0
    predict_velocity: bool = True  # extrapolate a track's last displacement to the next frame
    velocity_smoothing: float = 0.5  # weight of the newest displacement in the velocity estimate
    drift: bool = False  # compensate whole-image drift by phase correlation
    drift_downsample: int = 2  # phase correlation on an image this many times smaller (speed)


def mean_closest_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean closest-point distance between two (P, 2) point sets."""
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    return 0.5 * float(d.min(axis=1).mean() + d.min(axis=0).mean())


def _bbox_gap(lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray) -> np.ndarray:
    """Distance between axis-aligned boxes (pairwise), a lower bound of every closest-point distance."""
    gap = np.maximum(lo_b[None] - hi_a[:, None], lo_a[:, None] - hi_b[None])
    return np.linalg.norm(np.maximum(gap, 0.0), axis=2)


def directed_costs(
    tracks: Sequence[np.ndarray], lines: Sequence[np.ndarray], gate: float
) -> tuple[np.ndarray, np.ndarray]:
    """(T, L) mean distances of each track's points to each line's closest points, and of each
    line's points to each track's; pairs whose boxes are farther apart than the gate are inf."""
    to_line = np.full((len(tracks), len(lines)), np.inf)
    to_track = to_line.copy()
    if not len(tracks) or not len(lines):
        return to_line, to_track
    t, ln = np.stack(tracks), np.stack(lines)
    rows, cols = np.nonzero(_bbox_gap(t.min(axis=1), t.max(axis=1), ln.min(axis=1), ln.max(axis=1)) <= gate)
    if rows.size:
        a, b = t[rows], ln[cols]
        # (pairs, P, Q) squared distances as |a|^2 + |b|^2 - 2 a.b: one batched matmul, no 4-D temporaries
        d2 = (a**2).sum(axis=2)[:, :, None] + (b**2).sum(axis=2)[:, None, :] - 2 * (a @ b.transpose(0, 2, 1))
        np.maximum(d2, 0.0, out=d2)
        to_line[rows, cols] = np.sqrt(d2.min(axis=2)).mean(axis=1)
        to_track[rows, cols] = np.sqrt(d2.min(axis=1)).mean(axis=1)
    return to_line, to_track


def symmetric_cost(to_line: np.ndarray, to_track: np.ndarray) -> np.ndarray:
    """The linking cost from ``directed_costs``: both directions count, so a short piece lying on a
    long track costs more than the whole line would."""
    return 0.5 * (to_line + to_track)


def cost_matrix(tracks: Sequence[np.ndarray], lines: Sequence[np.ndarray], gate: float) -> np.ndarray:
    """(T, L) mean closest-point distances; pairs whose boxes are farther apart than the gate are inf."""
    return symmetric_cost(*directed_costs(tracks, lines, gate))


def assign(cost: np.ndarray, gate: float) -> list[tuple[int, int]]:
    """Optimal one-to-one matches with cost within the gate.

    Pairs beyond the gate cost more than any set of allowed pairs: kept at their own cost, they
    would let the solver trade one good match for two bad ones that the gate then throws away."""
    if cost.size == 0:
        return []
    finite = np.where(cost <= gate, cost, gate * (min(cost.shape) + 1) + 1.0)
    rows, cols = linear_sum_assignment(finite)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= gate]


def estimate_drift(previous: np.ndarray, current: np.ndarray, downsample: int = 1) -> np.ndarray:
    """(dx, dy) by which the image content moved from ``previous`` to ``current``."""
    from skimage.registration import phase_cross_correlation

    step = max(int(downsample), 1)
    a = previous[::step, ::step].astype(np.float32)
    b = current[::step, ::step].astype(np.float32)
    shift, _, _ = phase_cross_correlation(a, b, normalization=None)
    # shift registers ``current`` onto ``previous``; the content moved by its opposite.
    return -np.array([shift[1], shift[0]], dtype=np.float64) * step


def line_shift(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """How far a line moved between two frames, robust to a change of its extent (a mask that held
    part of it in one frame and all of it in the next): the median shift between the shorter line's
    points and their closest points on the other. Centroids would count the extent change as glide."""
    old = np.ascontiguousarray(old, dtype=np.float64)
    new = np.ascontiguousarray(new, dtype=np.float64)
    if arclength(new)[-1] <= arclength(old)[-1]:
        return np.median(new - old[nearest_points(new, old)], axis=0)
    return np.median(new[nearest_points(old, new)] - old, axis=0)


@njit(cache=True, nogil=True)
def nearest_points(a, b):
    """Index of the closest (M, 2) point of ``b`` to each (K, 2) point of ``a`` (the first of equals):
    a compiled loop, since it runs for every matched track in the pipeline's sequential stage."""
    out = np.empty(a.shape[0], dtype=np.int64)
    for i in range(a.shape[0]):
        best, k = np.inf, 0
        for j in range(b.shape[0]):
            dx, dy = a[i, 0] - b[j, 0], a[i, 1] - b[j, 1]
            d2 = dx * dx + dy * dy
            if d2 < best:
                best, k = d2, j
        out[i] = k
    return out


@dataclass
class Track:
    """A live track: its last line, where it is expected next and how long it has been missing."""

    track_id: int
    points: np.ndarray  # last seen (or drift-corrected) (50, 2) points
    last_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    missed: int = 0

    def predicted(self, frame: int, use_velocity: bool) -> np.ndarray:
        steps = frame - self.last_frame
        return self.points + (self.velocity * steps if use_velocity else 0.0)


class Linker:
    """Streaming linker: feed each frame's lines in order; get them back with persistent track IDs."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self.next_id = 0
        self._previous_image: np.ndarray | None = None
        self.drift_xy = np.zeros(2)  # accumulated drift since the first frame
        self._last_frame: int | None = None

    def gate(self, frame: int) -> float:
        """Gate for this frame: ``max_cost_px`` for consecutive frames, wider after skipped ones."""
        cfg = self.config
        step = 1 if self._last_frame is None else max(frame - self._last_frame, 1)
        return min(cfg.max_cost_px * math.sqrt(step), max(cfg.max_cost_px, cfg.max_gate_px))

    def _apply_drift(self, image: np.ndarray | None) -> None:
        if not self.config.drift or image is None:
            return
        if self._previous_image is not None and self._previous_image.shape == image.shape:
            shift = estimate_drift(self._previous_image, image, self.config.drift_downsample)
            self.drift_xy = self.drift_xy + shift
            for track in self.tracks:
                track.points = track.points + shift
        self._previous_image = image

    def update(self, frame: int, lines: Sequence[Line], image: np.ndarray | None = None) -> tuple[Line, ...]:
        """Link one frame's lines to the live tracks; returns the lines with their ``track_id`` set."""
        cfg = self.config
        self._apply_drift(image)
        predicted = [t.predicted(frame, cfg.predict_velocity) for t in self.tracks]
        points = [np.asarray(line.points, dtype=np.float64) for line in lines]
        gate = self.gate(frame)
        self._last_frame = frame
        to_line, to_track = directed_costs(predicted, points, gate)
        cost = symmetric_cost(to_line, to_track)
        matches = assign(cost, gate)
        partial = (
            self._partial(matches, cost, np.minimum(to_line, to_track)) if cfg.partial_gate_px > 0 else []
        )
        ids = [-1] * len(lines)
        matched_tracks = set()
        for k, (ti, li) in enumerate(matches + partial):
            track = self.tracks[ti]
            self._continue(track, frame, points[li], glide=k < len(matches))
            ids[li] = track.track_id
            matched_tracks.add(ti)
        for ti, track in enumerate(self.tracks):
            if ti not in matched_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= cfg.max_gap]
        for li, tid in enumerate(ids):
            if tid < 0:
                ids[li] = self._birth(frame, points[li])
        return tuple(dataclasses.replace(line, track_id=tid) for line, tid in zip(lines, ids, strict=True))

    def _partial(
        self, matches: list[tuple[int, int]], cost: np.ndarray, lies_on: np.ndarray
    ) -> list[tuple[int, int]]:
        """Matches among the tracks and lines the first assignment left, where one lies on the other;
        among those pairs the usual cost decides (the larger of two pieces is closer to the whole)."""
        free_t = np.setdiff1d(np.arange(cost.shape[0]), [m[0] for m in matches])
        free_l = np.setdiff1d(np.arange(cost.shape[1]), [m[1] for m in matches])
        if not free_t.size or not free_l.size:
            return []
        pick = np.ix_(free_t, free_l)
        sub = np.where(lies_on[pick] <= self.config.partial_gate_px, cost[pick], np.inf)
        if not np.isfinite(sub).any():
            return []
        return [(int(free_t[r]), int(free_l[c])) for r, c in assign(sub, float(sub[np.isfinite(sub)].max()))]

    def _continue(self, track: Track, frame: int, points: np.ndarray, glide: bool = True) -> None:
        """Move a track to its new line; a piece (``glide`` false) keeps the velocity."""
        if glide:
            steps = max(frame - track.last_frame, 1)
            moved = line_shift(track.points, points) / steps
            w = self.config.velocity_smoothing
            track.velocity = w * moved + (1 - w) * track.velocity
        track.points, track.last_frame, track.missed = points, frame, 0

    def _birth(self, frame: int, points: np.ndarray) -> int:
        track = Track(self.next_id, points, frame)
        self.next_id += 1
        self.tracks.append(track)
        return track.track_id


def link(
    frames: Iterable[tuple[int, Sequence[Line]]], config: TrackerConfig | None = None
) -> list[tuple[Line, ...]]:
    """Batch wrapper: (frame index, lines) pairs in order -> the same lines with track IDs."""
    linker = Linker(config)
    return [linker.update(frame, lines) for frame, lines in frames]
