"""``dislotrack live``: the monitoring window next to the microscope (registered by dislotrack.cli.main).

This module imports without Qt: PySide6 and pyqtgraph are imported inside the handler, so a runtime-only
install still lists the command and says which extra to install.
"""

from __future__ import annotations

import argparse
from pathlib import Path

GUI_EXTRA_HINT = "the live window needs the gui extra: pip install 'dislotrack[gui]'"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``live SOURCE``; options mirror ``dislotrack process`` where they mean the same."""
    p = subparsers.add_parser(
        "live",
        help="live monitoring window: frames with tracked dislocations and their spacing over time",
        description="Show a camera, stream, growing file or recorded video with tracked dislocations "
        "and a live spacing plot. Recorded files play at their own frame rate, standing in for a camera.",
    )
    p.add_argument("source", help="video file, TIFF stack, frame folder, device (/dev/video0) or stream URL")
    p.add_argument("--model", default=None, help="ONNX model file (default: the shipped model)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="inference device")
    p.add_argument("--flips", type=int, choices=(1, 2, 4), default=1,
                   help="network passes per frame, mirrored, as in dislotrack process (each costs a run)")
    p.add_argument("--threshold", type=float, default=None, help="mask threshold (default: the model's)")
    p.add_argument("--follow", action="store_true", help="follow a file the camera software is still writing")
    p.add_argument("--idle-timeout", type=float, default=10.0, metavar="S",
                   help="with --follow: end when the file has not grown for S seconds")
    p.add_argument("--frame-interval", type=float, default=None, metavar="S",
                   help="seconds between frames of a TIFF stack or image folder (they carry no clock)")
    p.add_argument("--record", type=Path, default=None, metavar="DIR",
                   help="record results to DIR from the start (same outputs as dislotrack process)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="playback speed of a recorded file (1 = real time)")
    p.add_argument("--no-pace", dest="pace", action="store_const", const=False, default=None,
                   help="read a recorded file as fast as it decodes instead of at its frame rate")
    p.add_argument("--refresh-hz", type=float, default=15.0, help="display refreshes per second")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dislotrack.gui.settings import LiveSettings  # plain dataclass: bad options fail before Qt loads

    settings = LiveSettings(
        source=args.source,
        model=args.model,
        device=args.device,
        flips=args.flips,
        threshold=args.threshold,
        follow=args.follow,
        follow_idle_s=args.idle_timeout,
        frame_interval_s=args.frame_interval,
        record_dir=args.record,
        pace=args.pace,
        speed=args.speed,
        refresh_hz=args.refresh_hz,
    )
    try:
        from dislotrack.gui.app import run_live
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in {"PySide6", "pyqtgraph", "shiboken6"}:
            raise RuntimeError(GUI_EXTRA_HINT) from None
        raise
    return run_live(settings)
