"""What the live window shows, computed without Qt: colours, levels, mask overlay, spacing history.

Kept free of Qt so that every rule of the display (which pairs are plotted, which line a click
picks, which colour a track gets) is a small pure function with a plain unit test.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dislotrack.runtime.results import FrameResult, Line, Spacing

# Bright colours that stay apart from each other on grey TEM frames and on the plot's black.
PALETTE = (
    (255, 80, 80),
    (70, 170, 255),
    (255, 210, 40),
    (80, 225, 100),
    (235, 100, 255),
    (255, 150, 40),
    (40, 230, 230),
    (255, 120, 180),
    (170, 140, 255),
    (190, 240, 80),
)
UNTRACKED_RGB = (160, 160, 160)

Pair = tuple[int, int]


class TrackColours:
    """A colour per track id, chosen when the track first appears and then kept for its lifetime.

    A new track gets the palette colour whose nearest user on screen is farthest away (an unused
    colour if there is one), so up to ten dislocations in view never share a colour and, beyond
    that, lines sharing one are far apart — whatever their ids (ids grow without bound as
    dislocations enter and leave, so a colour from the id alone would repeat between neighbours).
    """

    def __init__(self) -> None:
        self._index: dict[int, int] = {}
        self._next = 0

    def for_lines(self, lines: Sequence[Line]) -> list[tuple[int, int, int]]:
        """Colours of the lines shown together, assigning colours to new tracks among them."""
        n = len(PALETTE)
        centres = [line.points.mean(axis=0) for line in lines]
        for line, centre in zip(lines, centres, strict=True):
            t = line.track_id
            if t < 0 or t in self._index:
                continue
            nearest = np.full(n, np.inf)
            for other, other_centre in zip(lines, centres, strict=True):
                index = self._index.get(other.track_id)
                if index is not None:
                    nearest[index] = min(nearest[index], float(np.hypot(*(centre - other_centre))))
            rotation = (np.arange(n) - self._next) % n
            index = int(np.lexsort((rotation, -nearest))[0])  # farthest, then next in turn
            self._index[t] = index
            self._next = index + 1
        return [PALETTE[self._index[ln.track_id]] if ln.track_id >= 0 else UNTRACKED_RGB for ln in lines]

    def clear(self) -> None:
        self._index.clear()


class KeyColours:
    """A colour per key (a pair of tracks on the plot), chosen when it first shows and then kept.

    A new key gets the palette colour least used by the keys shown with it, so up to ten curves on
    the plot never share a colour and none changes colour while it is shown.
    """

    def __init__(self) -> None:
        self._index: dict[object, int] = {}
        self._next = 0

    def for_keys(self, keys: Sequence[object]) -> list[tuple[int, int, int]]:
        n = len(PALETTE)
        used = Counter(self._index[k] for k in keys if k in self._index)
        for k in keys:
            if k not in self._index:
                index = min(range(n), key=lambda i: (used[i], (i - self._next) % n))
                self._index[k] = index
                used[index] += 1
                self._next = index + 1
        return [PALETTE[self._index[k]] for k in keys]

    def clear(self) -> None:
        self._index.clear()


def robust_levels(image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[float, float]:
    """Display levels from percentiles, so a few saturated pixels do not flatten a low-contrast frame."""
    lo, hi = np.percentile(image, [low_pct, high_pct])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def mask_rgba(labels: np.ndarray, colours: Sequence[tuple[int, int, int]], alpha: int = 110) -> np.ndarray:
    """RGBA overlay of the per-line masks: label i + 1 gets ``colours[i]`` (that of line i)."""
    lut = np.zeros((len(colours) + 1, 4), np.uint8)
    for i, colour in enumerate(colours):
        lut[i + 1, :3] = colour
        lut[i + 1, 3] = alpha
    idx = np.minimum(labels, len(colours))  # a label without a line stays transparent
    return lut[idx]


def pileups(spacings: Iterable[Spacing]) -> list[frozenset[int]]:
    """Pile-ups as the connected groups of tracks linked by neighbour spacings, largest first."""
    parent: dict[int, int] = {}

    def find(a: int) -> int:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for s in spacings:
        parent[find(s.track_a)] = find(s.track_b)
    groups: dict[int, set[int]] = {}
    for track in list(parent):
        groups.setdefault(find(track), set()).add(track)
    return sorted((frozenset(g) for g in groups.values()), key=lambda g: (-len(g), min(g)))


def selected_pileup(
    spacings: Sequence[Spacing], anchor: int | None, history_points: Callable[[frozenset[int]], int]
) -> frozenset[int]:
    """The pile-up holding track ``anchor``; without one (or once it is gone), the pile-up in view
    with the longest spacing history, so the plot does not jump to a pile-up whose tracks were just
    renumbered; ties go to the pile-up with more dislocations."""
    groups = pileups(spacings)
    for group in groups:
        if anchor is not None and anchor in group:
            return group
    return max(groups, key=lambda g: (history_points(g), len(g)), default=frozenset())


def label_positions(lines: Sequence[Line]) -> list[tuple[float, float]]:
    """Where to write each line's ID: whichever of its two ends or its middle lies farthest from the
    labels already placed, so the IDs of a tight pile-up fan out instead of piling onto each other."""
    placed: list[np.ndarray] = []
    for line in lines:
        pts = line.points
        candidates = np.stack([pts[0], pts[-1], pts[len(pts) // 2]])
        if placed:
            others = np.stack(placed)
            gaps = np.min(np.hypot(*(candidates[:, None, :] - others[None, :, :]).transpose(2, 0, 1)), axis=1)
            best = candidates[int(np.argmax(gaps))]
        else:
            best = candidates[0]
        placed.append(best)
    return [(float(x), float(y)) for x, y in placed]


def line_at(lines: Sequence[Line], x: float, y: float, max_dist_px: float) -> Line | None:
    """The line whose centreline passes closest to (x, y), if within ``max_dist_px``."""
    best, best_d = None, max_dist_px
    for line in lines:
        d = float(np.min(np.hypot(line.points[:, 0] - x, line.points[:, 1] - y)))
        if d <= best_d:
            best, best_d = line, d
    return best


def pair_key(s: Spacing) -> Pair:
    """Order-independent key of a pair of tracks."""
    return (s.track_a, s.track_b) if s.track_a <= s.track_b else (s.track_b, s.track_a)


class TimeSeries:
    """Append-only (time, value) series keeping its newest ``max_points`` in one numpy buffer.

    Reading it is a slice (no copy), so redrawing a long curve costs nothing on the GUI thread;
    when the buffer is full, the newest half is moved to its front (amortised O(1) per point).
    """

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self._buf = np.empty((2, 2 * max_points), dtype=np.float64)
        self._start = self._end = 0

    def append(self, t: float, value: float) -> None:
        if self._end == self._buf.shape[1]:
            keep = self._buf[:, self._end - self.max_points + 1 : self._end].copy()
            self._buf[:, : keep.shape[1]] = keep
            self._start, self._end = 0, keep.shape[1]
        self._buf[:, self._end] = (t, value)
        self._end += 1
        self._start = max(self._start, self._end - self.max_points)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self._buf[0, self._start : self._end], self._buf[1, self._start : self._end]

    def __len__(self) -> int:
        return self._end - self._start


@dataclass
class SpacingHistory:
    """Spacing time series per pair of tracks, bounded to ``max_points`` per pair (bounded memory)."""

    max_points: int = 20_000
    _series: dict[Pair, TimeSeries] = field(default_factory=dict)
    _last_seen: dict[Pair, int] = field(default_factory=dict)
    _results: int = 0

    def add(self, result: FrameResult) -> None:
        """Append one result's spacings; a pair missing from the previous result gets a NaN first, so
        its curve breaks there instead of bridging the frames where the two were not neighbours."""
        self._results += 1
        for s in result.spacings:
            key = pair_key(s)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = TimeSeries(self.max_points)
            elif self._last_seen[key] != self._results - 1:
                series.append(result.time_s, math.nan)
            series.append(result.time_s, s.spacing_px)
            self._last_seen[key] = self._results

    def pairs(self) -> list[Pair]:
        return sorted(self._series)

    def series(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        """Times (s) and spacings (px) of one pair, oldest first (read-only views)."""
        series = self._series.get(pair)
        return series.arrays() if series is not None else (np.empty(0), np.empty(0))

    def points_within(self, tracks: frozenset[int]) -> int:
        """Spacing points held for the pairs of one pile-up (how much history the plot would show)."""
        return sum(len(self._series[p]) for p in self.pairs_within(tracks))

    def pairs_within(self, tracks: frozenset[int]) -> list[Pair]:
        """Pairs whose two tracks both belong to ``tracks`` (one pile-up)."""
        return [p for p in self.pairs() if p[0] in tracks and p[1] in tracks]

    def __len__(self) -> int:
        """Number of spacing points held (breaks not counted)."""
        return sum(int(np.isfinite(s.arrays()[1]).sum()) for s in self._series.values())

    def clear(self) -> None:
        self._series.clear()
        self._last_seen.clear()
