"""Can a network's features tell a dislocation from a visible slip trace? A linear probe, by layer.

The shipped model marks slip traces as well as dislocations, and every loss term that charges
traces has cost lines with them (training log, sessions 22-25). If the features a network computes
do not separate the two, no term on its output can; a larger or differently trained network is
then worth training only if its features separate them better. This script measures that on
held-out synthetic images, where the generator knows every line and every trace:

- pixels: the true line pixels, and the axis pixels of dark slip traces at least ``--min-depth``
  deep (fractional darkening; light traces look nothing like a dislocation), less those within 3 px
  of a line; up to ``--pixels`` of each per image;
- per layer group: each pixel's features (every encoder stage and decoder block output, sampled
  bilinearly at the pixel), a logistic regression fitted on the first half of the images and
  scored on the other half by ROC AUC (0.5: no better than chance; 1: perfectly apart);
- the network's own output (the highest mask probability) as a score, without a fit: AUC < 0.5
  means the output is higher on traces than on lines;
- for a network trained with a trace channel (``--trace-weight``), that channel's probability,
  negated, as a score without a fit: 1 when it is higher on every trace than on every line.

Usage (torch needed, ``train`` extra):

    python scripts/probe_features.py MODEL [--preset m2-trace] [--images 48] [--size 256] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.stats import rankdata

from dislotrack.runtime.synth import iter_samples
from dislotrack.runtime.synth.scene import distractor_axes
from dislotrack.training.export import load_weights
from dislotrack.training.train import predict_probs

PROBE_SEED = 314_159_261  # held out: no training stream or validation set uses it
LINE_MARGIN_PX = 3


def auc(line: np.ndarray, trace: np.ndarray) -> float:
    """ROC AUC of ``line`` scores above ``trace`` scores (Mann-Whitney, ties counted half)."""
    ranks = rankdata(np.concatenate([line, trace]))
    n1, n2 = len(line), len(trace)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n2))


def probe_pixels(sample, min_depth: float, per_class: int, rng: np.random.Generator):
    """(ys, xs, is_line) of sampled line pixels and dark-trace axis pixels of one sample."""
    lines = sample.masks.astype(bool).any(0) if len(sample.masks) else np.zeros(sample.image.shape, bool)
    traces = sample.params["sampled"]["distractors"]["traces"]
    visible = [t for t in traces if -t["contrast"] >= min_depth]  # the generator's dark traces are < 0
    shown = dict(sample.params["sampled"]["distractors"], traces=visible, tangles=[], boundaries=[])
    axis = distractor_axes(shown, sample.image.shape)["slip_traces"]
    axis &= ~ndimage.maximum_filter(lines, size=2 * LINE_MARGIN_PX + 1)
    picked = []
    for plane, label in ((lines, 1), (axis, 0)):
        ys, xs = np.nonzero(plane)
        if len(ys) == 0:
            continue
        keep = rng.choice(len(ys), size=min(per_class, len(ys)), replace=False)
        picked.append((ys[keep], xs[keep], np.full(len(keep), label)))
    if not picked:
        return np.empty(0, int), np.empty(0, int), np.empty(0, int)
    return tuple(np.concatenate(p) for p in zip(*picked, strict=True))


class Taps:
    """Forward hooks that keep the encoder's stage outputs and every decoder block's output."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.maps: dict[str, torch.Tensor] = {}
        net.encoder.register_forward_hook(self._encoder)
        for name, block in net.decoder.blocks.items():
            block.register_forward_hook(self._keep(f"decoder.{name}"))

    def _encoder(self, module, inputs, outputs) -> None:
        for i, f in enumerate(outputs[1:], start=1):  # stage 0 is the input itself
            self.maps[f"encoder.{i}"] = f

    def _keep(self, name: str):
        def hook(module, inputs, output) -> None:
            self.maps[name] = output

        return hook


