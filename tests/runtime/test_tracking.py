"""Streaming linker: identities, gap closing, births/deaths and drift compensation on known motion."""

from __future__ import annotations

import numpy as np
from drawing import curve
from scipy import ndimage

from dislotrack.runtime.results import N_POINTS, Line
from dislotrack.runtime.tracking import Linker, TrackerConfig, estimate_drift, link, mean_closest_distance


def _line(y: float, x0: float = 20, x1: float = 180, dx: float = 0.0) -> Line:
    pts = curve(x0 + dx, y, x1 + dx, y + 10, bow=5, n=N_POINTS)
    return Line(pts, float(np.hypot(x1 - x0, 10)), 0.9)


def _pile(t: int, n: int = 5, spacing: float = 20.0, speed: float = 2.0) -> list[Line]:
    return [_line(30 + i * spacing + speed * t) for i in range(n)]


def _rank(line: Line, t: int, spacing: float = 20.0, speed: float = 2.0) -> int:
    """Which line of ``_pile`` this is, from its position (the truth the IDs must follow)."""
    return round((float(line.points[0, 1]) - 30 - speed * t) / spacing)


def test_mean_closest_distance_of_parallel_lines():
    a = curve(0, 0, 100, 0, n=N_POINTS)
    assert mean_closest_distance(a, a + np.array([0, 7])) == 7.0


def test_moving_pile_up_keeps_its_ids_even_when_shuffled():
    rng = np.random.default_rng(0)
    frames = []
    for t in range(30):
        lines = _pile(t)
        rng.shuffle(lines)
        frames.append((t, lines))
    out = link(frames)
    first = {_rank(ln, 0): ln.track_id for ln in out[0]}
    for t, lines in enumerate(out):
        assert sorted(ln.track_id for ln in lines) == list(range(5))
        for ln in lines:
            assert ln.track_id == first[_rank(ln, t)]


def test_gap_closing_keeps_the_id_over_missing_frames_and_ends_tracks_after():
    cfg = TrackerConfig(max_gap=2)
    linker = Linker(cfg)
    ids = []
    for t in range(12):
        lines = _pile(t, n=3)
        if t in (3, 4):  # line 1 missed for two frames: same track afterwards
            lines = [lines[0], lines[2]]
        if t >= 8:  # line 2 leaves for good
            lines = lines[:2]
        ids.append({_rank(ln, t): ln.track_id for ln in linker.update(t, lines)})
    middle = {d[1] for d in ids if 1 in d}
    assert len(middle) == 1
    assert all(d[0] == ids[0][0] for d in ids)
    assert linker.next_id == 3
    assert len(linker.tracks) == 2  # the track that left is gone after max_gap frames


def test_a_line_missing_longer_than_the_gap_gets_a_new_id():
    linker = Linker(TrackerConfig(max_gap=1))
    seen = [linker.update(t, [] if 2 <= t <= 4 else [_line(50)]) for t in range(7)]
    assert seen[0][0].track_id != seen[5][0].track_id


def test_births_get_new_ids():
    linker = Linker()
    a = linker.update(0, [_line(40)])
    b = linker.update(1, [_line(40), _line(120)])
    assert a[0].track_id == b[0].track_id
    assert b[1].track_id not in (a[0].track_id, -1)


def _textured(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.random(shape), 3) * 255).astype(np.float32)


def test_estimate_drift_sign_and_size():
    a = _textured((128, 128))
    b = np.roll(a, (5, -3), axis=(0, 1))
    np.testing.assert_allclose(estimate_drift(a, b), [-3, 5], atol=0.5)


