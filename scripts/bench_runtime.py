"""Per-stage and end-to-end throughput of the runtime on 512x512 frames (CPU; GPU when present).

    .venv/bin/python scripts/bench_runtime.py [--model M.onnx] [--frames 200] [--json out.json]

Stages, each timed alone on the same synthetic in-situ video (written to a temporary folder):
decode (PyAV → grey), inference (onnxruntime, the pipeline's batch size), post-processing (20 masks
→ lines, one thread), tracking (+ spacing), export (CSV + parquet); then end to end (``iter_results``
+ export, stages overlapping) and its ratio to inference alone. Post-processing, tracking and export
get model-like 20-mask probability maps made from the video's truth, so their cost does not depend
on what a particular model finds; post-processing is also timed on the model's own masks of the
same frames (``model_post``: a weak model's masks hold many broken pieces, which costs more).
Inference alone is also timed with onnxruntime's thread spinning on (``inference_spinning``), to
show that the runtime's default (off, which frees cores for the other stages) does not buy its end
to end ratio by slowing inference. ``ceiling``: end to end with the network replaced by those
truth-made masks served at once, i.e. the most any accelerator could give with this CPU and the
runtime's GPU thread count. Targets (issue 5): post ≤ 8 ms/frame, decode ≥ 1000 frame/s,
CPU end to end ≥ 0.8 × inference, GPU end to end ≥ 400 frame/s.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from dislotrack.runtime.batch import ProcessOptions, process_source
from dislotrack.runtime.evaluation import truth_probabilities
from dislotrack.runtime.export import ExportConfig, RunWriter
from dislotrack.runtime.inference import InferenceConfig, Predictor
from dislotrack.runtime.lines import extract_lines
from dislotrack.runtime.pipeline import default_post_workers, iter_results
from dislotrack.runtime.results import FrameResult
from dislotrack.runtime.sources import open_source
from dislotrack.runtime.spacing import frame_spacings
from dislotrack.runtime.synth import VideoConfig, iter_video, write_video
from dislotrack.runtime.tracking import Linker

N_MASKS = 20


def _rate(n: int, seconds: float, cpu_s: float | None = None) -> dict[str, float]:
    extra = {} if cpu_s is None else {"cpu_ms_per_frame": round(1000 * cpu_s / n, 3)}
    return {
        **extra,
        "frames": n,
        "seconds": round(seconds, 4),
        "frame_per_s": round(n / seconds, 2),
        "ms_per_frame": round(1000 * seconds / n, 3),
    }


def bench_decode(video: Path, repeat: int = 3) -> dict[str, float]:
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = sum(1 for _ in open_source(video))
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return _rate(n, best)


def bench_inference(predictor: Predictor, images: list[np.ndarray], batch: int) -> dict[str, float]:
    predictor.predict(np.stack(images[:batch]))  # warm-up: graph optimisation, allocations
    t0 = time.perf_counter()
    for k in range(0, len(images), batch):
        predictor.predict(np.stack(images[k : k + batch]))
    return _rate(len(images), time.perf_counter() - t0)


def bench_post(probs: list[np.ndarray], threshold: float, repeat: int = 5) -> tuple[dict[str, float], list]:
    """Post-processing per frame over ``repeat`` passes after one warm-up call (``first_call_s``: numba
    compiles or loads the thinning once per process), the figure being the median pass (one pass is
    at the mercy of whatever else the machine does); and the share of it that is the threshold
    alone: one pass over the (N, H, W) float32 stack, bound by memory bandwidth, which no change to
    the line steps can remove."""
    t0 = time.perf_counter()
    extract_lines(probs[0], threshold, with_labels=False)  # once per process: loads the compiled thinning
    first_call = time.perf_counter() - t0
    passes, cpu = [], []
    for _ in range(repeat):
        out = []
        t0, c0 = time.perf_counter(), time.process_time()
        for p in probs:
            out.append(extract_lines(p, threshold, with_labels=False)[0])
        passes.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    k = int(np.argsort(passes)[len(passes) // 2])
    report = _rate(len(probs), passes[k], cpu[k])
    report["passes"] = repeat
    report["first_call_s"] = round(first_call, 3)
    report["best_pass_ms_per_frame"] = round(1000 * min(passes) / len(probs), 3)
    report["worst_pass_ms_per_frame"] = round(1000 * max(passes) / len(probs), 3)
    c0 = time.process_time()
    for p in probs:
        np.greater(p, threshold)
    report["threshold_cpu_ms_per_frame"] = round(1000 * (time.process_time() - c0) / len(probs), 3)
    return report, out


# (name, where in the report, lower limit, upper limit): issue 5's targets
TARGETS = (
    ("post_ms_per_frame_le_8", ("post", "ms_per_frame"), None, 8.0),
    ("decode_frame_per_s_ge_1000", ("decode", "frame_per_s"), 1000.0, None),
    ("cpu_end_to_end_over_inference_ge_0.8", ("cpu", "end_to_end_over_inference"), 0.8, None),
    ("gpu_end_to_end_frame_per_s_ge_400", ("cuda", "end_to_end", "frame_per_s"), 400.0, None),
)


def targets(report: dict) -> dict[str, dict]:
    """Issue 5's targets against the figures just measured (the GPU one only where CUDA ran)."""
    result = {}
    for name, path, lo, hi in TARGETS:
        if path[0] not in report:
            continue
        value = functools.reduce(operator.getitem, path, report)
        met = (lo is None or value >= lo) and (hi is None or value <= hi)
        result[name] = {"measured": value, "met": bool(met)}
    return result