def sample_at(maps: dict[str, torch.Tensor], ys, xs, shape) -> dict[str, np.ndarray]:
    """Each map's features at the pixel centres (bilinear), (n_pixels, channels) per map."""
    h, w = shape
    grid = torch.stack(
        [torch.as_tensor((xs + 0.5) / w * 2 - 1), torch.as_tensor((ys + 0.5) / h * 2 - 1)], -1
    ).float()[None, None]
    out = {}
    for name, m in maps.items():
        v = torch.nn.functional.grid_sample(m.float(), grid, mode="bilinear", align_corners=False)
        out[name] = v[0, :, 0].T.numpy()
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 200):
    """Standardised logistic regression (L-BFGS); returns a scoring function."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.as_tensor((x - mean) / std, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")
    weight = torch.where(yt > 0, 0.5 / yt.mean(), 0.5 / (1 - yt.mean()))  # classes count alike

    def closure():
        opt.zero_grad()
        loss = (
            weight * torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt, reduction="none")
        ).mean()
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w, b = w.detach().numpy(), float(b.detach())
    return lambda z: ((z - mean) / std) @ w + b


def stacked(rows, members: list[str]) -> np.ndarray:
    """(pixels, channels): the chosen maps' features of every row's pixels, side by side."""
    return np.concatenate([np.concatenate([r[0][m] for m in members], 1) for r in rows])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="weights: .safetensors, .pt, run folder, or .onnx with its .safetensors")
    p.add_argument("--preset", default="m2-trace")
    p.add_argument("--images", type=int, default=48, help="held-out images (half fit, half score)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--pixels", type=int, default=400, help="pixels of each class per image")
    p.add_argument(
        "--min-depth",
        type=float,
        default=0.15,
        help="dark slip traces at least this deep count (m2: lines 0.15-0.5)",
    )
    p.add_argument("--l2", type=float, default=1e-2, help="weight penalty of the fit (standardised features)")
    p.add_argument("--seed", type=int, default=PROBE_SEED)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    weights = load_weights(args.model)
    net = weights.network()
    taps = Taps(net)
    rng = np.random.default_rng(args.seed)
    n = weights.model.n_masks
    rows: list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]] = []
    # features, highest mask probability, negated trace channel (or nothing), is_line
    stream = iter_samples(preset=args.preset, seed=args.seed, size=(args.size, args.size))
    for _ in range(20 * args.images):
        if len(rows) == args.images:
            break
        sample = next(stream)
        ys, xs, is_line = probe_pixels(sample, args.min_depth, args.pixels, rng)
        if is_line.sum() == 0 or (1 - is_line).sum() == 0:
            continue  # an image without lines or without a visible trace says nothing here
        with torch.no_grad():  # the taps keep this one image's maps
            out = next(predict_probs(net, [sample.image], weights.model, batch_size=1, all_outputs=True))
        feats = sample_at(taps.maps, ys, xs, sample.image.shape)
        rows.append((feats, out[:n].max(0)[ys, xs], -out[n:].sum(0)[ys, xs], is_line))
    if len(rows) < 2:
        raise SystemExit(f"{args.preset}: under 2 images with both lines and dark slip traces to probe")
    half = len(rows) // 2
    fit_rows, test_rows = rows[:half], rows[half:]
    y_fit = np.concatenate([r[3] for r in fit_rows])
    y_test = np.concatenate([r[3] for r in test_rows])
    unfitted = {"output (highest mask probability, no fit)": np.concatenate([r[1] for r in test_rows])}
    if weights.model.trace_channel:
        unfitted["trace channel (negated, no fit)"] = np.concatenate([r[2] for r in test_rows])
    names = list(rows[0][0])
    last = f"decoder.x_0_{len(weights.model.decoder_channels) - 1}"
    groups = {
        **dict.fromkeys(unfitted),
        f"last decoder block ({last})": [last],
        "decoder blocks": [n for n in names if n.startswith("decoder.")],
        "encoder stages": [n for n in names if n.startswith("encoder.")],
        "all features": names,
    }
    figures: dict[str, dict[str, float]] = {}
    for label, members in groups.items():
        if members is None:
            score, dims, fitted = unfitted[label], 0, None
        else:
            x_fit, x_test = stacked(fit_rows, members), stacked(test_rows, members)
            model = fit_logistic(x_fit, y_fit, l2=args.l2)
            score, dims = model(x_test), x_fit.shape[1]
            seen = model(x_fit)
            fitted = auc(seen[y_fit == 1], seen[y_fit == 0])
        figures[label] = {
            "auc": auc(score[y_test == 1], score[y_test == 0]),
            "auc_fitted_images": fitted,
            "channels": dims,
        }
    print(
        f"{Path(args.model).name}: {args.preset}, {len(rows)} images of {args.size}² "
        f"({len(y_fit)} pixels fitted, {len(y_test)} scored: {int(y_test.sum())} line, "
        f"{int((1 - y_test).sum())} trace)"
    )
    for label, f in figures.items():
        on_fit = (
            "" if f["auc_fitted_images"] is None else f", {f['auc_fitted_images']:.3f} on the fitted images"
        )
        print(f"  {label:46s} AUC {f['auc']:.3f}  ({f['channels']} channels{on_fit})")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"model": str(args.model), "preset": args.preset, **figures}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
