"""Display rules without Qt: stable colours, robust levels, mask colouring, pile-up choice, picking."""

from __future__ import annotations

import numpy as np
import pytest

from dislotrack.gui.settings import LiveSettings, is_recorded_file
from dislotrack.gui.viewmodel import (
    UNTRACKED_RGB,
    KeyColours,
    SpacingHistory,
    TimeSeries,
    TrackColours,
    label_positions,
    line_at,
    mask_rgba,
    pileups,
    robust_levels,
    selected_pileup,
)
from dislotrack.runtime.results import Frame, FrameResult, Line, Spacing


def vertical_line(x: float, track_id: int) -> Line:
    pts = np.stack([np.full(50, x), np.linspace(10, 60, 50)], axis=1)
    return Line(points=pts, length_px=50.0, mean_prob=0.9, track_id=track_id)


def result(t: float, spacings: list[Spacing]) -> FrameResult:
    return FrameResult(frame=Frame(int(t * 10), t, np.zeros((2, 2), np.uint8)), spacings=tuple(spacings))


def test_track_colours_are_kept_and_differ_on_screen_whatever_the_ids():
    colours = TrackColours()
    first = colours.for_lines([vertical_line(10.0 * k, t) for k, t in enumerate([1, 11, 31, 5])])
    assert len(set(first)) == 4  # ids equal modulo 10 still get different colours
    again = colours.for_lines([vertical_line(10.0 * k, t) for k, t in enumerate([31, 1, 77, 11, 5, -1])])
    assert again[:2] == [first[2], first[0]] and again[3:5] == [first[1], first[3]]
    assert again[2] not in first and again[5] == UNTRACKED_RGB
    crowd = colours.for_lines([vertical_line(10.0 * k, 100 + k) for k in range(10)])
    assert len(set(crowd)) == 10


def test_a_colour_shared_beyond_ten_lines_goes_to_lines_far_apart():
    colours = TrackColours()
    near = [vertical_line(float(x), k) for k, x in enumerate(range(0, 100, 10))]  # ten lines, 10 px apart
    far = vertical_line(1000.0, 99)
    close = vertical_line(5.0, 98)  # between the first two lines
    shown = colours.for_lines([*near, far])
    assert len(set(shown[:10])) == 10
    both = colours.for_lines([*near, far, close])
    same = [i for i in range(10) if both[i] == both[-1]]
    assert all(abs(near[i].points[0, 0] - 5.0) > 15 for i in same)  # not either of its neighbours


def test_curve_colours_differ_among_the_curves_shown_and_are_kept():
    colours = KeyColours()
    first = colours.for_keys([(1, 2), (2, 3), (3, 4)])
    assert len(set(first)) == 3
    later = colours.for_keys([(2, 3), *[(k, k + 1) for k in range(10, 19)]])
    assert later[0] == first[1] and len(set(later)) == 10


def test_robust_levels_ignore_a_few_saturated_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(90, 120, size=(100, 100)).astype(np.uint8)
    image[:3, :3] = 255
    lo, hi = robust_levels(image)
    assert 90 <= lo < hi <= 120
    assert robust_levels(np.full((4, 4), 7, np.uint8)) == (7.0, 8.0)


def test_mask_rgba_colours_each_label_by_its_track():
    labels = np.array([[0, 1], [2, 0]], np.uint16)
    colours = [(10, 20, 30), (40, 50, 60)]
    rgba = mask_rgba(labels, colours, alpha=100)
    assert rgba.shape == (2, 2, 4)
    assert tuple(rgba[0, 1]) == (10, 20, 30, 100)
    assert tuple(rgba[1, 0]) == (40, 50, 60, 100)
    assert rgba[0, 0, 3] == 0 and rgba[1, 1, 3] == 0


