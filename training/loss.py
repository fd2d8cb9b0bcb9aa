"""Matched Dice loss for N-mask instance output (Govind et al.).

The network has N output channels and an image holds n ≤ N dislocations in no particular order, so
each true mask is first matched to one predicted channel and the Dice losses of matched pairs are
averaged. Channels left unmatched are pushed towards empty so that spare channels stay quiet.

Hand-labelled real frames mark only some dislocations. Scored over the whole image, every
unlabelled line the network finds counts against it, and fine-tuning teaches it to ignore real
lines. ``ignore_beyond_px`` scores only pixels within that distance of a labelled line, so the loss
still separates and sharpens the labelled lines (and their duplicates) but says nothing about the
unlabelled rest of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

Matching = Literal["greedy", "optimal"]
EmptyTerm = Literal["mean", "area", "outside"]
BAND_TERMS = ("distractor_weight", "trace_weight", "line_trace_weight")
"""The ``LossConfig`` weights whose terms read the samples' distractor pixels."""


@dataclass(frozen=True)
class LossConfig:
    """``matching``: the paper's greedy order or the optimal assignment; ``empty_weight`` scales the
    push-to-empty term; ``ignore_beyond_px`` > 0 scores only pixels within that many px (chessboard
    distance) of a true mask: for partial labels.

    ``empty``: ``"mean"`` is the mean probability of the unmatched channels, which makes a false line
    nearly free (a 1000 px line in one of 15 spare channels of a 256² crop costs 0.001, against ~1
    for a missed one); ``"area"`` is the summed probability of the unmatched channels over the
    labelled area (+ ``empty_area_px``), so a false line costs about what a missed line of the same
    size does; ``"outside"`` counts only the probability outside every labelled line in the same way
    (plus the mean term): a network that spreads one dislocation over several channels is not
    punished for it, only for marking what is not a dislocation (slip traces, texture).

    ``union_weight`` > 0 adds that weight times the Dice loss of the channels' maximum against the
    union of the true masks. The runtime takes a pixel as part of a line when any channel passes the
    threshold, so this term asks for every line pixel in *some* channel; the matched term alone gives
    a half-found line's missing half little gradient once that half sits in no channel at all.

    ``distractor_weight`` > 0 adds that weight times the mean, over the pixels a sample marks as
    drawn distractors (slip traces, grain boundaries; ``DataConfig.distractor_px``), of the channels'
    maximum: it charges marking a trace where the generator drew one and nothing anywhere else, where
    the union term's Dice charges every doubtful pixel of the image.

    ``trace_weight`` > 0 trains one more output channel, after the N masks
    (``ModelConfig.trace_channel``), to mark those same distractor pixels and nothing else, with
    ``trace_channel_loss``. The mask channels are not charged for the traces at all; the shared
    features must carry what tells a trace from a line so that this channel can read it off.

    ``line_trace_weight`` > 0 charges each matched channel, per mask, for its summed probability
    on those distractor pixels more than ``line_trace_margin_px`` and at most
    ``line_trace_reach_px`` (chessboard) from its own true line, over that line's pixel count,
    averaged like the Dice losses: a mask that runs on from its line's end along the trace it ends
    on (session 29) costs about what the same stretch missed on the line would, where the
    distractor term, on the channels' maximum over the whole band, charges it a few band pixels out
    of thousands. Train it with ``DataConfig.distractor_margin_px`` 0, so that the stretch of trace
    between two lines' ends is in the band. The reach matters: channels follow orientation, so a
    matched channel also marks far traces of its line's direction, and charged for those too a
    network shut its masks (session 30: centreline recall 0.45 -> 0.06 in 250 steps). Even so, at
    weight 1 it ended lines where they should end but halved recall, and at 0.2 it did neither
    (session 30), so it is off by default."""

    matching: Matching = "optimal"
    empty_weight: float = 1.0
    smooth: float = 1.0
    ignore_beyond_px: int = 0
    empty: EmptyTerm = "mean"
    empty_area_px: float = 200.0  # ``empty="area"``: added to the labelled area (images without lines)
    union_weight: float = 0.0
    distractor_weight: float = 0.0
    trace_weight: float = 0.0
    line_trace_weight: float = 0.0
    line_trace_margin_px: int = 2
    line_trace_reach_px: int = 24


