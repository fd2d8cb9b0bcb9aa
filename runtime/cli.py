"""Subcommands of this part of dislotrack (registered by dislotrack.cli.main)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this part's subcommands; heavy imports belong inside the handlers."""