def bench_tracking(frames_lines: list, images: list[np.ndarray]) -> tuple[dict[str, float], list]:
    linker, out = Linker(), []
    t0, c0 = time.perf_counter(), time.process_time()
    for i, lines in enumerate(frames_lines):
        tracked = linker.update(i, lines, images[i])
        out.append((tracked, frame_spacings(tracked)))
    return _rate(len(frames_lines), time.perf_counter() - t0, time.process_time() - c0), out


def bench_export(tracked: list, frames, out_dir: Path) -> dict[str, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    with RunWriter(out_dir, {"bench": True}, ExportConfig(spacing_png=False)) as writer:
        for (lines, spacings), f in zip(tracked, frames, strict=True):
            writer.write(FrameResult(f, lines, spacings))
    return _rate(len(tracked), time.perf_counter() - t0, time.process_time() - c0)


class CachedMasks:
    """A model that answers at once with precomputed masks: the pipeline's ceiling, what end to end
    could reach on an accelerator of unlimited speed (decode, line extraction, tracking, export)."""

    threshold = 0.5

    def __init__(self, probs: list[np.ndarray], provider: str = "CUDAExecutionProvider") -> None:
        self.probs, self.provider, self.served = probs, provider, 0

    def predict(self, images: np.ndarray) -> np.ndarray:
        picks = [(self.served + k) % len(self.probs) for k in range(len(images))]
        self.served += len(images)
        return np.stack([self.probs[k] for k in picks])


def bench_ceiling(video: Path, probs: list[np.ndarray], out_dir: Path, batch: int) -> dict[str, float]:
    """End to end with ``CachedMasks`` in place of the network, threads as the runtime gives a GPU."""
    model = CachedMasks(probs)
    t0, n = time.perf_counter(), 0
    with RunWriter(out_dir, {"bench": "ceiling"}, ExportConfig(spacing_png=False)) as writer:
        for result in iter_results(video, model=model, batch_size=batch):
            writer.write(result)
            n += 1
    return {**_rate(n, time.perf_counter() - t0), "post_workers": default_post_workers(model.provider)}


def bench_end_to_end(video: Path, predictor: Predictor, out_dir: Path, batch: int) -> dict[str, float]:
    options = ProcessOptions(batch_size=batch, progress=False, export=ExportConfig(spacing_png=False))
    summary = process_source(open_source(video), out_dir, predictor, options)
    return {**_rate(summary["frames"], summary["wall_s"]), "lines_per_frame": summary["lines_per_frame"]}


def run(args: argparse.Namespace) -> dict:
    report: dict = {
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "frames": args.frames,
    }
    cfg = VideoConfig(n_frames=args.frames, seed=args.seed, pileups=(2, 2), lines=(9, 10))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = write_video(cfg, tmp / "video")
        truth = list(iter_video(cfg))
        rng = np.random.default_rng(0)
        probs = [truth_probabilities(f.labels, sorted(f.lines), N_MASKS, rng) for f in truth]
        frames = list(open_source(paths.video))
        images = [f.image for f in frames]
        report["true_lines_per_frame"] = round(float(np.mean([len(f.lines) for f in truth])), 2)
        report["decode"] = bench_decode(paths.video)
        report["post"], lines = bench_post(probs, 0.5)
        report["post"]["lines_per_frame"] = round(float(np.mean([len(x) for x in lines])), 2)
        report["tracking"], tracked = bench_tracking(lines, images)
        report["export"] = bench_export(tracked, frames, tmp / "export")
        report["ceiling"] = bench_ceiling(paths.video, probs, tmp / "ceiling", args.batch)
        devices = ["cpu"] + (["cuda"] if _has_cuda() else [])
        for device in devices:
            predictor = Predictor(args.model, InferenceConfig(device=device))
            sec = report.setdefault(device, {"provider": predictor.provider, "model": predictor.model.name})
            sec["inference"] = bench_inference(predictor, images, args.batch)
            if device == "cpu":
                spinning = Predictor(args.model, InferenceConfig(device=device, spin=True))
                sec["inference_spinning"] = bench_inference(spinning, images, args.batch)
            sec["end_to_end"] = bench_end_to_end(paths.video, predictor, tmp / f"e2e-{device}", args.batch)
            sec["end_to_end_over_inference"] = round(
                sec["end_to_end"]["frame_per_s"] / sec["inference"]["frame_per_s"], 3
            )
            model_probs = [
                p
                for k in range(0, args.model_frames, args.batch)
                for p in predictor.predict(np.stack(images[k : k + args.batch]))
            ]
            sec["model_post"], model_lines = bench_post(model_probs, predictor.threshold)
            sec["model_post"]["lines_per_frame"] = round(float(np.mean([len(x) for x in model_lines])), 2)
    return report


def _has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped model)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument(
        "--model-frames", type=int, default=16, help="frames whose model masks are post-processed"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    report = run(args)
    report["targets"] = targets(report)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
