"""``--device`` of the read-only tools (eval, recommend, features, probe): where the run is scored."""

from __future__ import annotations

import argparse

HELP = ("where to score: cpu, cuda or cuda:N (default: cuda when a GPU is visible, else cpu); "
        "an unavailable device is an error")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (default None: resolved by ``translearn.evaluation.device.resolve_device``)."""
    parser.add_argument("--device", default=None, metavar="DEVICE", help=HELP)
