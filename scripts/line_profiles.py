"""How dislocations look across the line: labelled real frames against a synthetic preset.

The model learns only from the generator, so the generator's lines must look like real ones. This
script measures, for every labelled line, the grey profile across it (perpendicular to its spline,
re-centred on the darkest point within 3 px because hand labels wander) and prints quartiles of:

- width: full width at half depth of the line's mean profile (px);
- depth: darkening at the core as a fraction of the grey level beside the line (the generator's
  ``darkness``);
- cnr: core depth over the frame's pixel noise (robust std of the image minus its 1.5 px blur);
- local: core depth over the grey spread in a 24 px Gaussian window (what ``--local-contrast 24``
  hands the network).

``--alignment`` also reports, frame by frame, whether the labels lie where the lines are: frames
whose mask repeats another frame's (labels copied while the lines glide), how far each label lies
from the darkest point beside it, and what a model that draws every labelled line exactly on its
dark core would score against these labels (``dislotrack evaluate``'s metrics and IoU tolerance).
That score is the most any model can reach on frames whose labels are off the lines.

``--straight MODEL`` measures, on the frames with their own labels, what the model marks that hand
labels never do: long, straight detections that keep clear of every label (the video's slip traces),
so that the generator's traces can be drawn like them.

Usage:

    python scripts/line_profiles.py --images DIR --masks DIR [--preset m2 --synthetic 60]
    python scripts/line_profiles.py --images DIR --masks DIR --synthetic 0 --alignment [--groups 0-9,10-99]
    python scripts/line_profiles.py --images DIR --masks DIR --synthetic 0 --straight MODEL.onnx
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dislotrack.runtime.inference import max_value
from dislotrack.runtime.lines import extract_lines, fit_lines, skeleton_path
from dislotrack.runtime.results import Line
from dislotrack.training.evaluate import (
    LABELLED_IOU_TOLERANCE_PX,
    Labelled,
    load_mask_folder,
    polyline_mask,
    repeated_labels,
    synthetic_labelled,
)
from dislotrack.training.metrics import ImageScores, MetricConfig, score_masks, summarise

OFFSETS = np.arange(-12.0, 12.5, 0.5)  # positions across the line (px)
CORE_PX = 3.0  # search the darkest point within this distance of the labelled centre
BESIDE_PX = (5.0, 8.0)  # "beside the line": far enough from the core, closer than a pile-up neighbour
LOCAL_SIGMA = 24.0
INNER = slice(5, 45)  # of the 50 spline points: leave out the ends, where the line may stop early
SEARCH_PX = 6.0  # alignment: look this far either side of a label for the line's dark core
LABEL_WIDTH_PX = 3  # alignment: width of redrawn labels (tanaka-8um's hand labels: about 3.1 px)
OFF_CORE_PX = 3.0  # a core this far from its label fails IoU >= 0.5 at the 2 px tolerance
STRAIGHT_MIN_PX = 80.0  # --straight: a slip trace crosses much of the frame
STRAIGHT_CHORD = 0.97  # --straight: end-to-end distance over length (1: a straight line)
STRAIGHT_CLEAR_PX = 8.0  # --straight: every point this far from any label (beyond a pile-up neighbour)


@dataclass(frozen=True)
class Profile:
    width_px: float
    depth: float
    cnr: float
    local: float


def frame_noise(image: np.ndarray) -> float:
    """Robust std of the fine-scale residual: the pixel noise, mostly free of lines and background."""
    residual = image - ndimage.gaussian_filter(image, 1.5)
    return float(1.4826 * np.median(np.abs(residual - np.median(residual))))


def local_spread(image: np.ndarray, sigma: float) -> np.ndarray:
    mean = ndimage.gaussian_filter(image, sigma)
    return np.sqrt(np.maximum(ndimage.gaussian_filter(image * image, sigma) - mean * mean, 1e-12))


def fwhm(profile: np.ndarray, offsets: np.ndarray, background: float) -> float:
    """Width where the mean profile is darker than half way from the background to its core."""
    centre = int(np.argmin(np.abs(offsets)))
    half = background - (background - profile[centre]) / 2
    below = profile <= half
    if not below[centre]:
        return float("nan")
    left = right = centre
    while left > 0 and below[left - 1]:
        left -= 1
    while right < len(profile) - 1 and below[right + 1]:
        right += 1
    return float((right - left + 1) * (offsets[1] - offsets[0]))


def grey(frame: Labelled) -> np.ndarray:
    """The frame as float grey on the runtime's full scale."""
    image = np.asarray(frame.image)
    image = image.astype(np.float64) / max_value(image.dtype)
    return image.mean(axis=2) if image.ndim == 3 else image


