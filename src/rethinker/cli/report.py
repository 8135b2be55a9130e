"""``rethinker report DIR``: the HTML page of a training run or of an evaluation.

A training run's folder (``metrics.jsonl`` / ``config.yaml``) gives ``DIR/report.html``
with its summary, curves and logged samples; an evaluation's folder
(``predictions.jsonl``, written by ``rethinker eval``) gives its predictions page. The
page reads only what is there, so it can be rebuilt while a run is going."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="a training run's --output-dir, or an evaluation's --output-dir")
    parser.add_argument("--output", default=None, help="HTML path (default DIR/report.html)")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="training run: logged steps shown in the browser, spread evenly (default 60; 0: all)",
    )
    parser.add_argument(
        "--max-items",
        type=int,
        default=None,
        help="evaluation: items shown per benchmark, wrong ones first (default 1000; 0: all)",
    )


def run(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    t0 = time.perf_counter()
    try:
        if (d / "predictions.jsonl").exists() and not (d / "metrics.jsonl").exists():
            from ..report.eval_report import DEFAULT_MAX_ITEMS, build_eval_report

            out = build_eval_report(
                d, args.output, max_items=DEFAULT_MAX_ITEMS if args.max_items is None else args.max_items
            )
        else:
            from ..report.run_report import DEFAULT_MAX_STEPS, build_run_report

            out = build_run_report(
                d, args.output, max_steps=DEFAULT_MAX_STEPS if args.max_steps is None else args.max_steps
            )
    except FileNotFoundError as exc:
        print(f"rethinker report: {exc}", file=sys.stderr)
        return 2
    print(f"{out} ({out.stat().st_size / 1e6:.2f} MB, built in {time.perf_counter() - t0:.1f} s)")
    return 0