def test_pileups_are_connected_groups_and_the_plot_keeps_the_one_with_history():
    spacings = [Spacing(1, 2, 5.0), Spacing(2, 3, 6.0), Spacing(7, 8, 4.0)]
    assert pileups(spacings) == [frozenset({1, 2, 3}), frozenset({7, 8})]

    def no_history(_group):
        return 0

    assert selected_pileup(spacings, anchor=8, history_points=no_history) == frozenset({7, 8})
    assert selected_pileup(spacings, anchor=None, history_points=no_history) == frozenset({1, 2, 3})
    assert selected_pileup(spacings, anchor=42, history_points=no_history) == frozenset({1, 2, 3})
    assert selected_pileup(spacings, None, lambda g: 50 if 7 in g else 3) == frozenset({7, 8})
    assert selected_pileup([], anchor=None, history_points=no_history) == frozenset()


def test_id_labels_of_a_tight_pileup_fan_out_over_the_line_ends():
    lines = [vertical_line(10.0 + 3 * k, track_id=k) for k in range(4)]  # 3 px apart, 50 px long
    positions = np.array(label_positions(lines))
    gaps = np.hypot(*(positions[:, None] - positions[None, :]).transpose(2, 0, 1))
    assert gaps[~np.eye(4, dtype=bool)].min() > 5.0  # all four at the same end would be 3 px apart
    for (x, y), line in zip(positions, lines, strict=True):
        assert np.min(np.hypot(line.points[:, 0] - x, line.points[:, 1] - y)) < 1e-6  # on its own line


def test_line_at_picks_the_nearest_line_within_radius():
    lines = [vertical_line(10, 1), vertical_line(20, 2)]
    assert line_at(lines, 13, 30, max_dist_px=5).track_id == 1
    assert line_at(lines, 17, 30, max_dist_px=5).track_id == 2
    assert line_at(lines, 40, 30, max_dist_px=5) is None


def test_spacing_history_groups_pairs_and_is_bounded():
    history = SpacingHistory(max_points=3)
    for i in range(5):
        history.add(result(i * 0.1, [Spacing(2, 1, 10.0 + i), Spacing(7, 8, 3.0)]))
    assert history.pairs() == [(1, 2), (7, 8)]
    t, d = history.series((1, 2))
    assert t == pytest.approx([0.2, 0.3, 0.4]) and d == pytest.approx([12.0, 13.0, 14.0])
    assert history.pairs_within(frozenset({1, 2, 3})) == [(1, 2)]
    assert history.points_within(frozenset({1, 2, 3})) == 3
    assert len(history) == 6
    assert history.series((3, 4))[0].size == 0


def test_a_pair_that_was_not_neighbours_for_a_while_gets_a_break_in_its_curve():
    history = SpacingHistory()
    seen = [True, True, False, False, True, True]
    for i, present in enumerate(seen):
        history.add(result(i * 0.1, [Spacing(1, 2, 5.0 + i)] if present else [Spacing(3, 4, 1.0)]))
    t, d = history.series((1, 2))
    assert t == pytest.approx([0.0, 0.1, 0.4, 0.4, 0.5])
    assert np.isnan(d[2]) and d[[0, 1, 3, 4]] == pytest.approx([5.0, 6.0, 9.0, 10.0])
    assert len(history) == 4 + 2


def test_time_series_keeps_the_newest_points_in_order_across_buffer_wraps():
    series = TimeSeries(max_points=5)
    for i in range(23):
        series.append(float(i), 10.0 * i)
        t, v = series.arrays()
        expected = np.arange(max(0, i - 4), i + 1, dtype=float)
        assert np.array_equal(t, expected) and np.array_equal(v, 10.0 * expected)
    assert len(series) == 5


def test_settings_validate_and_pace_only_finished_recordings(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    assert is_recorded_file(str(video), follow=False)
    assert not is_recorded_file(str(video), follow=True)
    assert not is_recorded_file("rtsp://camera/stream", follow=False)
    assert not is_recorded_file("/dev/video0", follow=False)
    assert LiveSettings(str(video)).paced and not LiveSettings(str(video), pace=False).paced
    with pytest.raises(ValueError, match="threshold"):
        LiveSettings(str(video), threshold=1.5)
    with pytest.raises(ValueError, match="speed"):
        LiveSettings(str(video), speed=0)
    with pytest.raises(ValueError, match="flips"):
        LiveSettings(str(video), flips=3)
