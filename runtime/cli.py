"""``dislotrack process`` (batch) and ``dislotrack demo`` (the README's main job).

Only argparse at import time: the handlers import the runtime, so the command starts fast and a
missing extra is reported by the subcommand that needs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``process`` and ``demo``."""
    p = subparsers.add_parser(
        "process",
        help="find, track and measure dislocations in videos / image stacks",
        description="Process each SOURCE (video, TIFF stack, folder of PNG/TIFF frames, device or stream "
        "URL) into its own folder under --out: lines.csv/.parquet, tracks.csv, spacing.csv, run.json.",
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    p.add_argument("--out", required=True, type=Path, help="output folder (one sub-folder per source)")
    _model_args(p)
    p.add_argument("--no-track", action="store_true", help="lines only: no track IDs, no spacings")
    p.add_argument("--drift", action="store_true", help="compensate stage drift (phase correlation)")
    p.add_argument(
        "--overlay", action="store_true", help="also write overlay.mp4 (lines and IDs on the frames)"
    )
    p.add_argument("--no-parquet", action="store_true", help="skip lines.parquet")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames per source")
    p.add_argument(
        "--follow", action="store_true", help="keep reading a file/folder that is still being written"
    )
    p.add_argument(
        "--frame-interval",
        type=float,
        default=None,
        metavar="S",
        help="seconds between frames of image stacks/folders (they carry no timestamps)",
    )
    p.add_argument(
        "--tile-above",
        type=int,
        default=None,
        metavar="PX",
        help="tile frames whose larger side exceeds PX (default 1536)",
    )
    p.add_argument(
        "--post-workers",
        type=int,
        default=None,
        help="threads for line extraction (default: 1 on CPU, cores - 2 with a GPU)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_process)

    d = subparsers.add_parser(
        "demo",
        help="generate a synthetic in-situ video and process it with the shipped model",
        description="Writes a short synthetic pile-up video (with its truth) and runs `process` on it.",
    )
    d.add_argument("--out", required=True, type=Path)
    d.add_argument("--frames", type=int, default=60)
    d.add_argument("--seed", type=int, default=0)
    _model_args(d)
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_demo)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped model)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--flips",
        type=int,
        choices=(1, 2, 4),
        default=1,
        help="network passes per frame: 2 adds the frame mirrored left-right, 4 also upside down and "
        "both; finds more of each line at that many times the network's cost (README: Flip passes)",
    )
    p.add_argument("--threshold", type=float, default=None, help="mask threshold (default: the model's)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument(
        "--no-join",
        action="store_true",
        help="one line per mask piece: do not join pieces that continue each other end to end",
    )


def _options(args: argparse.Namespace, **changes):
    from dataclasses import replace

    from dislotrack.runtime.batch import ProcessOptions
    from dislotrack.runtime.pipeline import PipelineConfig

    pipeline = PipelineConfig(post_workers=getattr(args, "post_workers", None))
    if args.no_join:
        pipeline = replace(pipeline, lines=pipeline.lines.unjoined())
    if getattr(args, "tile_above", None):
        pipeline = replace(pipeline, tiling=replace(pipeline.tiling, max_side=args.tile_above))
    base = ProcessOptions(
        device=args.device,
        flips=args.flips,
        threshold=args.threshold,
        batch_size=args.batch_size,
        progress=not args.quiet,
        pipeline=pipeline,
    )
    return replace(base, **changes)


def _process(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from dislotrack.runtime.batch import process

    options = _options(
        args,
        track=not args.no_track,
        drift=args.drift,
        max_frames=args.max_frames,
        follow=args.follow,
        frame_interval_s=args.frame_interval,
    )
    options = replace(
        options, export=replace(options.export, overlay=args.overlay, parquet=not args.no_parquet)
    )
    for s in process(args.sources, args.out, args.model, options):
        print(_summary_line(s))
    return 0


def _summary_line(s: dict) -> str:
    return (
        f"{s['out']}: {s['frames']} frames, {s['lines_per_frame']} lines/frame, {s['tracks']} tracks, "
        f"{s['spacings']} spacings, {s['frames'] / s['wall_s'] if s['wall_s'] else 0:.1f} frame/s"
    )


def _demo(args: argparse.Namespace) -> int:
    from dislotrack.runtime.demo import run_demo

    print(run_demo(args.out, args.frames, args.seed, args.model, _options(args)))
    return 0