@dataclass(frozen=True)
class Across:
    """A labelled line's 50-point spline, its unit normals (one consistent side) and the grey
    profiles along them at ``OFFSETS``."""

    points: np.ndarray
    normal: np.ndarray
    profiles: np.ndarray


def across_line(image: np.ndarray, mask: np.ndarray) -> Across | None:
    """``None`` for labels too short to fit a spline to."""
    path = skeleton_path(mask)
    if len(path) < 12:
        return None
    pts, _, _ = fit_lines([path[:, ::-1].astype(np.float64)], 50)[0]
    tangent = np.gradient(pts, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    xy = pts[:, None, :] + OFFSETS[None, :, None] * normal[:, None, :]
    prof = ndimage.map_coordinates(image, [xy[..., 1], xy[..., 0]], order=1, mode="nearest")
    return Across(pts, normal, prof)


def line_profiles(frame: Labelled) -> list[Profile]:
    image = grey(frame)
    noise, spread = frame_noise(image), local_spread(image, LOCAL_SIGMA)
    out = []
    for mask in frame.masks:
        line = across_line(image, mask)
        if line is None:
            continue
        centre, prof = line.points[INNER], line.profiles[INNER]
        near = np.abs(OFFSETS) <= CORE_PX
        shift = np.flatnonzero(near)[np.argmin(prof[:, near], axis=1)] - np.argmin(np.abs(OFFSETS))
        span = int(np.max(np.abs(shift)))
        aligned = np.stack([np.roll(p, -s) for p, s in zip(prof, shift, strict=True)])[
            :, span : len(OFFSETS) - span
        ]
        offsets = OFFSETS[span : len(OFFSETS) - span]
        beside = (np.abs(offsets) >= BESIDE_PX[0]) & (np.abs(offsets) <= BESIDE_PX[1])
        mean = aligned.mean(axis=0)
        background = float(np.median(mean[beside]))
        core = float(mean[np.argmin(np.abs(offsets))])
        depth = background - core
        at = np.round(centre).astype(int)
        at[:, 0] = np.clip(at[:, 0], 0, image.shape[1] - 1)
        at[:, 1] = np.clip(at[:, 1], 0, image.shape[0] - 1)
        local = float(np.median(spread[at[:, 1], at[:, 0]]))
        out.append(
            Profile(
                fwhm(mean, offsets, background), depth / max(background, 1e-6), depth / noise, depth / local
            )
        )
    return out


def core_offset(line: Across) -> float:
    """Signed distance (px, along the normal) from the label to the darkest point of the line's mean
    profile within ``SEARCH_PX``: one shift per line, since hand labels are placed as whole strokes."""
    mean = line.profiles[INNER].mean(axis=0)
    near = np.abs(OFFSETS) <= SEARCH_PX
    return float(OFFSETS[near][np.argmin(mean[near])])


@dataclass(frozen=True)
class Alignment:
    """One frame: ``drawn`` scores the labels redrawn in place (what the construction itself costs,
    LAR near 1) and ``snapped`` the labels moved onto their dark cores, both against the labels."""

    name: str
    lines: int
    same_mask_as: str | None
    offsets_px: tuple[float, ...]
    drawn: ImageScores
    snapped: ImageScores


def frame_alignment(frame: Labelled, same_mask_as: str | None, config: MetricConfig) -> Alignment:
    image = grey(frame)
    shape = image.shape
    drawn, snapped, offsets = [], [], []
    for mask in frame.masks:
        line = across_line(image, mask)
        if line is None:  # too short to redraw: counts as found where it is
            drawn.append(mask)
            snapped.append(mask)
            continue
        shift = core_offset(line)
        offsets.append(shift)
        drawn.append(polyline_mask(line.points, shape, LABEL_WIDTH_PX))
        snapped.append(polyline_mask(line.points + shift * line.normal, shape, LABEL_WIDTH_PX))
    empty = np.zeros((0, *shape), dtype=bool)
    return Alignment(
        frame.name,
        len(frame.masks),
        same_mask_as,
        tuple(offsets),
        score_masks(frame.masks, np.array(drawn) if drawn else empty, config),
        score_masks(frame.masks, np.array(snapped) if snapped else empty, config),
    )


def alignments(frames: list[Labelled], config: MetricConfig) -> list[Alignment]:
    """``frame_alignment`` of each frame, noting the first earlier frame with an identical mask."""
    repeats = repeated_labels(frames)
    return [frame_alignment(f, repeats.get(f.name), config) for f in frames]


def frame_number(name: str) -> int | None:
    digits = name[len(name.rstrip("0123456789")) :]
    return int(digits) if digits else None


def alignment_report(rows: list[Alignment], groups: list[tuple[int, int]]) -> str:
    """A row per frame, then the set and each group of frame numbers (from the names' last digits)."""
    lines = [
        f"{'frame':>8s} {'lines':>5s} {'|offset| px':>11s} {'>=3 px':>6s} {'LAR drawn':>9s} "
        f"{'LAR on cores':>12s}  same mask as"
    ]
    for r in rows:
        off = np.abs(np.array(r.offsets_px)) if r.offsets_px else np.array([np.nan])
        lines.append(
            f"{r.name[-8:]:>8s} {r.lines:5d} {np.median(off):11.1f} {np.mean(off >= OFF_CORE_PX):6.2f} "
            f"{summarise([r.drawn]).lar:9.3f} {summarise([r.snapped]).lar:12.3f}  {r.same_mask_as or ''}"
        )
    chosen = [("all", rows)] + [
        (f"{lo}-{hi}", [r for r in rows if (n := frame_number(r.name)) is not None and lo <= n <= hi])
        for lo, hi in groups
    ]
    for label, part in chosen:
        if not part:
            continue
        off = np.abs(np.concatenate([np.array(r.offsets_px, dtype=float) for r in part]))
        drawn, snapped = summarise(r.drawn for r in part), summarise(r.snapped for r in part)
        repeats = sum(r.same_mask_as is not None for r in part)
        lines.append(
            f"{label}: {len(part)} frames ({repeats} repeat an earlier frame's mask), {drawn.n_true} lines; "
            f"label to core median {np.median(off):.1f} px, {np.mean(off >= OFF_CORE_PX):.2f} of lines "
            f">= {OFF_CORE_PX:g} px; lines on their cores score LAR {snapped.lar:.3f}, instance recall "
            f"{snapped.instance_recall:.3f}, centreline recall {snapped.centreline_recall:.3f} "
            f"(labels redrawn in place: LAR {drawn.lar:.3f})"
        )
    return "\n".join(lines)


def parse_groups(text: str) -> list[tuple[int, int]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def straight_unlabelled(lines: Sequence[Line], labelled: np.ndarray) -> list[int]:
    """Indices of the long, straight lines whose every point keeps clear of the labelled pixels."""
    clear = ndimage.distance_transform_edt(~labelled) if labelled.any() else np.full(labelled.shape, np.inf)
    out = []
    for k, line in enumerate(lines):
        pts = line.points
        chord = float(np.hypot(*(pts[-1] - pts[0])))
        if line.length_px < STRAIGHT_MIN_PX or chord < STRAIGHT_CHORD * line.length_px:
            continue
        x = np.clip(np.round(pts[:, 0]).astype(int), 0, labelled.shape[1] - 1)
        y = np.clip(np.round(pts[:, 1]).astype(int), 0, labelled.shape[0] - 1)
        if clear[y, x].min() > STRAIGHT_CLEAR_PX:
            out.append(k)
    return out


def straight_detections(model: str, frames: list[Labelled]) -> list[Labelled]:
    """The frames with the model's long straight unlabelled detections as their masks (pixels of
    each detection's mask pieces), for ``line_profiles`` to measure; frames without one are left out."""
    from dislotrack.runtime.inference import InferenceConfig, Predictor

    predictor = Predictor(model, InferenceConfig(device="cpu"))
    out = []
    for f in frames:
        lines, labels = extract_lines(predictor.predict(f.image[None])[0], predictor.threshold)
        keep = np.array(straight_unlabelled(lines, np.any(f.masks, axis=0)), dtype=np.int64)
        if keep.size:
            out.append(Labelled(f.name, f.image, labels[None] == keep[:, None, None] + 1))
    return out


def summary(name: str, profiles: Iterable[Profile]) -> str:
    rows = list(profiles)
    parts = [f"{name}: {len(rows)} lines"]
    for field in ("width_px", "depth", "cnr", "local"):
        v = np.array([getattr(p, field) for p in rows], dtype=float)
        v = v[np.isfinite(v)]
        q = np.percentile(v, [25, 50, 75]) if v.size else [np.nan] * 3
        parts.append(f"  {field:9s} quartiles {q[0]:7.3f} {q[1]:7.3f} {q[2]:7.3f}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", help="labelled frames (as for dislotrack evaluate)")
    ap.add_argument("--masks", help="their line masks, same file stems")
    ap.add_argument("--preset", default="m2")
    ap.add_argument("--synthetic", type=int, default=60, help="synthetic images to measure (0: none)")
    ap.add_argument("--seed", type=int, default=424242)
    ap.add_argument("--size", type=int, nargs=2, default=(362, 700), metavar=("H", "W"))
    ap.add_argument("--alignment", action="store_true", help="also report whether labels lie on the lines")
    ap.add_argument("--groups", default="", help="frame-number ranges for --alignment, e.g. 0-130,140-300")
    ap.add_argument(
        "--straight",
        metavar="MODEL",
        help="also measure this model's long straight detections clear of every label (slip traces)",
    )
    ap.add_argument(
        "--iou-tolerance",
        type=int,
        default=LABELLED_IOU_TOLERANCE_PX,
        help="as dislotrack evaluate on labelled frames",
    )
    args = ap.parse_args(argv)
    config = MetricConfig(iou_tolerance_px=args.iou_tolerance)

    def report(name: str, frames: list[Labelled]) -> None:
        print(summary(name, (p for f in frames for p in line_profiles(f))))
        if args.alignment:
            print(alignment_report(alignments(frames, config), parse_groups(args.groups)))

    if args.images and args.masks:
        from pathlib import Path

        frames = load_mask_folder(Path(args.images), Path(args.masks))
        report(f"labelled frames {args.images}", frames)
        if args.straight:
            copies = repeated_labels(frames)
            own = [f for f in frames if f.name not in copies]
            found = straight_detections(args.straight, own)
            name = f"long straight unlabelled detections of {Path(args.straight).name} on {len(own)} frames"
            print(summary(name, (p for f in found for p in line_profiles(f))))
    if args.synthetic:  # synthetic labels lie on their lines: what --alignment reports there is its own error
        frames = list(synthetic_labelled(args.synthetic, args.preset, args.seed, tuple(args.size)))
        report(f"synthetic {args.preset} (seed {args.seed})", frames)


if __name__ == "__main__":
    main()
