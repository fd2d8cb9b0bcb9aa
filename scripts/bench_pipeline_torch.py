"""End-to-end throughput of the runtime pipeline with the network run by torch, against the network alone.

    python scripts/bench_pipeline_torch.py --model M.onnx [--device cuda] [--precision float16]
        [--frames 400] [--batch 8] [--post-workers 1 4 8] [--json out.json]

For GPU machines without onnxruntime-gpu (issue 5's GPU target is measured by ``bench_runtime.py``
with onnxruntime's CUDA provider; this script is not that figure). The model's ``.safetensors`` run
through ``TorchPredictor`` inside the runtime's own batch job (``process_source``: read, infer,
line extraction on ``--post-workers`` threads, tracking, spacing, CSV + parquet export), so the
figure says whether everything around the network keeps up with a GPU-speed network.

Frames: a synthetic 512x512 pile-up video (the same config as ``bench_runtime.py``) written as a
TIFF stack, so no video codec is needed on the machine; decoding is measured by ``bench_runtime.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from dislotrack.runtime.batch import ProcessOptions, process_source
from dislotrack.runtime.export import ExportConfig
from dislotrack.runtime.lines import extract_lines
from dislotrack.runtime.pipeline import PipelineConfig
from dislotrack.runtime.sources import open_source
from dislotrack.runtime.synth import VideoConfig, iter_video
from dislotrack.training.torch_inference import PRECISIONS, TorchPredictor


def bench_network(predictor: TorchPredictor, images: np.ndarray, batch: int, warmup: int = 3) -> dict:
    """Network alone, frames in and float32 probabilities out on the host (as the pipeline gets them)."""
    for _ in range(warmup):
        predictor.predict(images[:batch])
    t0 = time.perf_counter()
    for k in range(0, len(images), batch):
        predictor.predict(images[k : k + batch])
    seconds = time.perf_counter() - t0
    return {
        "frame_per_s": round(len(images) / seconds, 1),
        "ms_per_frame": round(1e3 * seconds / len(images), 3),
    }


def bench_post(predictor: TorchPredictor, images: np.ndarray, batch: int) -> dict:
    """Line extraction alone, in this thread, on the model's own masks of these frames."""
    probs = [p for k in range(0, len(images), batch) for p in predictor.predict(images[k : k + batch])]
    extract_lines(probs[0], predictor.threshold)  # compiles the numba kernels outside the timing
    t0 = time.perf_counter()
    for p in probs:
        extract_lines(p, predictor.threshold)
    ms = 1e3 * (time.perf_counter() - t0) / len(probs)
    return {"ms_per_frame": round(ms, 2), "frame_per_s": round(1e3 / ms, 1), "frames": len(probs)}


def run(args: argparse.Namespace) -> dict:
    predictor = TorchPredictor(args.model, args.device, args.precision)
    cfg = VideoConfig(n_frames=args.frames, seed=args.seed, pileups=(2, 2), lines=(9, 10))
    images = np.stack([f.image for f in iter_video(cfg)])
    workers = args.post_workers or [max(1, min(8, (os.cpu_count() or 1) - 2))]
    report: dict = {
        "model": predictor.model.name,
        "provider": predictor.provider,
        "cpu_count": os.cpu_count(),
        "frames": len(images),
        "frame_size": list(images.shape[1:]),
        "batch": args.batch,
        "queue_frames": args.queue_frames,
    }
    report["network"] = bench_network(predictor, images, args.batch)
    report["post_one_thread"] = bench_post(predictor, images[: args.post_frames], args.batch)
    report["end_to_end"] = []
    with tempfile.TemporaryDirectory() as tmp:
        stack = Path(tmp) / "video.tif"
        tifffile.imwrite(stack, images)
        export = ExportConfig(spacing_png=False)
        for n in workers:
            pipeline = PipelineConfig(batch_size=args.batch, post_workers=n, queue_frames=args.queue_frames)
            options = ProcessOptions(batch_size=args.batch, progress=False, pipeline=pipeline, export=export)
            summary = process_source(open_source(stack), Path(tmp) / f"out-{n}", predictor, options)
            e2e = summary["frames"] / summary["wall_s"]
            report["end_to_end"].append(
                {
                    "post_workers": n,
                    "frame_per_s": round(e2e, 1),
                    "over_network": round(e2e / report["network"]["frame_per_s"], 3),
                    "lines_per_frame": summary["lines_per_frame"],
                }
            )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="ONNX model with its .safetensors (default: shipped)"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="float32")
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--post-workers",
        type=int,
        nargs="+",
        default=None,
        help="line-extraction threads, one end-to-end run per value (default: cores - 2, at most 8)",
    )
    parser.add_argument("--queue-frames", type=int, default=32, help="frames in flight between two stages")
    parser.add_argument("--post-frames", type=int, default=32, help="frames whose lines are timed alone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    report = run(args)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
