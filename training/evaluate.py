"""Score an exported ONNX model the way users run it: runtime inference and post-processing.

Labelled frames come as binary line masks (instances = 8-connected components) or labelme JSON
polylines (one shape = one instance). Predictions go through ``dislotrack.runtime`` (onnxruntime,
padding, normalisation from the model's metadata, threshold, duplicate removal), so the figures
describe what ``dislotrack process`` delivers, not what torch delivered during training.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from dislotrack.runtime.sources import read_image
from dislotrack.training.metrics import ImageScores, MetricConfig, score_masks, summarise

log = logging.getLogger(__name__)

LABELLED_IOU_TOLERANCE_PX = 2  # hand-drawn labels are thinner or wider than the model's masks

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Labelled:
    """One labelled frame: the image as decoded (grey) and its true instance masks (n, H, W); synthetic
    frames also carry where their distractors run (``SynthSample.distractor_axes``)."""

    name: str
    image: np.ndarray
    masks: np.ndarray
    distractors: dict[str, np.ndarray] | None = None


def mask_instances(mask: np.ndarray, min_px: int = 20) -> np.ndarray:
    """Binary line mask -> (n, H, W) instances, one per 8-connected component of ≥ ``min_px`` pixels."""
    labels, n = ndimage.label(np.asarray(mask) > 0, structure=_EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = [k for k in range(1, n + 1) if sizes[k] >= min_px]
    if not keep:
        return np.zeros((0, *labels.shape), dtype=bool)
    return np.stack([labels == k for k in keep])


def polyline_mask(points: np.ndarray, shape: tuple[int, int], width: int) -> np.ndarray:
    """Rasterise a polyline (x, y points) as a mask ``width`` px wide."""
    from skimage.draw import line
    from skimage.morphology import disk

    mask = np.zeros(shape, dtype=bool)
    pts = np.round(np.asarray(points, dtype=float)).astype(int)
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        rr, cc = line(y0, x0, y1, x1)
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        mask[rr[ok], cc[ok]] = True
    radius = max((width - 1) // 2, 0)
    return ndimage.binary_dilation(mask, structure=disk(radius)) if radius else mask


def _images_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def load_mask_folder(images: Path, masks: Path) -> list[Labelled]:
    """Frames and binary masks paired by file stem (masks may use another image suffix)."""
    from skimage.io import imread

    imgs, msks = _images_by_stem(images), _images_by_stem(masks)
    common = sorted(set(imgs) & set(msks))
    if not common:
        raise FileNotFoundError(f"no image in {images} has a mask of the same name in {masks}")
    return [Labelled(s, read_image(imgs[s]), mask_instances(_flat(imread(str(msks[s]))))) for s in common]


def _flat(mask: np.ndarray) -> np.ndarray:
    return mask.max(axis=2) if mask.ndim == 3 else mask


def load_labelme_folder(folder: Path, images: Path | None, width: int) -> list[Labelled]:
    """labelme JSON files; each line/linestrip shape is one dislocation. Images are found next to the
    JSON (its ``imagePath``) or by stem in ``images``."""
    out = []
    files = sorted(folder.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no labelme .json files in {folder}")
    by_stem = _images_by_stem(images) if images else {}
    for f in files:
        doc = json.loads(f.read_text(encoding="utf-8"))
        path = by_stem.get(f.stem) or (f.parent / doc.get("imagePath", "")).resolve()
        if not Path(path).is_file():
            raise FileNotFoundError(f"image for {f.name} not found ({path})")
        image = read_image(Path(path))
        shapes = [
            s for s in doc.get("shapes", []) if s.get("shape_type", "linestrip") in ("line", "linestrip")
        ]
        masks = [polyline_mask(np.asarray(s["points"]), image.shape[:2], width) for s in shapes]
        stack = np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool)
        out.append(Labelled(f.stem, image, stack))
    return out


def load_labelled(
    images: str | None, masks: str | None, labelme: str | None, width: int = 5
) -> list[Labelled]:
    if labelme:
        return load_labelme_folder(Path(labelme), Path(images) if images else None, width)
    if not images or not masks:
        raise ValueError("give --images with --masks, or --labelme")
    for p in (images, masks):
        if not Path(p).is_dir():
            raise FileNotFoundError(f"folder not found: {p}")
    return load_mask_folder(Path(images), Path(masks))


def synthetic_labelled(n: int, preset: str, seed: int, size: tuple[int, int]) -> Iterator[Labelled]:
    """Held-out synthetic images as float frames in [0, 1] (the runtime reads floats as full scale 1)."""
    from dislotrack.runtime.synth import iter_samples

    stream = iter_samples(preset=preset, seed=seed, size=size)
    for i in range(n):
        s = next(stream)
        yield Labelled(
            f"{preset}-{seed}-{i}", s.image.astype(np.float32), s.masks.astype(bool), s.distractor_axes()
        )


def repeated_labels(frames: list[Labelled]) -> dict[str, str]:
    """Frames whose labelled pixels are exactly an earlier frame's, mapped to that frame's name.

    Labels copied from frame to frame while the lines glide score a model against where the lines
    were (tanaka-8um: 36 of 59 frames), so ``evaluate`` says how many it scored."""
    seen: dict[bytes, str] = {}
    out = {}
    for f in frames:
        union = np.any(f.masks, axis=0)  # (H, W) for frames with no label too: masks are (n, H, W)
        key = repr(union.shape).encode() + np.packbits(union).tobytes()
        if key in seen:
            out[f.name] = seen[key]
        else:
            seen[key] = f.name
    return out


def runtime_masks(probs: np.ndarray, threshold: float, lines=None) -> np.ndarray:
    """Predicted instances after the runtime's post-processing (threshold, split, deduplicate, join;
    ``lines``: its ``LineConfig``, default the runtime's)."""
    from dislotrack.runtime.lines import extract_lines

    _, labels = extract_lines(probs, threshold, lines)
    n = int(labels.max()) if labels is not None else 0
    return labels[None] == np.arange(1, n + 1)[:, None, None]


