"""``rethinker train``: RL-train a VLM; with no arguments, the built-in toy world."""

from __future__ import annotations

import argparse
import json
import os
import sys

ACCEPTS_OVERRIDES = True  # every config field is also a --flag (see rethinker/train/config.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="YAML file of config values")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest whole checkpoint (damaged ones are passed over, "
        "each named), or from RUN_DIR/checkpoint-N, which must be whole",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the memory plan of the resolved config and model (per rank) and exit; loads no weights",
    )
    parser.add_argument(
        "--world-size", type=int, default=None, help="--dry-run: ranks to plan for (default: $WORLD_SIZE or 1)"
    )
    parser.add_argument(
        "--gpu-memory-gb",
        type=float,
        default=None,
        help="--dry-run: each GPU's memory in GiB to fit in (default: the visible CUDA device's, else 80 assumed)",
    )
    parser.add_argument(
        "--gpus-per-node",
        type=int,
        default=8,
        help="--dry-run: GPUs per node (a vLLM tensor-parallel group stays within one; default 8)",
    )
    parser.add_argument("--images-per-query", type=int, default=1, help="--dry-run: images per prompt")
    parser.add_argument(
        "--prompt-text-tokens",
        type=int,
        default=None,
        help="--dry-run: text tokens per prompt, visual tokens (at max_pixels) on top (default: 256; toy preset: 66)",
    )
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    parser.epilog = (
        "Any config field can be set as --field value or --section.field value, e.g. "
        "--output-dir runs/x --max-steps 100 --seed 1 --ssr paper|released|filter|off "
        "--rethink on|off --model PATH --data FILE.parquet --optim.lr 1e-6 --rollout.group-size 8"
    )


def run(args: argparse.Namespace) -> int:
    from ..train.checkpoint import split_resume
    from ..train.config import ConfigError, parse_overrides, resolve, resumed_config, to_dict

    run_dir, explicit = split_resume(args.resume) if args.resume else (None, None)
    try:
        overrides = parse_overrides(args.overrides)
        if explicit is not None and not explicit.is_dir():
            raise ConfigError(f"cannot resume {explicit}: no such checkpoint folder")
        if run_dir is not None:
            cfg = resumed_config(run_dir, overrides)
        else:
            cfg = resolve(args.config, overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"rethinker train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    if args.dry_run:
        return _dry_run(cfg, args)
    return _train(cfg, args, explicit)


def _gpu_gib(given: float | None) -> tuple[float, str]:
    """The GPU memory to plan for, in GiB, and a note when it was assumed."""
    if given is not None:
        return given, ""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2**30, ""
    return 80.0, "GPU memory: 80 GiB assumed (no CUDA device visible; --gpu-memory-gb sets it)"


def _dry_run(cfg, args: argparse.Namespace) -> int:
    """Print the memory plan and whether it fits; a bad layout over the ranks is the same
    one-line error as at start-up (exit 2)."""
    from ..train.config import ConfigError, check_parallel
    from ..train.plan import Workload
    from ..train.plan_fit import dry_run

    world = args.world_size or int(os.environ.get("WORLD_SIZE", "1"))
    try:
        check_parallel(cfg, world, args.gpus_per_node)
    except ConfigError as exc:
        print(f"rethinker train: {exc}", file=sys.stderr)
        return 2
    gib, note = _gpu_gib(args.gpu_memory_gb)
    try:
        _, text = dry_run(
            cfg,
            world,
            gpu_gib=gib,
            gpus_per_node=args.gpus_per_node,
            workload=Workload(args.images_per_query, args.prompt_text_tokens),
        )
    except (OSError, ValueError) as exc:
        print(f"rethinker train --dry-run: {exc}", file=sys.stderr)
        return 2
    print(text)
    if note:
        print(note)
    return 0


def _train(cfg, args: argparse.Namespace, explicit) -> int:
    """Run the training; each way it can stop is one line on stderr and an exit status:
    a damaged or unsafe checkpoint to resume 2, a failed checkpoint write or divergence 1."""
    from ..train.checkpoint import CheckpointError, CheckpointWriteError
    from ..train.config import ConfigError
    from ..train.loop import train
    from ..train.preempt import EXIT_PREEMPTED, Preempted
    from ..train.update import Diverged

    try:
        summary = train(
            cfg, resume=bool(args.resume), progress=not args.no_progress and sys.stderr.isatty(), checkpoint=explicit
        )
    except Preempted as stop:
        if int(os.environ.get("RANK", "0")) == 0:  # one line for the run, not one per rank
            print(f"rethinker train: {stop}; continue with: rethinker train --resume {cfg.output_dir}", file=sys.stderr)
        return EXIT_PREEMPTED
    except CheckpointError as exc:
        print(f"rethinker train: cannot resume: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # the layout over the ranks, a folder holding an earlier run (before any weight loads)
        print(f"rethinker train: {exc}", file=sys.stderr)
        return 2
    except (Diverged, CheckpointWriteError) as exc:
        print(f"rethinker train: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
