"""Matched Dice loss: pair costs, greedy versus optimal matching, spare channels pushed to empty."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train


def _bars(n: int, size: int = 32):
    import torch

    masks = torch.zeros(n, size, size)
    for i in range(n):
        masks[i, :, 3 * i + 2 : 3 * i + 4] = 1.0
    return masks


def test_dice_loss_matrix_is_zero_for_identical_and_near_one_for_disjoint_masks():
    from dislotrack.training.loss import dice_loss_matrix

    truth = _bars(3)
    cost = dice_loss_matrix(truth.clone(), truth, smooth=1e-6).numpy()
    assert np.allclose(np.diag(cost), 0.0, atol=1e-6)
    assert np.all(cost[~np.eye(3, dtype=bool)] > 0.99)


def test_greedy_takes_the_first_true_masks_best_while_optimal_minimises_the_total():
    from dislotrack.training.loss import greedy_match, optimal_match

    cost = np.array([[0.1, 0.2], [0.15, 0.9]])
    rows, cols = greedy_match(cost)
    assert cost[rows, cols].sum() == pytest.approx(1.0)
    rows, cols = optimal_match(cost)
    assert cost[rows, cols].sum() == pytest.approx(0.35)


@pytest.mark.parametrize("matching", ["greedy", "optimal"])
def test_loss_ignores_the_order_of_output_channels(matching):
    import torch

    from dislotrack.training.loss import LossConfig, matched_dice_loss

    truth = _bars(3)
    logits = torch.full((1, 5, 32, 32), -8.0)
    logits[0, [4, 0, 2]] = torch.where(truth > 0, 8.0, -8.0)
    config = LossConfig(matching=matching)
    loss = matched_dice_loss(logits, truth[None], torch.tensor([3]), config)
    shuffled = matched_dice_loss(logits[:, [3, 1, 4, 0, 2]], truth[None], torch.tensor([3]), config)
    assert float(loss) < 0.01
    assert float(shuffled) == pytest.approx(float(loss), abs=1e-6)


def test_spare_channels_are_pushed_towards_empty():
    import torch

    from dislotrack.training.loss import LossConfig, matched_dice_loss

    truth = _bars(1)
    logits = torch.full((1, 3, 32, 32), -8.0)
    logits[0, 0] = torch.where(truth[0] > 0, 8.0, -8.0)
    quiet = float(matched_dice_loss(logits, truth[None], torch.tensor([1]), LossConfig()))
    logits[0, 2] = 8.0
    loud = logits.clone().requires_grad_(True)
    loss = matched_dice_loss(loud, truth[None], torch.tensor([1]), LossConfig())
    loss.backward()
    assert loss.item() > quiet + 0.1
    assert loud.grad[0, 2].sum() > 0  # gradient descent lowers the spare channel


def test_image_without_dislocations_only_asks_for_empty_masks():
    import torch

    from dislotrack.training.loss import LossConfig, matched_dice_loss

    logits = torch.full((1, 4, 16, 16), -10.0)
    assert float(matched_dice_loss(logits, torch.zeros(1, 4, 16, 16), torch.tensor([0]), LossConfig())) < 1e-3
    no_masks = torch.zeros(1, 0, 16, 16)  # a validation image without lines has no mask at all
    assert float(matched_dice_loss(logits, no_masks, torch.tensor([0]), LossConfig())) < 1e-3


def _one_line(channels: int, size: int, rows: slice, cols: slice):
    """One labelled line and a prediction that holds exactly it in channel 0."""
    import torch

    truth = torch.zeros(1, size, size)
    truth[0, rows, cols] = 1
    clean = torch.zeros(channels, size, size)
    clean[0] = truth[0]
    return truth, clean


def test_ignore_beyond_scores_only_pixels_near_labelled_lines() -> None:
    """A channel that also fires on an unlabelled line far away loses nothing with the band on."""
    import torch

    from dislotrack.training.loss import LossConfig, image_loss

    truth, clean = _one_line(3, 64, slice(10, 12), slice(5, 60))
    extra = clean.clone()
    extra[0, 40:42, 5:60] = 1  # an unlabelled line in the matched channel
    extra[1, 50:52, 5:60] = 1  # and one in a spare channel
    whole = LossConfig(ignore_beyond_px=0)
    band = LossConfig(ignore_beyond_px=6)
    assert image_loss(extra, truth, whole) > image_loss(clean, truth, whole) + 0.1
    assert float(image_loss(extra, truth, band)) == pytest.approx(float(image_loss(clean, truth, band)))
    near = clean.clone()
    near[1, 13:15, 5:60] = 1  # a duplicate beside the labelled line is still punished
    assert image_loss(near, truth, band) > image_loss(clean, truth, band) + 0.05
    nothing = torch.rand(3, 64, 64, requires_grad=True)
    loss = image_loss(nothing, torch.zeros(0, 64, 64), band)
    loss.backward()
    assert float(loss.detach()) == 0.0 and nothing.grad is not None


def test_area_empty_term_makes_a_false_line_cost_like_a_missed_one() -> None:
    import torch

    from dislotrack.training.loss import LossConfig, image_loss

    truth, clean = _one_line(16, 128, slice(10, 13), slice(10, 110))
    false = clean.clone()
    false[5, 60:63, 10:110] = 1  # a line where none is labelled, in a spare channel
    missed = clean.clone()
    missed[0] = 0
    mean, area = LossConfig(empty="mean"), LossConfig(empty="area")
    assert float(image_loss(false, truth, mean) - image_loss(clean, truth, mean)) < 0.01
    cost_false = float(image_loss(false, truth, area) - image_loss(clean, truth, area))
    cost_missed = float(image_loss(missed, truth, area) - image_loss(clean, truth, area))
    assert 0.5 < cost_false < 1.0 and 0.5 < cost_missed <= 1.0
    empty_image = float(image_loss(false, torch.zeros(0, 128, 128), area))
    assert empty_image == pytest.approx(600 / 200)  # no labels: both lines are false, over empty_area_px


def test_outside_empty_term_punishes_false_lines_but_not_split_true_ones() -> None:
    from dislotrack.training.loss import LossConfig, image_loss

    truth, clean = _one_line(16, 128, slice(10, 13), slice(10, 110))
    split = clean.clone()
    split[0, :, 60:] = 0
    split[7, 10:13, 60:110] = 1  # the same line's second half in another channel
    false = clean.clone()
    false[5, 60:63, 10:110] = 1
    outside, area = LossConfig(empty="outside"), LossConfig(empty="area")
    base = float(image_loss(clean, truth, outside))
    cost_false = float(image_loss(false, truth, outside)) - base
    split_outside = float(image_loss(split, truth, outside)) - base
    split_area = float(image_loss(split, truth, area)) - float(image_loss(clean, truth, area))
    assert cost_false > 0.5
    assert split_outside < split_area - 0.2  # only the Dice of the half-found line, not its other half


def test_union_term_charges_line_pixels_found_in_no_channel_but_not_a_line_split_over_two() -> None:
    from dislotrack.training.loss import LossConfig, dice_loss_matrix, image_loss

    truth, clean = _one_line(8, 128, slice(10, 13), slice(10, 110))
    split = clean.clone()
    split[0, :, 60:] = 0
    split[3, 10:13, 60:110] = 1  # the second half in another channel
    half = clean.clone()
    half[0, :, 60:] = 0  # the second half in no channel
    plain, union = LossConfig(), LossConfig(union_weight=0.5)
    for probs in (clean, split, half):
        found = probs.amax(0, keepdim=True)
        expected = float(image_loss(probs, truth, plain)) + 0.5 * float(dice_loss_matrix(found, truth)[0, 0])
        assert float(image_loss(probs, truth, union)) == pytest.approx(expected, abs=1e-6)
    extra_split = float(image_loss(split, truth, union) - image_loss(split, truth, plain))
    extra_half = float(image_loss(half, truth, union) - image_loss(half, truth, plain))
    assert extra_split < 0.01 and extra_half > 0.1


@pytest.mark.parametrize("empty", ["mean", "area", "outside"])
@pytest.mark.parametrize(("ignore_beyond", "union_weight"), [(0, 0.0), (4, 0.0), (0, 0.5)])
def test_a_batch_scores_each_image_as_alone_whatever_the_padding(empty, ignore_beyond, union_weight) -> None:
    import torch

    from dislotrack.training.loss import LossConfig, image_loss, matched_dice_loss

    rng = np.random.default_rng(5)
    counts = [3, 0, 5, 1]
    truth = torch.zeros(len(counts), 6, 40, 40, dtype=torch.bool)
    for b, n in enumerate(counts):
        for k in range(n):
            y, x0 = int(rng.integers(0, 37)), int(rng.integers(0, 15))
            truth[b, k, y : y + 3, x0 : x0 + 20] = True
    truth[0, 5, :, :2] = True  # beyond image 0's count: padding that must be ignored
    logits = torch.from_numpy(rng.normal(0.0, 3.0, (len(counts), 7, 40, 40)).astype(np.float32))
    config = LossConfig(empty=empty, ignore_beyond_px=ignore_beyond, union_weight=union_weight)
    batch = matched_dice_loss(logits, truth, torch.tensor(counts), config)
    alone = [image_loss(torch.sigmoid(logits[b]), truth[b, :n], config) for b, n in enumerate(counts)]
    assert float(batch) == pytest.approx(float(torch.stack(alone).mean()), rel=1e-6)
    assert len({round(float(x), 6) for x in alone}) == len(counts)  # the images really differ


def test_distractor_term_charges_marking_a_drawn_trace_and_nothing_else() -> None:
    import torch

    from dislotrack.training.loss import LossConfig, image_loss, matched_dice_loss

    truth, clean = _one_line(4, 64, slice(10, 13), slice(5, 60))
    avoid = torch.zeros(1, 64, 64, dtype=torch.bool)
    avoid[0, 40:44, :] = True  # a drawn trace, 4 px wide
    on_trace = clean.clone()
    on_trace[2, 40:44, :32] = 0.8  # a spare channel marks half of it
    elsewhere = clean.clone()
    elsewhere[2, 50:54, :32] = 0.8  # the same false line away from every trace
    plain, charged = LossConfig(), LossConfig(distractor_weight=2.0)

    def loss(probs, config):
        return float(
            matched_dice_loss(
                torch.logit(probs[None].clamp(1e-6, 1 - 1e-6)), truth[None], torch.tensor([1]), config, avoid
            )
        )

    assert loss(on_trace, charged) - loss(on_trace, plain) == pytest.approx(2.0 * 0.8 * 0.5, abs=1e-3)
    assert loss(elsewhere, charged) - loss(elsewhere, plain) == pytest.approx(0.0, abs=1e-4)
    assert loss(clean, charged) == pytest.approx(loss(clean, plain), abs=1e-4)
    with pytest.raises(ValueError, match="distractor pixels"):
        image_loss(on_trace, truth, charged)


def test_trace_channel_loss_weighs_band_lines_and_background_alike() -> None:
    import math

    import torch

    from dislotrack.training.loss import trace_channel_loss

    band = torch.zeros(1, 64, 64, dtype=torch.bool)
    band[0, 40:44, :] = True  # 256 px of drawn trace
    lines = torch.zeros_like(band)
    lines[0, 10:11, :16] = True  # 16 px of line
    undecided = torch.zeros(1, 64, 64)
    assert float(trace_channel_loss(undecided, lines, band)) == pytest.approx(3 * math.log(2), rel=1e-5)
    assert float(trace_channel_loss(undecided, torch.zeros_like(lines), band)) == pytest.approx(
        2 * math.log(2), rel=1e-5
    )
    right = torch.where(band, 8.0, -8.0)
    assert float(trace_channel_loss(right, lines, band)) < 1e-2
    # marking the 16 line pixels as trace costs as much as missing all 256 trace pixels
    lines_marked = torch.where(band | lines, 8.0, -8.0)
    band_missed = torch.full_like(right, -8.0)
    assert float(trace_channel_loss(lines_marked, lines, band)) == pytest.approx(8.0, rel=1e-3)
    assert float(trace_channel_loss(band_missed, lines, band)) == pytest.approx(8.0, rel=1e-3)


def test_the_trace_channel_is_the_last_output_and_the_masks_are_scored_without_it() -> None:
    import torch

    from dislotrack.training.loss import LossConfig, matched_dice_loss, trace_channel_loss

    truth, probs = _one_line(4, 64, slice(10, 13), slice(5, 60))
    avoid = torch.zeros(1, 64, 64, dtype=torch.bool)
    avoid[0, 40:44, :] = True
    masks = torch.logit(probs[None].clamp(1e-6, 1 - 1e-6))
    trace = torch.randn(1, 1, 64, 64)
    counts = torch.tensor([1])
    plain = float(matched_dice_loss(masks, truth[None], counts, LossConfig(), avoid))
    with_trace = float(
        matched_dice_loss(
            torch.cat([masks, trace], 1), truth[None], counts, LossConfig(trace_weight=0.5), avoid
        )
    )
    expected = plain + 0.5 * float(trace_channel_loss(trace[:, 0], truth.any(0)[None], avoid))
    assert with_trace == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="distractor pixels"):
        matched_dice_loss(torch.cat([masks, trace], 1), truth[None], counts, LossConfig(trace_weight=0.5))


def test_line_trace_term_charges_a_mask_for_the_trace_just_beyond_its_own_line_only() -> None:
    import torch

    from dislotrack.training.loss import LossConfig, image_loss, matched_dice_loss

    truth = torch.zeros(2, 64, 64, dtype=torch.bool)
    truth[0, 10:40, 20:23] = True  # a line ending on the trace at row 40
    truth[1, 10:40, 40:43] = True  # its neighbour, ending on it 17 px further along
    avoid = torch.zeros(1, 64, 64, dtype=torch.bool)
    avoid[0, 40:44, :] = True  # the trace, everywhere but on the lines (distractor margin 0)
    probs = torch.zeros(4, 64, 64)
    probs[:2] = truth.float()
    run_on = probs.clone()
    run_on[0, 40:43, 23:40] = 1.0  # mask 0 runs on along the trace to its neighbour's end: 51 px
    config = LossConfig(line_trace_weight=1.0, line_trace_margin_px=2)

    def loss(p, c):
        logits = torch.logit(p[None].clamp(1e-6, 1 - 1e-6))
        return float(matched_dice_loss(logits, truth[None], torch.tensor([2]), c, avoid))

    assert loss(probs, config) == pytest.approx(loss(probs, LossConfig()), abs=1e-4)
    added = loss(run_on, config) - loss(run_on, LossConfig())
    # the 51 px less the 4 within 2 px of mask 0's line (rows 40-41, columns 23-24), over its 90 px
    # (+ smooth 1), in a mean over the 2 matched masks
    assert added == pytest.approx(47 / 91 / 2, rel=1e-3)
    far = probs.clone()
    far[0, 40:43, 47:64] = 1.0  # the same channel marks the trace more than 24 px from its line
    assert loss(far, config) == pytest.approx(loss(far, LossConfig()), abs=1e-4)
    spare = probs.clone()
    spare[3, 40:43, 23:40] = 1.0  # the same stretch in a spare channel: the distractor term's business
    assert loss(spare, config) == pytest.approx(loss(spare, LossConfig()), abs=1e-4)
    with pytest.raises(ValueError, match="distractor pixels"):
        image_loss(run_on, truth, config)
