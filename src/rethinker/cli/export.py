"""``rethinker export RUN_DIR[/checkpoint-N] --output DIR``: a checkpoint's policy in
``save_pretrained`` format (config, processor files, safetensors), loadable with plain
``transformers``; the weights are streamed one tensor at a time (``train/export.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="a run folder (its newest whole checkpoint is exported) or RUN_DIR/checkpoint-N"
    )
    parser.add_argument("--output", required=True, help="the folder to write (replaced when it exists)")
    parser.add_argument(
        "--max-shard-gb", type=float, default=2.0, help="largest safetensors file before the weights are split"
    )


def run(args: argparse.Namespace) -> int:
    from ..train import checkpoint as ckpt
    from ..train.export import export_checkpoint

    run_dir, explicit = ckpt.split_resume(args.checkpoint)
    try:
        src = explicit or ckpt.latest_checkpoint(run_dir)
        if src is None or not Path(src).is_dir():
            raise ckpt.CheckpointError(f"{args.checkpoint}: no whole checkpoint to export")
        out = export_checkpoint(src, args.output, max_shard_bytes=int(args.max_shard_gb * (1 << 30)))
    except ckpt.CheckpointError as exc:
        print(f"rethinker export: {exc}", file=sys.stderr)
        return 2
    print(f"rethinker export: {src} -> {out}", file=sys.stderr)
    return 0
