"""Masks -> lines against centrelines drawn with known geometry."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from drawing import curve, line_mask, prob_map, stack

from dislotrack.runtime.lines import LineConfig, chain_path, extract_lines, skeleton_path
from dislotrack.runtime.results import N_POINTS

SHAPE = (160, 200)


def _dist_to_curve(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.min(np.linalg.norm(points[:, None] - truth[None], axis=2), axis=1)


def _run(maps, n_masks=6, **cfg):
    return extract_lines(stack(SHAPE, n_masks, maps), 0.5, LineConfig(**cfg))


def test_one_bowed_line_is_found_with_50_points_on_it():
    truth = curve(30, 40, 170, 110, bow=12)
    lines, labels = _run([prob_map(line_mask(SHAPE, truth))])
    assert len(lines) == 1
    line = lines[0]
    assert line.points.shape == (N_POINTS, 2)
    assert np.max(_dist_to_curve(line.points, truth)) < 1.0
    true_len = float(np.sum(np.linalg.norm(np.diff(truth, axis=0), axis=1)))
    assert abs(line.length_px - true_len) / true_len < 0.04
    steps = np.linalg.norm(np.diff(line.points, axis=0), axis=1)
    np.testing.assert_allclose(steps, line.length_px / (N_POINTS - 1), rtol=0.02)
    assert 0.5 < line.mean_prob <= 1.0
    assert labels is not None and labels.shape == SHAPE
    assert set(np.unique(labels)) == {0, 1}


def test_duplicate_masks_become_one_line_and_the_stronger_is_kept():
    truth = curve(20, 20, 180, 140, bow=-10)
    mask = line_mask(SHAPE, truth)
    strong, weak = prob_map(mask, level=0.95), prob_map(mask, level=0.7)
    shifted = prob_map(np.roll(mask, 1, axis=1), level=0.8)
    lines, _ = _run([weak, strong, shifted])
    assert len(lines) == 1
    assert lines[0].channel == 1


def test_fragment_in_a_spare_mask_is_not_a_second_line():
    truth = curve(20, 80, 180, 80)
    full = line_mask(SHAPE, truth)
    part = full.copy()
    part[:, 70:] = False
    lines, _ = _run([prob_map(part, level=1.0), prob_map(full, level=0.8)])
    assert len(lines) == 1
    assert lines[0].length_px > 150


def test_neighbours_a_few_pixels_apart_in_one_mask_are_not_glued():
    a, b = curve(20, 60, 180, 60), curve(20, 66, 180, 66)  # 6 px apart centre to centre: a 3-px gap
    both = line_mask(SHAPE, a, 1.0) | line_mask(SHAPE, b, 1.0)
    lines, _ = _run([prob_map(both, blur=0.3)])
    assert len(lines) == 2
    assert all(np.ptp(line.points[:, 1]) < 2 for line in lines)


def test_mask_holding_two_separate_lines_is_split():
    a, b = curve(20, 40, 180, 40), curve(20, 110, 180, 120)
    both = line_mask(SHAPE, a) | line_mask(SHAPE, b)
    lines, labels = _run([prob_map(both)])
    assert len(lines) == 2
    ys = sorted(float(line.points[:, 1].mean()) for line in lines)
    assert ys[0] == pytest.approx(40, abs=1) and ys[1] == pytest.approx(115, abs=1)
    assert set(np.unique(labels)) == {0, 1, 2}


def test_small_gap_in_a_line_is_bridged():
    truth = curve(20, 80, 180, 80)
    mask = line_mask(SHAPE, truth)
    mask[:, 99:101] = False
    lines, _ = _run([prob_map(mask, blur=0.3)])
    assert len(lines) == 1
    assert lines[0].length_px > 150


def test_tiny_masks_are_dropped():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[50:53, 50:53] = True
    lines, _ = _run([prob_map(mask, blur=0.1)])
    assert lines == ()


def test_short_pieces_join_into_a_line_when_min_piece_px_lets_them():
    # a faint line the model marks in dabs of ~6 px, alternating between two masks, and one lone dab
    truth = curve(20, 80, 100, 80, n=81)
    maps = [np.zeros(SHAPE, np.float32), np.zeros(SHAPE, np.float32)]
    for k, lo in enumerate(range(0, 80, 10)):
        dab = prob_map(line_mask(SHAPE, truth[lo : lo + 6], half_width=2.0), blur=0.3)
        maps[k % 2] = np.maximum(maps[k % 2], dab)
    lone = line_mask(SHAPE, curve(150, 30, 156, 30), half_width=2.0)
    maps.append(prob_map(lone, blur=0.3))
    assert _run(maps, min_piece_px=8.0)[0] == ()  # every dab is under min_length_px on its own
    lines, labels = _run(maps, min_piece_px=2.0)
    assert len(lines) == 1  # the dabs joined; the lone dab is still too short
    assert 0.85 * 80 < lines[0].length_px < 80
    assert np.max(_dist_to_curve(lines[0].points, truth)) < 1.5
    assert set(np.unique(labels)) == {0, 1}
    assert not np.any(labels[lone])  # a dropped piece paints nothing


def test_a_short_dab_joins_a_line_only_close_ahead_of_its_end():
    # a line and, 16 px beyond its end and 2 px across, a 6 px dab (in a pile-up: the next line's)
    line = line_mask(SHAPE, curve(20, 80, 100, 80), half_width=2.0)
    dab = line_mask(SHAPE, curve(116, 82, 122, 82), half_width=2.0)
    maps = [prob_map(line, blur=0.3), prob_map(dab, blur=0.3)]
    loose, _ = _run(maps, min_piece_px=2.0, join_short_gap_px=24.0)
    assert len(loose) == 1 and loose[0].length_px > 90  # the gap's allowance would take the dab in
    lines, labels = _run(maps, min_piece_px=2.0)
    assert len(lines) == 1 and lines[0].length_px < 82
    assert not np.any(labels[dab])
    close = line_mask(SHAPE, curve(104, 81, 110, 81), half_width=2.0)  # 4 px ahead, on its way
    joined, _ = _run([maps[0], prob_map(close, blur=0.3)], min_piece_px=2.0)
    assert len(joined) == 1 and joined[0].length_px > 86


def test_longest_path_ignores_a_spur():
    mask = line_mask(SHAPE, curve(20, 80, 180, 80)) | line_mask(SHAPE, curve(100, 80, 100, 95))
    rc = skeleton_path(mask)
    assert np.ptp(rc[:, 1]) > 150
    assert np.ptp(rc[:, 0]) < 4


def test_lines_crossing_in_one_mask_are_cut_apart_and_each_joined_across():
    across, down = curve(20, 80, 180, 80), curve(100, 10, 100, 150)
    mask = line_mask(SHAPE, across) | line_mask(SHAPE, down)
    lines, labels = _run([prob_map(mask)])
    assert len(lines) == 2
    flat, steep = sorted(lines, key=lambda ln: np.ptp(ln.points[:, 1]))
    assert np.ptp(flat.points[:, 0]) > 150 and np.ptp(flat.points[:, 1]) < 4
    assert np.ptp(steep.points[:, 1]) > 130 and np.ptp(steep.points[:, 0]) < 4
    assert set(np.unique(labels)) == {0, 1, 2} and np.array_equal(labels > 0, prob_map(mask) > 0.5)
    whole, _ = _run([prob_map(mask)], split_branch_px=0.0)
    unjoined, _ = _run([prob_map(mask)], **vars(LineConfig().unjoined()))
    assert len(whole) == len(unjoined) == 1


def test_a_line_ending_on_a_slip_trace_is_a_line_of_its_own():
    trace, arc = curve(20, 100, 180, 100), curve(60, 20, 140, 100, bow=15)
    lines, _ = _run([prob_map(line_mask(SHAPE, trace) | line_mask(SHAPE, arc))])
    assert len(lines) == 2
    straight, bowed = sorted(lines, key=lambda ln: ln.curvature)
    assert np.max(_dist_to_curve(straight.points, trace)) < 1.5 and straight.length_px > 150
    assert np.median(_dist_to_curve(bowed.points, arc)) < 1.0


def test_curvature_of_an_arc_is_one_over_its_radius():
    radius = 60.0
    t = np.linspace(0.3, 2.8, 500)
    arc = np.stack([100 + radius * np.cos(t), 140 - radius * np.sin(t)], axis=1)
    lines, _ = _run([prob_map(line_mask(SHAPE, arc))])
    assert len(lines) == 1
    assert lines[0].curvature == pytest.approx(1 / radius, rel=0.15)


def test_blobs_are_not_lines():
    blob = np.zeros(SHAPE, dtype=bool)
    blob[40:120, 50:140] = True
    lines, _ = _run([prob_map(blob), prob_map(line_mask(SHAPE, curve(10, 10, 190, 20)))])
    assert len(lines) == 1 and lines[0].channel == 1


def test_spline_derivatives_match_a_natural_cubic_spline():
    from scipy.interpolate import CubicSpline

    from dislotrack.runtime.lines import spline_derivatives

    s = np.linspace(0, 200, N_POINTS)
    pts = np.stack([s + 5 * np.cos(s / 20), 10 * np.sin(s / 30)], axis=1)
    ref = CubicSpline(s, pts, axis=0, bc_type="natural")
    d1, d2 = spline_derivatives(pts, s[1])
    np.testing.assert_allclose(d1, ref(s, 1), atol=1e-9)
    np.testing.assert_allclose(d2, ref(s, 2), atol=1e-9)


def test_grow_is_a_square_dilation():
    from scipy import ndimage

    from dislotrack.runtime.lines import grow

    rng = np.random.default_rng(1)
    mask = rng.random((37, 51)) > 0.93
    for px in (0, 1, 2):
        expected = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=px) if px else mask
        np.testing.assert_array_equal(grow(mask, px), expected)


def test_paths_smoothed_and_fitted_together_equal_one_at_a_time():
    from dislotrack.runtime.lines import fit_lines, smooth_paths

    rng = np.random.default_rng(2)
    paths = [np.cumsum(rng.integers(-1, 2, size=(k, 2)), axis=0).astype(float) for k in (2, 3, 9, 40, 120)]
    together = smooth_paths(paths, 2.0)
    for path, smooth in zip(paths, together, strict=True):
        np.testing.assert_array_equal(smooth, smooth_paths([path], 2.0)[0])
    fits = fit_lines(together, N_POINTS)
    for smooth, (pts, length, curvature) in zip(together, fits, strict=True):
        (alone_pts, alone_length, alone_curvature) = fit_lines([smooth], N_POINTS)[0]
        np.testing.assert_array_equal(pts, alone_pts)
        assert length == alone_length
        assert curvature == pytest.approx(alone_curvature, rel=1e-12, abs=1e-15)


def test_batched_resampling_equals_the_geometry_module_exactly():
    from dislotrack.runtime.geometry import equally_spaced
    from dislotrack.runtime.lines import equally_spaced_many

    rng = np.random.default_rng(3)
    paths = [rng.normal(size=(k, 2)).cumsum(axis=0) for k in (2, 3, 17, 90)]
    paths.append(np.repeat(paths[2], 2, axis=0))  # repeated points: zero-length steps
    paths.append(np.zeros((4, 2)))  # no length at all
    pts, lengths = equally_spaced_many(np.concatenate(paths), np.array([len(p) for p in paths]), N_POINTS)
    for path, p, length in zip(paths, pts, lengths, strict=True):
        np.testing.assert_array_equal(p, equally_spaced(path, N_POINTS))
        assert length == np.hypot(*np.diff(path, axis=0).T).cumsum()[-1]


def test_skeleton_paths_of_many_crops_are_chains_from_each_first_end():
    from dislotrack.runtime.lines import skeleton_paths

    masks = [
        line_mask(SHAPE, curve(10 + 7 * k, 20, 150 - 5 * k, 140 - 9 * k, bow=4 * k - 8)) for k in range(5)
    ]
    crops = [m[np.ix_(m.any(axis=1), m.any(axis=0))] for m in masks]
    for rc, crop in zip(skeleton_paths(crops, [0] * len(crops)), crops, strict=True):
        assert len(rc) > 20
        assert tuple(rc[0]) < tuple(rc[-1])  # walked from the end met first in raster order
        assert np.all(np.abs(np.diff(rc, axis=0)).max(axis=1) == 1)  # neighbour after neighbour
        assert len(np.unique(rc, axis=0)) == len(rc)
        assert np.all(crop[rc[:, 0].astype(int), rc[:, 1].astype(int)])
        np.testing.assert_array_equal(rc, skeleton_path(crop))  # the same alone as together


def _arc_pieces(cuts: list[int], overlap: int = 0, gap: int = 0):
    """An arc cut into pieces at the given curve indices, each piece in its own mask (as a model
    whose masks follow orientation splits a turning dislocation), plus the whole arc."""
    truth = curve(25, 130, 175, 130, bow=-90)
    bounds = [0, *cuts, len(truth)]
    pieces = [
        truth[max(lo - overlap, 0) : min(hi + overlap, len(truth)) - gap]
        for lo, hi in itertools.pairwise(bounds)
    ]
    return truth, [prob_map(line_mask(SHAPE, p)) for p in pieces]


def _length(xy: np.ndarray) -> float:
    return float(np.sum(np.linalg.norm(np.diff(xy, axis=0), axis=1)))


@pytest.mark.parametrize(("overlap", "gap"), [(0, 0), (6, 0), (14, 0), (40, 0), (0, 8)])
def test_an_arc_split_over_masks_is_one_line(overlap: int, gap: int) -> None:
    truth, maps = _arc_pieces([130, 270], overlap=overlap, gap=gap)
    lines, labels = _run(maps)
    assert len(lines) == 1
    assert np.max(_dist_to_curve(lines[0].points, truth)) < 2.0
    assert abs(lines[0].length_px - _length(truth)) / _length(truth) < 0.06
    assert set(np.unique(labels)) == {0, 1}
    assert np.count_nonzero(labels) == np.count_nonzero(np.stack(maps).max(axis=0) > 0.5)


def test_joining_off_keeps_the_pieces() -> None:
    _, maps = _arc_pieces([130, 270])
    lines, labels = _run(maps, join_gap_px=0)
    assert len(lines) == 3 and int(labels.max()) == 3


def test_pile_up_neighbours_and_corners_are_not_joined() -> None:
    # neighbours end side by side on the same traces; a V meets at its tip with directions 90° apart
    left, right = curve(20, 30, 100, 30, bow=8), curve(20, 40, 100, 40, bow=8)
    arm_a, arm_b = curve(120, 40, 150, 100), curve(150, 100, 180, 40)
    gap = np.linalg.norm(arm_a[-5] - arm_b[4])
    assert gap < LineConfig().join_gap_px  # the arms' ends are close enough to be tried
    lines, _ = _run([prob_map(line_mask(SHAPE, c)) for c in (left, right, arm_a[:-4], arm_b[4:])])
    assert len(lines) == 4


def test_a_chain_whose_middle_piece_lies_inside_the_overlap_gives_one_forward_path() -> None:
    x = np.linspace(0.0, 100.0, N_POINTS)
    pieces = np.stack(
        [
            np.stack([x, np.zeros_like(x)], axis=1),
            np.stack([np.linspace(90.0, 99.0, N_POINTS), np.zeros(N_POINTS)], axis=1),  # inside
            np.stack([x[::-1] + 101.0, np.zeros_like(x)], axis=1),  # runs the other way
        ]
    )
    path = chain_path(pieces, [(0, False), (1, False), (2, True)])
    assert path[0, 0] == 0.0 and path[-1, 0] == 201.0
    assert np.all(np.diff(path[:, 0]) > 0)


def test_joining_random_pieces_uses_every_line_once_and_never_fails() -> None:
    from dislotrack.runtime.lines import continuation_chains, fit_lines

    rng = np.random.default_rng(7)
    config = LineConfig()
    for _ in range(150):
        paths = []
        for _ in range(rng.integers(2, 12)):
            whole = curve(*rng.uniform(0, 200, 4), bow=rng.uniform(-60, 60))
            cuts = np.sort(rng.integers(20, len(whole) - 20, rng.integers(0, 4)))
            lo = 0
            for hi in [*cuts.tolist(), len(whole)]:
                a, b = max(lo - int(rng.integers(0, 60)), 0), hi
                if b - a >= 3:
                    paths.append(whole[a:b])
                lo = hi
        fitted = fit_lines(paths, N_POINTS)
        pts = np.stack([f[0] for f in fitted]).astype(np.float32)
        length = np.array([f[1] for f in fitted])
        chains = continuation_chains(pts, length, config)
        assert sorted(i for c in chains for i, _ in c) == list(range(len(pts)))
        for chain in chains:
            assert len(chain_path(pts, chain)) >= N_POINTS


def test_pieces_overlapping_along_a_tight_bend_join_although_their_ends_turn_apart() -> None:
    from dislotrack.runtime.lines import continuation_chains, fit_lines

    def arc(start_deg: float, stop_deg: float) -> np.ndarray:
        t = np.deg2rad(np.linspace(start_deg, stop_deg, 200))
        return np.stack([100 + 60 * np.cos(t), 100 + 60 * np.sin(t)], axis=1)

    # the ends of the overlap lie 45° of the bend apart: beyond join_angle_deg, within the overlap limit
    fitted = fit_lines([arc(0, 120), arc(75, 200)], N_POINTS)
    pts = np.stack([f[0] for f in fitted])
    length = np.array([f[1] for f in fitted])
    assert len(continuation_chains(pts, length, LineConfig())) == 1
    assert len(continuation_chains(pts, length, LineConfig(join_overlap_angle_deg=35.0))) == 2
