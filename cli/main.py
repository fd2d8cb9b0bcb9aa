"""``dislotrack`` command: one parser whose subcommands are registered by each part of the project.

Each ``register(subparsers)`` below must be importable without torch or Qt: heavy imports happen
inside the handlers, so ``dislotrack process`` starts fast on a runtime-only install and a missing
extra is reported by the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata

from dislotrack.gui import cli as gui_cli
from dislotrack.runtime import cli as runtime_cli
from dislotrack.runtime.synth import cli as synth_cli
from dislotrack.training import cli as training_cli

REGISTRARS = (runtime_cli.register, synth_cli.register, training_cli.register, gui_cli.register)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dislotrack",
        description="Find, track and measure dislocations in in-situ TEM videos.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output (-v: debug; -vv: other libraries' too)",
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def _version() -> str:
    try:
        return metadata.version("dislotrack")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # our own progress at INFO (-v: DEBUG); other libraries only warn unless -vv (the ONNX exporter
    # alone logs about a hundred INFO lines per export)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose >= 2 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("dislotrack").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("dislotrack: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, OSError, ImportError) as exc:
        if args.verbose >= 2:
            raise
        print(f"dislotrack {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
