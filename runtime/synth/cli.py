"""``dislotrack synth image|dataset|video|sheet|presets``: synthetic data from the command line.

Only argparse at import time; numpy, the generator, tqdm and matplotlib load inside the handlers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    parts = [p for p in text.lower().replace("x", ",").split(",") if p]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None
    if len(vals) == 1:
        vals *= 2
    if len(vals) != 2 or min(vals) < 16:
        raise argparse.ArgumentTypeError(f"size must be N or HxW with N >= 16, got {text!r}")
    return vals[0], vals[1]


def _assignment(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip().replace(".", "__"), parsed


def _overrides(args: argparse.Namespace) -> dict:
    return dict(args.set or [])


def _cmd_image(args: argparse.Namespace) -> int:
    from dislotrack.runtime.synth.dataset import write_sample
    from dislotrack.runtime.synth.generator import generate, regenerate

    if args.params:
        sample = regenerate(args.params)
    else:
        sample = generate(args.preset, seed=args.seed, size=args.size, **_overrides(args))
    paths = write_sample(sample, args.out, args.name)
    print(f"{len(sample.lines)} dislocations -> {paths['image']} (+ labels, masks, params)")
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    import time

    from dislotrack.runtime.synth.dataset import write_dataset

    t0 = time.perf_counter()
    index = write_dataset(
        args.out,
        args.preset,
        n=args.n,
        seed=args.seed,
        size=args.size,
        workers=args.workers,
        progress=not args.quiet,
        start=args.start,
        **_overrides(args),
    )
    dt = time.perf_counter() - t0
    print(f"{args.n} samples in {dt:.1f} s ({args.n / max(dt, 1e-9):.1f} img/s) -> {index.parent}")
    return 0


def _cmd_video(args: argparse.Namespace) -> int:
    from dislotrack.runtime.synth.video import VideoConfig, clean_pileup, write_video

    kw = {"seed": args.seed, "size": args.size, "n_frames": args.frames, "fps": args.fps}
    if args.preset:
        kw["preset"] = args.preset
    if args.set:
        kw["overrides"] = _overrides(args)
    cfg = clean_pileup(**kw) if args.clean else VideoConfig(**kw)
    paths = write_video(cfg, args.out, progress=not args.quiet)
    print(f"{cfg.n_frames} frames -> {paths.video} (+ {paths.truth_lines.name}, {paths.truth_labels.name})")
    return 0


def _cmd_sheet(args: argparse.Namespace) -> int:
    from dislotrack.runtime.synth.sheet import make_sheet

    out = make_sheet(args.out, n=args.n, seed=args.seed, size=args.size, real=args.real)
    print(f"sheet -> {out}")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from dislotrack.runtime.synth.config import list_presets, load_preset

    for name in list_presets():
        cfg = load_preset(name)
        pu = cfg.pileups
        print(
            f"{name}: {pu.n[0]}-{pu.n[1]} pile-ups x {pu.lines[0]}-{pu.lines[1]} lines, max {cfg.max_lines}"
        )
        if args.verbose_presets:
            print(json.dumps(cfg.to_dict(), indent=1))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dislotrack synth ...``; heavy imports belong inside the handlers."""
    synth = subparsers.add_parser(
        "synth",
        help="synthetic TEM images, datasets and videos with known truth",
        description="Synthetic in-situ TEM data (Perlin backgrounds, slip traces, pile-ups of dislocations).",
    )
    sub = synth.add_subparsers(dest="synth_command", required=True, metavar="WHAT")

    def common(p: argparse.ArgumentParser, size: tuple[int, int] = (512, 512)) -> None:
        p.add_argument("--seed", type=int, default=0, help="stream seed (sample i uses [seed, i])")
        p.add_argument("--size", type=_size, default=size, help="image size N or HxW (default %(default)s)")
        p.add_argument(
            "--set",
            type=_assignment,
            action="append",
            metavar="KEY=VALUE",
            help="override a preset parameter, e.g. --set lines=[2,4] --set style.thickness=[1,2]",
        )

    p = sub.add_parser("image", help="one sample: image, label PNG, masks NPZ, params JSON")
    p.add_argument("--preset", default="m2", help="preset name or TOML file (default %(default)s)")
    p.add_argument("--params", help="regenerate the sample recorded in this JSON instead")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default="sample", help="file stem (default %(default)s)")
    common(p)
    p.set_defaults(func=_cmd_image)

    p = sub.add_parser("dataset", help="N samples written by worker processes, with a progress bar")
    p.add_argument("--preset", default="m2", help="preset name or TOML file (default %(default)s)")
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--start", type=int, default=0, help="index of the first sample (to extend a dataset)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    common(p)
    p.set_defaults(func=_cmd_dataset)

    p = sub.add_parser("video", help="synthetic in-situ video (MPEG-4, 22 frame/s) with truth tracks")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", type=int, default=100, help="number of frames (default %(default)s)")
    p.add_argument("--fps", type=float, default=22.0, help="frame rate (default %(default)s)")
    p.add_argument("--preset", help="scene preset (default m1)")
    p.add_argument("--clean", action="store_true", help="one pile-up that stays in view, low noise")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    common(p)
    p.set_defaults(func=_cmd_video)

    p = sub.add_parser("sheet", help="contact sheet of m1 and m2 samples with their masks (matplotlib)")
    p.add_argument(
        "--out", type=Path, default=Path("docs/synthetic_samples.png"), help="PNG (default %(default)s)"
    )
    p.add_argument("--n", type=int, default=8, help="samples per preset (default %(default)s)")
    p.add_argument("--real", help="folder of real frames to show beside them (masks from ../masks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=(512, 512), help="image size N or HxW (default %(default)s)")
    p.set_defaults(func=_cmd_sheet)

    p = sub.add_parser("presets", help="list the shipped presets")
    p.add_argument("--full", dest="verbose_presets", action="store_true", help="print every parameter")
    p.set_defaults(func=_cmd_presets)