def dice_loss_matrix(probs: torch.Tensor, truth: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Dice loss of every (true, predicted) pair: ``probs`` (P, H, W), ``truth`` (T, H, W) -> (T, P)."""
    p = probs.flatten(1)
    return pair_dice_loss(p, truth.flatten(1).to(p.dtype), smooth)


def pair_dice_loss(p: torch.Tensor, t: torch.Tensor, smooth: float) -> torch.Tensor:
    """Dice loss of every pair of flattened masks: ``p`` (..., P, N), ``t`` (..., T, N) -> (..., T, P)."""
    inter = t @ p.transpose(-1, -2)
    sums = t.sum(-1)[..., :, None] + p.sum(-1)[..., None, :]
    return 1.0 - (2.0 * inter + smooth) / (sums + smooth)


def greedy_match(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's matching: true masks in order, each takes the free prediction of least cost."""
    n_true, n_pred = cost.shape
    free = np.ones(n_pred, dtype=bool)
    rows, cols = [], []
    for t in range(min(n_true, n_pred)):
        c = np.where(free, cost[t], np.inf)
        j = int(np.argmin(c))
        free[j] = False
        rows.append(t)
        cols.append(j)
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def optimal_match(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum total cost assignment (Hungarian); order-independent unlike the greedy matching."""
    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.int64), cols.astype(np.int64)


def match(cost: np.ndarray, matching: Matching) -> tuple[np.ndarray, np.ndarray]:
    if matching == "greedy":
        return greedy_match(cost)
    if matching == "optimal":
        return optimal_match(cost)
    raise ValueError(f"unknown matching {matching!r} (greedy or optimal)")


def image_loss(probs: torch.Tensor, truth: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """Loss of one image: ``probs`` (P, H, W) in [0, 1], ``truth`` (T, H, W) with T ≥ 0 masks."""
    return batch_losses(probs[None], truth[None], torch.tensor([truth.shape[0]]), config)[0]


def batch_losses(
    probs: torch.Tensor,
    truth: torch.Tensor,
    counts: torch.Tensor,
    config: LossConfig,
    avoid: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B,) loss of each image: ``probs`` (B, P, H, W) in [0, 1]; ``truth`` (B, T_max, H, W) zero-padded;
    ``counts`` (B,) how many leading masks of each image are real; ``avoid`` (B, H, W) the pixels
    of drawn distractors, for ``config.distractor_weight`` (required when it is > 0).

    All pair costs of the batch are formed at once and cross to the host in one transfer for the
    matching, so a GPU step waits for the host once per batch rather than once per image.
    """
    b, n_pred = probs.shape[:2]
    if truth.shape[1] == 0:  # no image of the batch has a line: one empty mask keeps the shapes
        truth = truth.new_zeros((b, 1, *truth.shape[2:]))
    counts = counts.detach().cpu().to(torch.int64)
    valid = torch.arange(truth.shape[1])[None] < counts[:, None]
    t = truth.flatten(2).to(probs.dtype) * valid.to(truth.device, probs.dtype)[:, :, None]
    p = probs.flatten(2)
    lines = t.amax(1)  # (B, H·W): 1 on any true line
    weight = None
    if config.ignore_beyond_px > 0:  # 1 within that many px (chessboard) of a true line
        px = config.ignore_beyond_px
        weight = widened(lines.reshape(b, 1, *truth.shape[-2:]).float(), px).flatten(1)
        p = p * weight.to(p.dtype)[:, None]
    cost = pair_dice_loss(p, t, config.smooth)
    host = cost.detach().float().cpu().numpy()
    matched = np.zeros((b, n_pred), dtype=bool)
    pick_b, pick_t, pick_p = [], [], []
    for i in range(b):
        n = int(counts[i])
        if n == 0:
            continue
        rows, cols = match(host[i, :n], config.matching)
        matched[i, cols] = True
        pick_b.append(np.full(len(rows), i))
        pick_t.append(rows)
        pick_p.append(cols)
    dice = p.new_zeros(b)
    if config.line_trace_weight > 0:
        if avoid is None:
            raise ValueError("line_trace_weight > 0 needs the samples' distractor pixels (distractor_px > 0)")
        # after the matching, which stays on the Dice losses; padding masks are never matched
        used = max(int(counts.max()), 1)
        charge = line_trace_charge(p, t[:, :used], avoid, config)
        cost = cost + config.line_trace_weight * torch.nn.functional.pad(charge, (0, 0, 0, t.shape[1] - used))
    if pick_b:
        index = [torch.as_tensor(np.concatenate(a), device=cost.device) for a in (pick_b, pick_t, pick_p)]
        n_matched = torch.as_tensor(matched.sum(1), device=cost.device, dtype=cost.dtype)
        dice = dice.index_add(0, index[0], cost[index[0], index[1], index[2]].to(dice.dtype))
        dice = dice / n_matched.clamp(min=1).to(dice.dtype)
    spare = torch.as_tensor(~matched, device=p.device).to(p.dtype)
    n_spare = spare.sum(1)
    line_px = t.sum((1, 2))
    if config.empty == "area":
        empty = (p.sum(2) * spare).sum(1) / (line_px + config.empty_area_px)
    elif config.empty == "outside":
        outside = p * (1 - lines)[:, None]
        empty = (outside.sum(2) * spare).sum(1) / (line_px + config.empty_area_px)
        empty = empty + (p.mean(2) * spare).sum(1) / n_spare.clamp(min=1)
    elif weight is None:
        empty = (p.mean(2) * spare).sum(1) / n_spare.clamp(min=1)
    else:
        empty = (p.sum(2) * spare).sum(1) / n_spare.clamp(min=1) / weight.sum(1).clamp(min=1).to(p.dtype)
    losses = dice + config.empty_weight * empty  # 0 where no channel is spare
    if config.union_weight > 0:
        union_dice = pair_dice_loss(p.amax(1)[:, None], lines[:, None], config.smooth)[:, 0, 0]
        losses = losses + config.union_weight * union_dice
    if config.distractor_weight > 0:
        if avoid is None:
            raise ValueError("distractor_weight > 0 needs the samples' distractor pixels (distractor_px > 0)")
        a = avoid.flatten(1).to(p.dtype)
        marked = (probs.flatten(2).amax(1) * a).sum(1) / a.sum(1).clamp(min=1)
        losses = losses + config.distractor_weight * marked
    if weight is not None:  # nothing labelled: nothing to score (keeps the graph)
        losses = torch.where(counts.to(losses.device) > 0, losses, p.sum((1, 2)) * 0.0)
    return losses


def line_trace_charge(
    p: torch.Tensor, t: torch.Tensor, avoid: torch.Tensor, config: LossConfig
) -> torch.Tensor:
    """(B, T, P): predicted channel j's summed probability on the ``avoid`` pixels (B, H, W) that lie
    more than ``config.line_trace_margin_px`` and at most ``config.line_trace_reach_px`` from true
    mask i (chessboard), over mask i's pixel count (+ smooth); ``p`` (B, P, H·W) and ``t``
    (B, T, H·W) flattened as in ``batch_losses``."""
    b, n_true = t.shape[:2]
    h, w = avoid.shape[-2:]
    planes = t.reshape(b * n_true, 1, h, w)
    ring = widened(planes, config.line_trace_reach_px) - widened(planes, config.line_trace_margin_px)
    own_band = avoid.flatten(1).to(p.dtype)[:, None] * ring.reshape(b, n_true, h * w)
    return (own_band @ p.transpose(1, 2)) / (t.sum(-1)[..., None] + config.smooth)


def widened(planes: torch.Tensor, px: int) -> torch.Tensor:
    """(N, 1, H, W) 0/1 planes grown by ``px`` (a square of side 2·px + 1), one axis at a time."""
    if px <= 0:
        return planes
    k = 2 * px + 1
    rows = torch.nn.functional.max_pool2d(planes, (1, k), stride=1, padding=(0, px))
    return torch.nn.functional.max_pool2d(rows, (k, 1), stride=1, padding=(px, 0))


def trace_channel_loss(logits: torch.Tensor, lines: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the trace channel's ``logits`` (B, H, W) against the distractor
    ``band`` (B, H, W), averaged separately over the band's pixels, the true ``lines``' pixels and
    all the others, then summed. Averaged over all pixels together, the band and the lines (a few %
    of a crop each) would count for little beside the background, and the channel would learn the
    background; a class absent from the batch adds nothing."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, band.to(logits.dtype), reduction="none"
    )
    band, lines = band.bool(), lines.bool()
    parts = (band, lines & ~band, ~(band | lines))
    return sum(bce[m].mean() if m.any() else bce.sum() * 0.0 for m in parts)


def matched_dice_loss(
    logits: torch.Tensor,
    truth: torch.Tensor,
    counts: torch.Tensor,
    config: LossConfig,
    avoid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Batch mean of the image losses: ``logits`` (B, P, H, W); ``truth`` (B, T_max, H, W) zero-padded,
    ``counts`` (B,) how many leading masks of each image are real; ``avoid`` as in ``batch_losses``.

    With ``config.trace_weight`` > 0 the last of the P channels is the trace channel: the masks are
    the P - 1 before it, and ``trace_channel_loss`` against ``avoid`` is added."""
    if config.trace_weight <= 0:
        return batch_losses(torch.sigmoid(logits), truth, counts, config, avoid).mean()
    if avoid is None:
        raise ValueError("trace_weight > 0 needs the samples' distractor pixels (distractor_px > 0)")
    masks = batch_losses(torch.sigmoid(logits[:, :-1]), truth, counts, config, avoid).mean()
    return masks + config.trace_weight * trace_channel_loss(logits[:, -1], truth.any(1), avoid)