def test_drift_compensation_prevents_id_swaps_under_stage_drift():
    """A drift of 14 px/frame between lines 20 px apart: without compensation the gate breaks tracks."""
    base = _textured((256, 256))
    step = 14

    def frames():
        for t in range(8):
            image = np.roll(base, step * t, axis=0)
            yield t, [_line(30 + i * 20 + step * t, dx=0) for i in range(4)], image

    def n_ids(cfg):
        linker = Linker(cfg)
        ids = set()
        for t, lines, image in frames():
            ids |= {ln.track_id for ln in linker.update(t, lines, image)}
        return len(ids)

    still = TrackerConfig(predict_velocity=False)
    assert n_ids(TrackerConfig(predict_velocity=False, drift=True, drift_downsample=1)) == 4
    assert n_ids(still) > 4


def test_gate_widens_when_frames_are_skipped_so_a_sparsely_sampled_pile_up_keeps_its_ids():
    # Live processing drops frames: the pile-up glides 2.5 px/frame, so 25 px between processed frames.
    sampled = [(t, _pile(t, spacing=40.0, speed=2.5)) for t in range(0, 120, 10)]
    out = link(sampled)
    first = {_rank(ln, 0, spacing=40.0, speed=2.5): ln.track_id for ln in out[0]}
    for (t, _), lines in zip(sampled, out, strict=True):
        assert {_rank(ln, t, spacing=40.0, speed=2.5): ln.track_id for ln in lines} == first


def test_gate_stays_tight_for_consecutive_frames():
    linker = Linker(TrackerConfig(max_cost_px=10.0, max_gate_px=40.0))
    assert linker.gate(0) == 10.0
    (a,) = linker.update(0, [_line(50)])
    (b,) = linker.update(1, [_line(75)])  # a 25 px jump between consecutive frames is a different line
    assert b.track_id != a.track_id
    assert linker.gate(5) == 10.0 * 2.0  # four frames skipped since frame 1
    assert linker.gate(1000) == 40.0


def test_a_line_seen_whole_then_in_pieces_keeps_its_id_in_the_larger_piece():
    """A model may hand a dislocation to one mask in one frame and to two in the next."""
    whole = curve(20, 40, 180, 160, bow=-60, n=N_POINTS * 4)
    piece_a, piece_b = whole[: int(len(whole) * 0.6)], whole[int(len(whole) * 0.6) :]

    def as_line(xy: np.ndarray, dy: float) -> Line:
        idx = np.linspace(0, len(xy) - 1, N_POINTS).round().astype(int)
        return Line(xy[idx] + [0.0, dy], 100.0, 0.9)

    neighbour = curve(20, 52, 180, 172, bow=-60, n=N_POINTS * 4)  # 12 px below, always whole
    linker = Linker()
    ids = []
    for t in range(12):
        dy = 0.5 * t
        lines = [as_line(neighbour, dy)]
        lines += [as_line(piece_a, dy), as_line(piece_b, dy)] if t % 2 else [as_line(whole, dy)]
        ids.append([ln.track_id for ln in linker.update(t, lines)])
    assert len({i[0] for i in ids}) == 1  # the neighbour never changes
    assert len({i[1] for i in ids}) == 1  # the whole line and its larger piece share one ID
    assert ids[0][0] != ids[0][1]


def test_without_the_partial_pass_the_pieces_break_the_track():
    whole = curve(20, 40, 180, 160, bow=-60, n=N_POINTS * 4)
    idx = np.linspace(0, int(len(whole) * 0.6) - 1, N_POINTS).round().astype(int)
    linker = Linker(TrackerConfig(partial_gate_px=0.0))
    first = linker.update(0, [Line(whole[np.linspace(0, len(whole) - 1, N_POINTS).astype(int)], 100.0, 0.9)])
    second = linker.update(1, [Line(whole[idx], 60.0, 0.9)])
    assert first[0].track_id != second[0].track_id


def test_assignment_keeps_a_good_match_rather_than_two_beyond_the_gate():
    from dislotrack.runtime.tracking import assign

    # track 0 fits line 0; track 1 could only take line 0 and is beyond the gate there
    cost = np.array([[0.7, 18.9], [16.2, np.inf]])
    assert assign(cost, 10.0) == [(0, 0)]
