"""``rethinker plot RUN_DIR``: the curves of a run's ``metrics.jsonl`` as a PNG."""

from __future__ import annotations

import argparse

from ..train.plot import plot_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run's output directory (holds metrics.jsonl)")
    parser.add_argument("--output", default=None, help="PNG path (default RUN_DIR/curves.png)")


def run(args: argparse.Namespace) -> int:
    print(plot_run(args.run_dir, args.output))
    return 0
