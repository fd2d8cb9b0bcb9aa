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
    a half-found line's missing half little gradient once that half sits in no channel at all."""

    matching: Matching = "optimal"
    empty_weight: float = 1.0
    smooth: float = 1.0
    ignore_beyond_px: int = 0
    empty: EmptyTerm = "mean"
    empty_area_px: float = 200.0  # ``empty="area"``: added to the labelled area (images without lines)
    union_weight: float = 0.0


def line_union(truth: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(H, W) 1 on any of the (T, H, W) true masks, else 0, in ``like``'s dtype (zeros when T = 0)."""
    if truth.shape[0] == 0:
        return like.new_zeros(like.shape[-2:])
    return truth.amax(0).to(like.dtype)


def label_band(truth: torch.Tensor, px: int) -> torch.Tensor:
    """(H, W) 1 within ``px`` px (chessboard) of any of the (T, H, W) true masks, else 0."""
    union = truth.amax(0).to(torch.float32)[None, None]
    return torch.nn.functional.max_pool2d(union, 2 * px + 1, stride=1, padding=px)[0, 0]


def dice_loss_matrix(probs: torch.Tensor, truth: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Dice loss of every (true, predicted) pair: ``probs`` (P, H, W), ``truth`` (T, H, W) -> (T, P)."""
    p = probs.flatten(1)
    t = truth.flatten(1).to(p.dtype)
    inter = t @ p.T
    sums = t.sum(1)[:, None] + p.sum(1)[None, :]
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
    n_pred = probs.shape[0]
    weight = None
    if config.ignore_beyond_px > 0:
        if truth.shape[0] == 0:
            return probs.sum() * 0.0  # nothing labelled: nothing to score (keeps the graph)
        weight = label_band(truth, config.ignore_beyond_px).to(probs.dtype)
        probs = probs * weight
    matched = torch.zeros(n_pred, dtype=torch.bool, device=probs.device)
    dice = probs.new_zeros(())
    if truth.shape[0] > 0:
        cost = dice_loss_matrix(probs, truth, config.smooth)
        rows, cols = match(cost.detach().cpu().numpy(), config.matching)
        pairs = torch.as_tensor(rows, device=cost.device), torch.as_tensor(cols, device=cost.device)
        dice = cost[pairs].mean()
        matched[torch.as_tensor(cols, device=probs.device)] = True
    spare = probs[~matched]
    if not spare.shape[0]:
        empty = probs.new_zeros(())
    elif config.empty == "area":
        empty = spare.sum() / (truth.sum() + config.empty_area_px)
    elif config.empty == "outside":
        outside = (spare * (1 - line_union(truth, spare))).sum() / (truth.sum() + config.empty_area_px)
        empty = outside + spare.flatten(1).mean(1).mean()
    elif weight is None:
        empty = spare.flatten(1).mean(1).mean()
    else:
        empty = spare.flatten(1).sum(1).mean() / weight.sum()
    loss = dice + config.empty_weight * empty
    if config.union_weight > 0:
        found = probs.amax(0, keepdim=True)
        union = line_union(truth, probs)[None]
        loss = loss + config.union_weight * dice_loss_matrix(found, union, config.smooth)[0, 0]
    return loss


def matched_dice_loss(
    logits: torch.Tensor, truth: torch.Tensor, counts: torch.Tensor, config: LossConfig
) -> torch.Tensor:
    """Batch mean of ``image_loss``: ``logits`` (B, P, H, W); ``truth`` (B, T_max, H, W) zero-padded,
    ``counts`` (B,) how many leading masks of each image are real."""
    probs = torch.sigmoid(logits)
    losses = [image_loss(probs[b], truth[b, : int(counts[b])], config) for b in range(probs.shape[0])]
    return torch.stack(losses).mean()
