"""Tracking quality against known truth (synthetic videos): ID switches, fragmentation, spacing error.

Per frame, detected lines are matched one-to-one to true lines by the same cost the tracker uses
(mean closest-point distance) within a gate. Over the video:
- ID switch: a true dislocation matched in two consecutive matched frames to different track IDs;
- fragmentation: detected track IDs a true dislocation was split into, minus one, summed;
- spacing error: |detected − true| spacing for each true neighbour pair whose two lines are matched
  and whose detected tracks were also paired as neighbours in that frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from dislotrack.runtime.results import Line
from dislotrack.runtime.spacing import SpacingConfig, neighbour_pairs
from dislotrack.runtime.tracking import assign, cost_matrix

MATCH_GATE_PX = 6.0  # a detected line further than this (mean closest-point distance) is no true line's


@dataclass
class TrackingReport:
    """Counts and errors over a whole video."""

    frames: int = 0
    true_lines: int = 0
    detected_lines: int = 0
    matched: int = 0
    id_switches: int = 0
    fragmentation: int = 0
    true_pairs: int = 0
    spacing_errors_px: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.matched / self.true_lines if self.true_lines else float("nan")

    @property
    def precision(self) -> float:
        return self.matched / self.detected_lines if self.detected_lines else float("nan")

    @property
    def median_spacing_error_px(self) -> float:
        return float(np.median(self.spacing_errors_px)) if self.spacing_errors_px else float("nan")

    @property
    def spacing_coverage(self) -> float:
        """Fraction of true neighbour pairs for which a detected spacing was compared."""
        return len(self.spacing_errors_px) / self.true_pairs if self.true_pairs else float("nan")

    def summary(self) -> dict[str, float]:
        return {
            "frames": self.frames,
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
            "id_switches": self.id_switches,
            "fragmentation": self.fragmentation,
            "median_spacing_error_px": round(self.median_spacing_error_px, 3),
            "p90_spacing_error_px": round(float(np.percentile(self.spacing_errors_px, 90)), 3)
            if self.spacing_errors_px
            else float("nan"),
            "spacing_coverage": round(self.spacing_coverage, 4),
        }


def match_frame(truth: Mapping[int, np.ndarray], lines: Sequence[Line], gate_px: float) -> dict[int, int]:
    """True track ID -> index of the detected line it matches in this frame."""
    ids = sorted(truth)
    cost = cost_matrix(
        [np.asarray(truth[t], float) for t in ids], [ln.points.astype(float) for ln in lines], gate_px
    )
    return {ids[i]: j for i, j in assign(cost, gate_px)}


def evaluate(
    truth_frames: Iterable[Mapping[int, np.ndarray]],
    result_frames: Iterable[Sequence[Line]],
    gate_px: float = MATCH_GATE_PX,
    spacing: SpacingConfig | None = None,
) -> TrackingReport:
    """Compare tracked lines with true lines, frame by frame (both in frame order)."""
    report = TrackingReport()
    last_id: dict[int, int] = {}
    seen_ids: dict[int, set[int]] = {}
    for truth, lines in zip(truth_frames, result_frames, strict=True):
        report.frames += 1
        report.true_lines += len(truth)
        report.detected_lines += len(lines)
        match = match_frame(truth, lines, gate_px)
        report.matched += len(match)
        for tid, j in match.items():
            det = lines[j].track_id
            if tid in last_id and last_id[tid] != det:
                report.id_switches += 1
            last_id[tid] = det
            seen_ids.setdefault(tid, set()).add(det)
        _compare_spacings(report, truth, lines, match, spacing)
    report.fragmentation = sum(len(s) - 1 for s in seen_ids.values())
    return report


def _compare_spacings(report, truth, lines, match, spacing) -> None:
    ids = sorted(truth)
    true_pairs = neighbour_pairs([np.asarray(truth[t], float) for t in ids], spacing)
    det_pairs = {
        (min(a, b), max(a, b)): d
        for a, b, d in neighbour_pairs([ln.points.astype(float) for ln in lines], spacing)
    }
    report.true_pairs += len(true_pairs)
    for i, j, d_true in true_pairs:
        ti, tj = ids[i], ids[j]
        if ti in match and tj in match:
            key = tuple(sorted((match[ti], match[tj])))
            if key in det_pairs:
                report.spacing_errors_px.append(abs(det_pairs[key] - d_true))


def truth_probabilities(
    labels: np.ndarray,
    ids: Sequence[int],
    n_masks: int,
    rng: np.random.Generator,
    duplicate_prob: float = 0.3,
    fragment_prob: float = 0.2,
) -> np.ndarray:
    """Model-like (n_masks, H, W) probabilities made from a true label image.

    Each true line (pixels ``labels == id``, blurred) goes to a random channel; spare channels get,
    as a trained model's spare masks do, weaker duplicates and fragments of lines. This tests and
    times everything after the network without depending on a network's quality.
    """
    out = np.full((n_masks, *labels.shape), 0.02, dtype=np.float32)
    channels = rng.permutation(n_masks)
    k = 0
    for i, tid in enumerate(ids):
        if k >= n_masks:
            break
        spare = n_masks - k - (len(ids) - i)  # channels left once every true line has one
        mask = labels == tid
        soft = np.clip(ndimage.gaussian_filter(mask.astype(np.float32), 1.0) * 1.9, 0, 1)
        level = rng.uniform(0.85, 1.0)
        out[channels[k]] = soft * level
        k += 1
        if spare > 0 and rng.random() < duplicate_prob:
            out[channels[k]] = soft * level * 0.8
            k, spare = k + 1, spare - 1
        if spare > 0 and rng.random() < fragment_prob:
            frag = soft * level * 0.9
            _, xs = np.nonzero(mask)
            if xs.size:
                frag[:, : int(np.median(xs))] = 0.02
            out[channels[k]] = frag
            k += 1
    return out
