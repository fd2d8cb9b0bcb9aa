"""Neighbour pairs and spacings of pile-ups with known geometry."""

from __future__ import annotations

import numpy as np
import pytest
from drawing import curve

from dislotrack.runtime.results import N_POINTS, Line
from dislotrack.runtime.spacing import frame_spacings, line_distance, neighbour_pairs


def _pile(offsets, angle_deg=20.0, length=150.0, origin=(200.0, 200.0), bow=0.0):
    """Parallel bowed lines shifted by ``offsets`` along their normal (the glide direction)."""
    u = np.array([np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))])
    n = np.array([-u[1], u[0]])
    a = np.array(origin) - u * length / 2
    base = curve(*a, *(a + u * length), bow=bow, n=N_POINTS)
    return [base + n * d for d in offsets]


def test_parallel_lines_distance_is_their_offset():
    a, b = _pile([0.0, 13.0])
    assert line_distance(a, b) == pytest.approx(13.0, abs=0.05)
    assert line_distance(a, b[::-1]) == pytest.approx(13.0, abs=0.05)


def test_pile_up_pairs_only_next_neighbours_in_glide_order():
    offsets = [0.0, 12.0, 30.0, 41.0, 60.0]
    order = [3, 0, 4, 1, 2]  # detection order is arbitrary
    pts = [_pile(offsets, bow=8.0)[i] for i in order]
    pairs = neighbour_pairs(pts)
    got = sorted((min(order[i], order[j]), max(order[i], order[j]), d) for i, j, d in pairs)
    assert [(a, b) for a, b, _ in got] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    # bowed lines shifted rigidly are slightly closer than the shift where they are inclined
    np.testing.assert_allclose([d for _, _, d in got], np.diff(offsets), rtol=0.015)


def test_lines_of_another_orientation_are_not_neighbours():
    pile = _pile([0.0, 15.0, 30.0])
    other = _pile([0.0], angle_deg=80.0, origin=(210.0, 215.0))
    pairs = neighbour_pairs([*pile, *other])
    assert all(3 not in (i, j) for i, j, _ in pairs)
    assert len(pairs) == 2


def test_side_by_side_lines_are_not_a_pile_up():
    a = _pile([0.0], origin=(100.0, 100.0))[0]
    b = _pile([0.0], origin=(400.0, 209.2))[0]  # same line continued far away: no overlap
    assert neighbour_pairs([a, b]) == []


def test_a_line_cut_by_the_frame_edge_keeps_the_true_spacing():
    a, b = _pile([0.0, 16.0], angle_deg=0.0, bow=0.0)
    short = b[b[:, 0] < b[:, 0].min() + 90]
    short = np.stack(
        [np.interp(np.linspace(0, 1, N_POINTS), np.linspace(0, 1, len(short)), short[:, k]) for k in (0, 1)],
        1,
    )
    assert line_distance(a, short) == pytest.approx(16.0, abs=0.1)


def test_frame_spacings_are_keyed_by_track_ids():
    pts = _pile([0.0, 20.0, 45.0])
    lines = [Line(p, 150.0, 0.9, track_id=tid) for p, tid in zip(pts, (7, 3, 9), strict=True)]
    got = frame_spacings(lines)
    assert [(s.track_a, s.track_b) for s in got] == [(3, 7), (3, 9)]
    assert [s.spacing_px for s in got] == pytest.approx([20.0, 25.0], abs=0.1)
