"""Where length-aware recall is lost on labelled frames: what became of each labelled line.

Centreline recall counts labelled skeleton pixels near any predicted line; LAR needs one predicted
line that matches the labelled one and runs its whole length. Between the two, a labelled line can
be lost in three ways, and this script says how often each happens, per model, on the same frames:

- **whole**: one of its own pieces (predicted lines lying mostly on it) covers half of it or more;
- **missed**: less than half its skeleton lies within the tolerance of any predicted line;
- **split**: it is covered, no single piece covers half of it, and its own pieces cover more of it
  than foreign ones do;
- **swallowed**: it is covered, but mostly by foreign lines, which lie mostly elsewhere (a slip
  trace, a neighbour or background it was merged with), so no prediction is *its* line.

Each labelled skeleton pixel is given to the nearest predicted line within the tolerance, and each
predicted line to the labelled line that most of its skeleton lies near (at least half of it, or
to none: foreign). Predictions are the runtime's lines (threshold, split, deduplicate, join), as
``dislotrack evaluate`` scores them; ``--no-join`` and ``--raw-masks`` as there, to see which stage
loses the lines.

Usage:

    python scripts/line_pieces.py --images DIR --masks DIR MODEL.onnx [MODEL.onnx ...] [--json OUT]
        [--no-join | --raw-masks]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from dislotrack.training.evaluate import LABELLED_IOU_TOLERANCE_PX, load_labelled, predicted_instances
from dislotrack.training.metrics import MetricConfig, length_aware_recall, skeleton

FATES = ("whole", "split", "swallowed", "missed")  # in the order the table shows them


@dataclass(frozen=True)
class LineFate:
    """One labelled line: its skeleton length, how much of it is covered by any prediction, by its
    own pieces and by its best own piece (fractions), how much of that piece lies on it, its number
    of own pieces, its fate, and its LAR (as ``dislotrack evaluate`` scores it)."""

    length_px: int
    covered: float
    own: float
    best_own: float
    best_on: float
    pieces: int
    fate: str
    lar: float


def _skeleton_labels(masks: np.ndarray) -> np.ndarray:
    """(H, W) int map: pixel of mask k's own skeleton -> k + 1 (0 elsewhere; a later mask wins)."""
    out = np.zeros(masks.shape[1:], dtype=np.int32)
    for k, mask in enumerate(masks):
        (box,) = ndimage.find_objects(mask.astype(np.uint8)) or (None,)
        if box is not None:
            out[box][skeleton(mask[box])] = k + 1
    return out


def _nearest(labels: np.ndarray, tolerance_px: float) -> np.ndarray:
    """For every pixel, the label of the nearest labelled pixel within ``tolerance_px`` (0: none)."""
    if not labels.any():
        return np.zeros_like(labels)
    dist, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    near = labels[iy, ix]
    near[dist > tolerance_px] = 0
    return near


def line_fates(
    truth: np.ndarray, pred: np.ndarray, tolerance_px: float = 3.0, config: MetricConfig | None = None
) -> list[LineFate]:
    """The fate of every labelled line: ``truth`` (T, H, W) and ``pred`` (P, H, W) boolean instances;
    ``config``: how LAR matches (default: ``dislotrack evaluate``'s for labelled frames)."""
    truth, pred = np.asarray(truth, bool), np.asarray(pred, bool)
    config = config or MetricConfig(iou_tolerance_px=LABELLED_IOU_TOLERANCE_PX)
    lar = length_aware_recall(truth, pred, config)[0]
    true_sk, pred_sk = _skeleton_labels(truth), _skeleton_labels(pred)  # (0, H, W): all zero
    near_true, near_pred = _nearest(true_sk, tolerance_px), _nearest(pred_sk, tolerance_px)
    n_true, n_pred = len(truth), len(pred)
    # owner[p]: the labelled line (1-based) at least half of piece p's skeleton lies near, else 0
    on = np.zeros((n_pred + 1, n_true + 1), dtype=np.int64)
    np.add.at(on, (pred_sk[pred_sk > 0], near_true[pred_sk > 0]), 1)
    size = on.sum(1)
    likely = on[:, 1:].argmax(1) + 1 if n_true else np.zeros(n_pred + 1, int)
    owner = np.where(on[np.arange(n_pred + 1), likely] * 2 >= np.maximum(size, 1), likely, 0)
    owner[0] = 0
    # cover[t, p]: labelled skeleton pixels of line t whose nearest piece is p (p = 0: none)
    cover = np.zeros((n_true + 1, n_pred + 1), dtype=np.int64)
    np.add.at(cover, (true_sk[true_sk > 0], near_pred[true_sk > 0]), 1)
    fates = []
    for t in range(1, n_true + 1):
        length = int(cover[t].sum())
        if length == 0:
            continue
        own_pieces = np.flatnonzero((owner == t) & (cover[t] > 0))
        covered = 1.0 - cover[t, 0] / length
        own = cover[t, own_pieces].sum() / length
        best_own, best_on = 0.0, 0.0
        if own_pieces.size:
            best = own_pieces[np.argmax(cover[t, own_pieces])]
            best_own, best_on = cover[t, best] / length, on[best, t] / max(size[best], 1)
        if best_own >= 0.5:
            fate = "whole"
        elif covered < 0.5:
            fate = "missed"
        elif own >= covered - own:
            fate = "split"
        else:
            fate = "swallowed"
        fates.append(
            LineFate(
                length,
                float(covered),
                float(own),
                float(best_own),
                float(best_on),
                int(own_pieces.size),
                fate,
                float(lar[t - 1]),
            )
        )
    return fates


