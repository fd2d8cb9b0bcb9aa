"""Quality figures of N-mask predictions (numpy/scikit-image only, so they apply to torch or ONNX output).

* length metric (Govind et al.): binarise at 0.5, Lee skeleton, match true masks to predictions,
  score each true mask ``1 - |L_pred - L_true| / L_true`` (clipped to [0, 1], 0 when unmatched),
  mean over true masks;
* Length-Aware Recall (Ruzaeva et al.): match by IoU ≥ 0.5; a matched prediction scores the length of
  its longest skeleton path (a fractured mask counts only its longest piece) over the true length,
  capped at 1; 0 when unmatched; mean over true masks;
* instance recall: fraction of true masks with an IoU ≥ 0.5 partner;
* centreline recall / precision: fraction of true (predicted) skeleton pixels within a tolerance of
  the predicted (true) skeleton — robust to masks that differ in width;
* distractors marked (synthetic images, whose slip traces, tangles and grain boundaries are known):
  per kind, the fraction of its axis pixels away from every true line that lie within the same
  tolerance of the predicted skeleton — what precision misses when a model marks what it must not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from skimage.morphology import disk, skeletonize

from dislotrack.runtime.lines import neighbour_table, skeleton_graph


@dataclass(frozen=True)
class MetricConfig:
    """``iou_tolerance_px`` dilates both masks before the IoU test (0 = the paper's plain IoU; use a few
    pixels when labels are drawn wider or narrower than the model's masks)."""

    threshold: float = 0.5
    iou_match: float = 0.5
    iou_tolerance_px: int = 0
    centreline_tolerance_px: float = 3.0


def _crop(mask: np.ndarray, pad: int = 2) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return mask[:0, :0]
    y0, x0 = max(ys.min() - pad, 0), max(xs.min() - pad, 0)
    return mask[y0 : ys.max() + pad + 1, x0 : xs.max() + pad + 1]


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Lee skeleton of a boolean mask (the paper's thinning)."""
    if not mask.any():
        return np.zeros_like(mask, dtype=bool)
    return skeletonize(mask.astype(bool), method="lee").astype(bool)


def component_path_lengths(mask: np.ndarray) -> np.ndarray:
    """Longest path (px, 8-connected, diagonal steps √2) through each connected piece of the skeleton."""
    sk = np.pad(skeleton(_crop(mask.astype(bool))), 1)
    ys, xs, table = neighbour_table(sk)
    if ys.size == 0:
        return np.zeros(0)
    graph = skeleton_graph(ys, xs, table)
    n_comp, labels = connected_components(graph, directed=False)
    lengths = np.zeros(n_comp)
    for c in range(n_comp):
        nodes = np.flatnonzero(labels == c)
        if nodes.size == 1:
            continue
        far = nodes[np.argmax(dijkstra(graph, directed=False, indices=nodes[0])[nodes])]
        lengths[c] = dijkstra(graph, directed=False, indices=far)[nodes].max()
    return lengths


def binarise(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(N, H, W) probabilities -> the non-empty boolean masks (n, H, W)."""
    masks = np.asarray(probs) >= threshold
    return masks[masks.reshape(len(masks), -1).any(1)]


def _dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    """Each mask dilated by a disk of ``radius``: on its bounding box grown by the radius, which gives
    the full-frame result at a fraction of the cost (a frame has a hundred small masks)."""
    if radius <= 0 or len(masks) == 0:
        return masks
    out = np.zeros(masks.shape, dtype=bool)
    footprint = disk(radius)
    h, w = masks.shape[1:]
    for k, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if rows.size == 0:
            continue
        y0, y1 = max(rows[0] - radius, 0), min(rows[-1] + radius + 1, h)
        x0, x1 = max(cols[0] - radius, 0), min(cols[-1] + radius + 1, w)
        out[k, y0:y1, x0:x1] = ndimage.binary_dilation(m[y0:y1, x0:x1], structure=footprint)
    return out


def _pixel_sets(masks: np.ndarray) -> csr_matrix:
    """Masks as a sparse (n, pixels) matrix of ones: lines cover a few per cent of a frame."""
    flat = masks.reshape(len(masks), int(np.prod(masks.shape[1:])))
    rows, cols = np.nonzero(flat)
    return csr_matrix((np.ones(rows.size, dtype=np.float64), (rows, cols)), shape=flat.shape)


def _pair_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels shared by every (a, b) pair, and each mask's pixel count (exact integers)."""
    sa, sb = _pixel_sets(a), _pixel_sets(b)
    inter = (sa @ sb.T).toarray()
    return inter, np.asarray(sa.sum(axis=1)).ravel(), np.asarray(sb.sum(axis=1)).ravel()


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    inter, st, sp = _pair_counts(truth, pred)
    return inter / np.maximum(st[:, None] + sp[None, :] - inter, 1.0)


def dice_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    inter, st, sp = _pair_counts(truth, pred)
    return 2.0 * inter / np.maximum(st[:, None] + sp[None, :], 1.0)


def _assign(score: np.ndarray, minimum: float) -> dict[int, int]:
    """Optimal one-to-one matching maximising ``score``; pairs below ``minimum`` are dropped."""
    if score.size == 0:
        return {}
    rows, cols = linear_sum_assignment(-score)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if score[r, c] >= minimum}


def length_metric(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-true-mask ``1 - relative length error``; the pairing maximises Dice (any overlap counts)."""
    pairs = _assign(dice_matrix(truth, pred), minimum=1e-9) if len(pred) else {}
    scores = np.zeros(len(truth))
    for t, p in pairs.items():
        lt = component_path_lengths(truth[t]).sum()
        lp = component_path_lengths(pred[p]).sum()
        if lt > 0:
            scores[t] = max(0.0, 1.0 - abs(lp - lt) / lt)
    return scores


def length_aware_recall(truth: np.ndarray, pred: np.ndarray, config: MetricConfig) -> tuple[np.ndarray, int]:
    """Per-true-mask LAR values and the number of IoU-matched true masks."""
    tol = config.iou_tolerance_px
    pairs = (
        _assign(iou_matrix(_dilate(truth, tol), _dilate(pred, tol)), config.iou_match) if len(pred) else {}
    )
    scores = np.zeros(len(truth))
    for t, p in pairs.items():
        lt = component_path_lengths(truth[t]).sum()
        pieces = component_path_lengths(pred[p])
        if lt > 0 and pieces.size:
            scores[t] = min(1.0, pieces.max() / lt)
    return scores, len(pairs)


def _distance_to_skeleton(masks: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The skeleton of the masks' union and every pixel's distance to it (inf when it is empty)."""
    sk = skeleton(masks.any(0)) if len(masks) else np.zeros(shape, bool)
    return sk, ndimage.distance_transform_edt(~sk) if sk.any() else np.full(shape, np.inf)


def centreline_recall_precision(
    truth: np.ndarray, pred: np.ndarray, tolerance_px: float
) -> tuple[int, int, int, int]:
    """(true skeleton px near prediction, true skeleton px, predicted px near truth, predicted px)."""
    shape = truth.shape[1:] if truth.ndim == 3 else pred.shape[1:]
    return _centreline_counts(
        _distance_to_skeleton(truth, shape), _distance_to_skeleton(pred, shape), tolerance_px
    )


def _centreline_counts(true_sk: tuple, pred_sk: tuple, tolerance_px: float) -> tuple[int, int, int, int]:
    (st, dist_to_true), (sp, dist_to_pred) = true_sk, pred_sk
    hit_t = int((dist_to_pred[st] <= tolerance_px).sum())
    hit_p = int((dist_to_true[sp] <= tolerance_px).sum())
    return hit_t, int(st.sum()), hit_p, int(sp.sum())


def distractor_marks(
    truth: np.ndarray,
    axes: dict[str, np.ndarray],
    true_sk: tuple[np.ndarray, np.ndarray],
    pred_sk: tuple[np.ndarray, np.ndarray],
    tolerance_px: float,
) -> tuple[tuple[str, int, int], ...]:
    """Per distractor kind: (kind, axis px near the predicted skeleton, axis px), from the true and
    predicted skeletons with their distance maps (``_distance_to_skeleton``). Axis pixels within the
    tolerance of a true line are left out, so a line crossing a slip trace costs nothing."""
    near_truth = true_sk[1] <= tolerance_px
    if len(truth):  # also the true masks' width: a line wider than the tolerance hides what it covers
        near_truth |= truth.any(0)
    dist_to_pred = pred_sk[1]
    out = []
    for kind, axis in axes.items():
        on = axis & ~near_truth
        out.append((kind, int((dist_to_pred[on] <= tolerance_px).sum()), int(on.sum())))
    return tuple(out)


@dataclass(frozen=True)
class ImageScores:
    """Raw per-image tallies, summed over a set by ``summarise`` (so means are over true masks)."""

    length: tuple[float, ...]
    lar: tuple[float, ...]
    n_true: int
    n_pred: int
    n_matched: int
    centre_true_hit: int
    centre_true: int
    centre_pred_hit: int
    centre_pred: int
    distractors: tuple[tuple[str, int, int], ...] = ()  # (kind, marked px, px), see ``distractor_marks``


def score_image(truth: np.ndarray, probs: np.ndarray, config: MetricConfig) -> ImageScores:
    """All figures for one image: ``truth`` (T, H, W) bool instance masks, ``probs`` (N, H, W)."""
    return score_masks(truth, binarise(probs, config.threshold), config)


def score_masks(
    truth: np.ndarray,
    pred: np.ndarray,
    config: MetricConfig,
    distractors: dict[str, np.ndarray] | None = None,
) -> ImageScores:
    """All figures for one image from predicted instance masks (e.g. after the runtime's post-processing);
    ``distractors``: where the image's distractors run, by kind (synthetic images only)."""
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    lar, n_matched = length_aware_recall(truth, pred, config)
    shape = truth.shape[1:] if truth.ndim == 3 else pred.shape[1:]
    true_sk, pred_sk = _distance_to_skeleton(truth, shape), _distance_to_skeleton(pred, shape)
    tol = config.centreline_tolerance_px
    return ImageScores(
        tuple(length_metric(truth, pred).tolist()),
        tuple(lar.tolist()),
        len(truth),
        len(pred),
        n_matched,
        *_centreline_counts(true_sk, pred_sk, tol),
        distractor_marks(truth, distractors, true_sk, pred_sk, tol) if distractors else (),
    )


@dataclass(frozen=True)
class Summary:
    """Set-level figures; recall-type first because real labels usually mark only some lines."""

    centreline_recall: float
    instance_recall: float
    lar: float
    length_metric: float
    centreline_precision: float
    n_images: int
    n_true: int
    n_pred: int
    distractors_marked: dict[str, float] = field(default_factory=dict)  # empty unless known

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.distractors_marked:
            del out["distractors_marked"]
        return out


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def summarise(scores: Iterable[ImageScores]) -> Summary:
    scores = list(scores)
    length = [v for s in scores for v in s.length]
    lar = [v for s in scores for v in s.lar]
    n_true = sum(s.n_true for s in scores)
    return Summary(
        centreline_recall=_ratio(sum(s.centre_true_hit for s in scores), sum(s.centre_true for s in scores)),
        instance_recall=_ratio(sum(s.n_matched for s in scores), n_true),
        lar=float(np.mean(lar)) if lar else float("nan"),
        length_metric=float(np.mean(length)) if length else float("nan"),
        centreline_precision=_ratio(
            sum(s.centre_pred_hit for s in scores), sum(s.centre_pred for s in scores)
        ),
        n_images=len(scores),
        n_true=n_true,
        n_pred=sum(s.n_pred for s in scores),
        distractors_marked=_marked(scores),
    )


def _marked(scores: list[ImageScores]) -> dict[str, float]:
    """Distractor axis pixels marked over all images, per kind (kinds no image has are left out)."""
    hit: dict[str, int] = {}
    total: dict[str, int] = {}
    for s in scores:
        for kind, h, n in s.distractors:
            hit[kind] = hit.get(kind, 0) + h
            total[kind] = total.get(kind, 0) + n
    return {k: _ratio(hit[k], total[k]) for k in total if total[k]}
