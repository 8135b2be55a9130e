"""``rethinker toy``: the built-in toy world.

    rethinker toy build [--output-dir DIR] [--seed S] [--steps N] [--stop-after N] [--eval-n N]
    rethinker toy model --output-dir DIR
    rethinker toy data --split train|dev|test [--n N] [--seed S] [--kinds K ...] --output FILE.parquet
    rethinker toy eval [--model DIR] [--n N] [--seed S] [--split dev|test]

``build`` rebuilds tokenizer, model and warm start deterministically (by default into the
packaged ``toyworld/assets/policy``); ``model`` copies the packaged policy out; ``data``
writes puzzles as records (parquet or JSONL); ``eval`` reports a policy's greedy accuracy
per kind on held-out puzzles.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..toyworld.puzzles import ALL_KINDS, SPLITS
    from ..toyworld.warmstart import WarmStartConfig

    d = WarmStartConfig()
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="rebuild tokenizer, model and warm start (deterministic)")
    b.add_argument("--output-dir", help="where to save (default: the packaged policy)")
    b.add_argument("--seed", type=int, default=d.seed)
    b.add_argument("--steps", type=int, default=d.steps, help=f"learning-rate schedule length (default {d.steps})")
    b.add_argument(
        "--stop-after", type=int, default=d.stop_after, help=f"supervised steps actually run (default {d.stop_after})"
    )
    b.add_argument("--lr", type=float, default=d.lr)
    b.add_argument("--batch-size", type=int, default=d.batch_size)
    b.add_argument("--eval-n", type=int, default=d.eval_n, help="held-out puzzles for the accuracy report")
    b.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: at the end only)")
    b.add_argument("--threads", type=int, default=d.threads)
    b.add_argument(
        "--kinds",
        nargs="+",
        choices=list(ALL_KINDS),
        help=f"puzzle kinds (default: the shipped policy's, {' '.join(d.kinds)})",
    )
    m = sub.add_parser("model", help="copy the packaged toy policy to a directory")
    m.add_argument("--output-dir", required=True)
    t = sub.add_parser("data", help="write toy puzzles as records (.parquet or .jsonl)")
    t.add_argument("--split", choices=list(SPLITS), default="train")
    t.add_argument("--n", type=int, default=500, help="number of puzzles (default 500)")
    t.add_argument("--seed", type=int, default=0)
    _add_kinds(t)
    t.add_argument("--output", required=True)
    e = sub.add_parser("eval", help="greedy accuracy per kind on held-out puzzles")
    e.add_argument("--model", help="a save_pretrained directory (default: the packaged policy)")
    e.add_argument("--n", type=int, default=550)
    e.add_argument("--split", choices=list(SPLITS), default="dev", help="puzzle split (default dev)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, default=2)
    _add_kinds(e)


def _add_kinds(p: argparse.ArgumentParser) -> None:
    from ..toyworld.puzzles import ALL_KINDS, DEFAULT_KINDS

    p.add_argument(
        "--kinds",
        nargs="+",
        choices=list(ALL_KINDS),
        help=f"puzzle kinds (default: the default mix, {' '.join(DEFAULT_KINDS)})",
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        from ..toyworld.warmstart import WarmStartConfig, build

        cfg = WarmStartConfig(
            seed=args.seed,
            steps=args.steps,
            stop_after=args.stop_after,
            lr=args.lr,
            batch_size=args.batch_size,
            eval_n=args.eval_n,
            eval_every=args.eval_every,
            threads=args.threads,
            **({"kinds": tuple(args.kinds)} if args.kinds else {}),
        )
        build(args.output_dir, cfg)
        return 0
    if args.action == "model":
        from ..toyworld.model import toy_model_path

        src, dst = toy_model_path(), Path(args.output_dir)
        if dst.exists() and any(dst.iterdir()):
            print(f"rethinker toy model: {dst} exists and is not empty")
            return 2
        shutil.copytree(src, dst, dirs_exist_ok=True)
        print(f"copied the toy policy to {dst}")
        return 0
    if args.action == "data":
        from ..data.io import write_records
        from ..toyworld.puzzles import DEFAULT_KINDS, generate

        kinds = args.kinds or DEFAULT_KINDS
        n = write_records(args.output, generate(args.n, seed=args.seed, split=args.split, kinds=kinds))
        print(f"wrote {n} {args.split} puzzles to {args.output}")
        return 0
    if args.action == "eval":
        import torch

        from ..toyworld.model import load_toy
        from ..toyworld.puzzles import DEFAULT_KINDS, generate
        from ..toyworld.warmstart import evaluate

        torch.set_num_threads(args.threads)
        model, processor = load_toy(path=args.model)
        acc = evaluate(
            model, processor, generate(args.n, seed=args.seed, split=args.split, kinds=args.kinds or DEFAULT_KINDS)
        )
        print(acc.table())
        return 0
    raise AssertionError(args.action)  # pragma: no cover
