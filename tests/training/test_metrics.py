"""Length metric, Length-Aware Recall and centreline recall against hand-made truth."""

from __future__ import annotations

import numpy as np
import pytest

from dislotrack.training.metrics import (
    MetricConfig,
    component_path_lengths,
    score_image,
    score_masks,
    summarise,
)

pytestmark = pytest.mark.train


def _hline(y: int, x0: int, x1: int, shape=(64, 96), width: int = 3) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y - width // 2 : y + width // 2 + 1, x0:x1] = True
    return m


def test_skeleton_path_length_of_a_straight_and_a_diagonal_line():
    assert component_path_lengths(_hline(30, 10, 71)).max() == pytest.approx(60, abs=3)
    diag = np.zeros((64, 64), bool)
    idx = np.arange(5, 45)
    diag[idx, idx] = diag[idx, idx + 1] = True
    assert component_path_lengths(diag).max() == pytest.approx(39 * np.sqrt(2), rel=0.08)


def test_fractured_mask_has_one_length_per_piece():
    mask = _hline(30, 10, 40) | _hline(30, 50, 90)
    lengths = np.sort(component_path_lengths(mask))
    assert lengths == pytest.approx([29, 39], abs=3)


def test_perfect_prediction_scores_one_everywhere():
    truth = np.stack([_hline(15, 10, 80), _hline(45, 20, 90)])
    probs = np.concatenate([truth[::-1], np.zeros((3, *truth.shape[1:]), bool)]).astype(np.float32)
    s = summarise([score_image(truth, probs, MetricConfig())])
    assert s.length_metric == pytest.approx(1.0, abs=0.02)
    assert s.lar == pytest.approx(1.0, abs=0.02)
    assert s.instance_recall == 1.0
    assert s.centreline_recall == pytest.approx(1.0)
    assert s.centreline_precision == pytest.approx(1.0)


def test_half_length_prediction_and_a_missed_line():
    truth = np.stack([_hline(15, 10, 90), _hline(45, 10, 90)])
    pred = np.stack([_hline(15, 10, 40)])
    s = summarise([score_masks(truth, pred, MetricConfig())])
    # Line 1: 3/8 found (length score 29/79), line 2 missed (0); IoU 30/80 < 0.5, so no LAR match.
    assert s.length_metric == pytest.approx(29 / 79 / 2, abs=0.03)
    assert s.instance_recall == 0.0
    assert s.lar == 0.0
    assert s.centreline_recall == pytest.approx(3 / 16, abs=0.04)


def test_lar_counts_only_the_longest_piece_of_a_fractured_match():
    truth = np.stack([_hline(30, 10, 90)])
    pred = np.stack([_hline(30, 10, 62) | _hline(30, 66, 90)])
    s = summarise([score_masks(truth, pred, MetricConfig())])
    assert s.instance_recall == 1.0
    assert s.lar == pytest.approx(51 / 79, abs=0.05)
    assert s.length_metric > 0.85


def test_centreline_tolerance_and_iou_tolerance_absorb_a_small_offset():
    truth = np.stack([_hline(30, 10, 90, width=5)])
    pred = np.stack([_hline(32, 10, 90, width=3)])
    strict = summarise([score_masks(truth, pred, MetricConfig(centreline_tolerance_px=1.0))])
    loose = summarise([score_masks(truth, pred, MetricConfig(iou_tolerance_px=2))])
    assert strict.centreline_recall == 0.0 and strict.instance_recall == 0.0
    assert loose.centreline_recall == 1.0 and loose.instance_recall == 1.0


def test_images_without_truth_or_without_prediction():
    empty = np.zeros((0, 64, 96), bool)
    line = np.stack([_hline(30, 10, 90)])
    no_truth = score_masks(empty, line, MetricConfig())
    assert no_truth.n_true == 0 and no_truth.n_pred == 1 and no_truth.centre_pred_hit == 0
    missed = summarise([score_masks(line, empty, MetricConfig())])
    assert missed.lar == 0.0 and missed.length_metric == 0.0 and missed.centreline_recall == 0.0


def test_distractors_marked_counts_axis_pixels_away_from_true_lines():
    truth = np.stack([_hline(30, 10, 90)])
    trace = np.zeros((64, 96), bool)
    trace[:, 50] = True  # crosses the line at (30, 50)
    axes = {"slip_traces": trace, "tangles": np.zeros_like(trace)}
    on_line = score_masks(truth, truth, MetricConfig(), axes)
    marked = score_masks(
        truth, np.stack([truth[0], np.pad(trace[:, 49:52], ((0, 0), (49, 44)))]), MetricConfig(), axes
    )
    (kind, hit, n), _ = on_line.distractors
    assert kind == "slip_traces" and hit == 0 and n == 64 - 7  # rows within 3 px of the line: left out
    s = summarise([on_line, marked])
    assert s.distractors_marked == {"slip_traces": pytest.approx(0.5, abs=0.03)}  # tangles: none to mark
    assert "distractors_marked" not in summarise([score_masks(truth, truth, MetricConfig())]).to_dict()


def test_box_wise_dilation_and_sparse_pair_counts_equal_the_full_frame_computation():
    from scipy import ndimage
    from skimage.morphology import disk

    from dislotrack.training.metrics import _dilate, _pair_counts

    rng = np.random.default_rng(4)
    masks = np.zeros((6, 40, 50), bool)
    masks[0, 0:3, 0:20] = True  # touches the top-left corner
    masks[1, 37:40, 30:50] = True  # the bottom-right corner
    masks[2] = rng.random((40, 50)) < 0.05  # scattered pixels across the frame
    masks[4, 20, 25] = True  # one pixel; mask 3 stays empty
    masks[5, 5:35, 10:13] = True
    for radius in (1, 2, 3):
        full = np.stack([ndimage.binary_dilation(m, structure=disk(radius)) for m in masks])
        assert np.array_equal(_dilate(masks, radius), full)
    inter, sa, sb = _pair_counts(masks, masks[::-1])
    fa = masks.reshape(6, -1).astype(np.int64)
    assert np.array_equal(inter, fa @ fa[::-1].T)
    assert np.array_equal(sa, fa.sum(1)) and np.array_equal(sb, fa[::-1].sum(1))