def predicted_instances(
    predictor, frames: Iterable[Labelled], raw_masks: bool = False, lines=None
) -> Iterator[tuple[Labelled, np.ndarray]]:
    """Each frame with its predicted instances, (K, H, W) bool: the thresholded output channels
    (``raw_masks``) or the runtime's lines made with ``lines`` (``runtime_masks``)."""
    from dislotrack.training.metrics import binarise

    for f in frames:
        probs = predictor.predict(f.image[None])[0]
        threshold = predictor.threshold
        yield f, binarise(probs, threshold) if raw_masks else runtime_masks(probs, threshold, lines)


def score_frames(
    model: str | None,
    frames: Iterator[Labelled] | list[Labelled],
    config: MetricConfig,
    per_image: list | None = None,
    raw_masks: bool = False,
    lines=None,
    torch_device: str | None = None,
    flips: int = 1,
) -> dict:
    """Run the model on every frame and summarise; optional per-image rows appended to ``per_image``.

    ``raw_masks`` scores the thresholded output channels as instances (the papers' protocol, which
    shows whether the network itself separates dislocations) instead of the runtime's lines, made
    with ``lines`` (a ``LineConfig``; default the runtime's). ``torch_device`` runs the model's torch
    weights there instead of onnxruntime (``TorchPredictor``); ``flips``: onnxruntime passes per frame
    (``InferenceConfig.flips``)."""
    from dislotrack.runtime.inference import InferenceConfig, Predictor
    from dislotrack.runtime.lines import LineConfig

    if torch_device is None:
        predictor = Predictor(model, InferenceConfig(device="cpu", flips=flips))
    elif flips != 1:
        raise ValueError("flip passes run with onnxruntime only; leave out --torch or --flips")
    else:
        from dislotrack.training.torch_inference import TorchPredictor

        predictor = TorchPredictor(model, torch_device)
    scores: list[ImageScores] = []
    for f, pred in predicted_instances(predictor, frames, raw_masks, lines):
        s = score_masks(f.masks, pred, config, f.distractors)
        scores.append(s)
        if per_image is not None:
            one = summarise([s]).to_dict()
            marked = one.pop("distractors_marked", {})
            per_image.append({"image": f.name, **one, **{f"{k}_marked": v for k, v in marked.items()}})
    return {
        "model": str(predictor.model.path),
        "sha256": predictor.model.sha256,
        "provider": predictor.provider,
        **summarise(scores).to_dict(),
        "settings": {
            **asdict(config),
            "instances": "raw masks" if raw_masks else "runtime lines",
            "flips": flips,
            "join_gap_px": None if raw_masks else (lines or LineConfig()).join_gap_px,
        },
    }


def write_rows(path: str | Path, rows: list[dict]) -> None:
    if not rows:
        return
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def update_card(model: str | None, key: str, figures: dict, card: str | None = None) -> Path:
    """Store ``figures`` under ``metrics[key]`` of a JSON card (the ONNX stays untouched).

    The card is the evaluated model's own unless ``card`` names another, e.g. the card of the model a
    fine-tuning experiment started from, so its figures travel with the shipped model."""
    from dislotrack.runtime.model import load_model_file

    card_path = Path(card) if card else load_model_file(model).path.with_suffix(".json")
    if not card_path.is_file():
        raise FileNotFoundError(f"model card not found: {card_path}")
    doc = json.loads(card_path.read_text(encoding="utf-8"))
    doc.setdefault("metrics", {})[key] = figures
    card_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return card_path


def run_evaluate(args) -> dict:
    """The ``dislotrack evaluate`` command: labelled frames or held-out synthetic images."""
    synthetic = args.synthetic > 0
    tol = args.iou_tolerance
    if tol is None:
        tol = 0 if synthetic else LABELLED_IOU_TOLERANCE_PX
    config = MetricConfig(iou_tolerance_px=tol, centreline_tolerance_px=args.tolerance)
    if synthetic:
        frames = synthetic_labelled(args.synthetic, args.preset, args.seed, args.size)
        source = {
            "synthetic": {
                "preset": args.preset,
                "seed": args.seed,
                "size": list(args.size),
                "images": args.synthetic,
            }
        }
    else:
        frames = load_labelled(args.images, args.masks, args.labelme, args.line_width)[args.skip_first :]
        if not frames:
            raise ValueError("no labelled frames left to evaluate")
        repeats = repeated_labels(frames)
        if repeats:
            log.warning(
                "%d of %d frames carry labels identical to an earlier frame's (e.g. %s as %s): where the "
                "lines moved in between, those labels are not where the lines are",
                len(repeats),
                len(frames),
                *next(iter(repeats.items())),
            )
        source = {
            "labelled": str(args.labelme or args.images),
            "skip_first": args.skip_first,
            "first_image": frames[0].name,
            "last_image": frames[-1].name,
            "frames_with_repeated_labels": len(repeats),
        }
    rows: list[dict] = []
    from dislotrack.runtime.lines import LineConfig
    from dislotrack.training.export import code_version

    lines = LineConfig().unjoined() if args.no_join else LineConfig()
    figures = score_frames(args.model, frames, config, rows, args.raw_masks, lines, args.torch, args.flips)
    summary = {**figures, "data": source, "code_version": code_version()}
    if args.per_image:
        write_rows(args.per_image, rows)
    if args.card_key:
        figures = {k: v for k, v in summary.items() if k != "model"}
        update_card(args.model, args.card_key, figures, args.card)
    return summary