def summarise(fates: Sequence[LineFate], n_pred: int) -> dict:
    """Share of labelled lines (and of labelled length) by fate, each fate's mean LAR, the pieces of
    the split lines, and how much of a whole line's piece lies on it."""
    n = len(fates)
    length = sum(f.length_px for f in fates) or 1
    out: dict = {
        "lines": n,
        "predicted_lines": n_pred,
        "lar": float(np.mean([f.lar for f in fates])) if n else 0.0,
    }
    for fate in FATES:
        chosen = [f for f in fates if f.fate == fate]
        out[fate] = len(chosen) / n if n else 0.0
        out[f"{fate}_length"] = sum(f.length_px for f in chosen) / length
        out[f"{fate}_lar"] = float(np.mean([f.lar for f in chosen])) if chosen else 0.0
    split = [f.pieces for f in fates if f.fate == "split"]
    out["pieces_per_split_line"] = float(np.median(split)) if split else 0.0
    whole = [f.best_on for f in fates if f.fate == "whole"]
    out["whole_piece_on_line"] = float(np.median(whole)) if whole else 0.0
    return out


def table(rows: dict[str, dict]) -> str:
    head = (
        "| model | lines | predicted | LAR | "
        + " | ".join(FATES)
        + " | pieces per split line | whole: piece on line (median) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, s in rows.items():
        shares = " | ".join(f"{s[f]:.3f} ({s[f + '_length']:.3f}) {s[f + '_lar']:.3f}" for f in FATES)
        lines.append(
            f"| {name} | {s['lines']} | {s['predicted_lines']} | {s['lar']:.3f} | {shares} | "
            f"{s['pieces_per_split_line']:.1f} | {s['whole_piece_on_line']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    from dislotrack.runtime.inference import InferenceConfig, Predictor
    from dislotrack.runtime.lines import LineConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="ONNX models, scored on the same frames")
    p.add_argument("--images", required=True)
    p.add_argument("--masks", default=None, help="binary line masks (instances: 8-connected components)")
    p.add_argument("--labelme", default=None, help="or labelme JSON polylines")
    p.add_argument("--line-width", type=int, default=3, help="labelme polylines drawn this wide (px)")
    p.add_argument("--tolerance", type=float, default=3.0, help="px, as evaluate's centreline tolerance")
    p.add_argument("--raw-masks", action="store_true", help="the thresholded channels as instances")
    p.add_argument("--no-join", action="store_true", help="runtime lines without joining pieces")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    lines = LineConfig().unjoined() if args.no_join else LineConfig()
    frames = load_labelled(args.images, args.masks, args.labelme, args.line_width)
    rows = {}
    for model in args.models:
        predictor = Predictor(model, InferenceConfig(device="cpu"))
        fates: list[LineFate] = []
        n_pred = 0
        for f, pred in predicted_instances(predictor, frames, args.raw_masks, lines):
            n_pred += len(pred)
            fates.extend(line_fates(f.masks, pred, args.tolerance))
        rows[model] = summarise(fates, n_pred)
        if args.json:
            rows[model]["per_line"] = [asdict(x) for x in fates]
    print("labelled lines by fate: share of lines (share of labelled length) mean LAR of those lines")
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
