"""``rethinker eval``: batched evaluation on benchmarks with the training judge.

    rethinker eval [--model PATH] --benchmark NAME [--data PATH [--split S]]
                   [--benchmark NAME2 --data PATH2 ...] --output-dir DIR [--limit N]
                   [--samples K --temperature 0.6 --top-p 0.95]
                   [--min-pixels P --max-pixels P] [--max-new-tokens T]
                   [--engine transformers|vllm [--tensor-parallel-size T] [--kv-cache-gb G] ...]
    torchrun --nproc_per_node N -m rethinker eval ...     (data-parallel: ``eval.shards``)

Each ``--data`` / ``--split`` belongs to the ``--benchmark`` before it; ``toy`` needs no
data (it generates ``--toy-items`` held-out puzzles) and ``records`` reads any file in
the record schema. Without ``--model`` the packaged toy policy is used. What it writes:
``rethinker.eval.suite``; the summary table is printed too. The engine flags:
``rethinker.eval.engines``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from ..eval.engines import EngineError, EngineOptions, add_engine_arguments
from ..eval.shards import Shard, first_error, start_ranks
from ..eval.suite import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TOY_ITEMS,
    BenchSpec,
    EvalConfig,
    EvalError,
    benchmark_names,
    check_resume,
    evaluate_benchmarks,
    judge_share,
    model_max_new_tokens,
    run_config,
)
from ..report.summary import format_table


class _SpecAction(argparse.Action):
    """``--benchmark`` starts a spec; ``--data`` / ``--split`` fill in the last one."""

    def __call__(self, parser, namespace, values, option_string=None):
        specs = list(getattr(namespace, self.dest, None) or [])
        if option_string == "--benchmark":
            specs.append(BenchSpec(values))
        else:
            key = option_string.lstrip("-")
            if not specs:
                parser.error(f"{option_string} {values}: put it after the --benchmark it belongs to")
            if getattr(specs[-1], key) is not None:
                parser.error(f"{option_string} given twice for --benchmark {specs[-1].name}")
            setattr(specs[-1], key, values)
        setattr(namespace, self.dest, specs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a local model directory (default: the packaged toy policy)")
    parser.add_argument(
        "--benchmark",
        dest="benchmarks",
        action=_SpecAction,
        metavar="NAME",
        help="a benchmark to run (repeat for several): " + ", ".join(benchmark_names()),
    )
    parser.add_argument(
        "--data",
        dest="benchmarks",
        action=_SpecAction,
        metavar="PATH",
        help="the preceding benchmark's file or folder as its publisher distributes it",
    )
    parser.add_argument(
        "--split",
        dest="benchmarks",
        action=_SpecAction,
        metavar="SPLIT",
        help="the preceding benchmark's split (default: the one the paper reports)",
    )
    parser.add_argument("--output-dir", required=True, help="where predictions and summaries go")
    parser.add_argument("--limit", type=int, help="evaluate the first N items of each benchmark")
    parser.add_argument("--samples", type=int, default=1, help="samples per item (K > 1: sampling, pass@k)")
    parser.add_argument(
        "--temperature", type=float, help="sampling temperature (default: greedy for 1 sample, 0.6 for K > 1)"
    )
    parser.add_argument("--top-p", type=float, default=0.95, help="top-p when sampling (default 0.95)")
    parser.add_argument("--top-k", type=int, default=0, help="top-k when sampling (default 0: off)")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help=f"response limit (default: the model's generation config, else {DEFAULT_MAX_NEW_TOKENS})",
    )
    parser.add_argument("--min-pixels", type=int, help="image pixel floor (default: the model's processor)")
    parser.add_argument("--max-pixels", type=int, help="image pixel ceiling (default: the model's processor)")
    parser.add_argument("--batch-size", type=int, default=64, help="queries per generate call (default 64)")
    parser.add_argument(
        "--toy-items",
        type=int,
        default=DEFAULT_TOY_ITEMS,
        help=f"held-out toy puzzles when --benchmark toy has no --data (default {DEFAULT_TOY_ITEMS})",
    )
    parser.add_argument("--toy-seed", type=int, default=0, help="seed of the toy puzzles (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="torch seed for sampling (default 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default auto)")
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16, float16 or auto (default)")
    parser.add_argument("--restart", action="store_true", help="discard earlier predictions in --output-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--rethink-at-test",
        action="store_true",
        help="test-time rethinking: after each greedy answer append a trigger, let the policy continue and "
        "judge it again (accuracy before and after, wrong -> right, right -> wrong in summary.json)",
    )
    add_engine_arguments(parser)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The run's ``EvalConfig`` from the parsed flags."""
    values = {f.name: getattr(args, f.name) for f in fields(EvalConfig)}
    values.update(benchmarks=list(args.benchmarks or []), engine=EngineOptions.from_args(args))
    return EvalConfig(**values)


def _prepare(cfg: EvalConfig, shard: Shard) -> tuple[str, dict]:
    """``(model path, run.json's settings)`` after the checks (``EvalError``, ``EngineError``,
    ``FileNotFoundError``); the first rank writes ``run.json`` (or clears the run)."""
    from ..toyworld.model import resolve_model_path

    cfg.check(shard.world)
    model_path = resolve_model_path(cfg.model)
    max_new = cfg.max_new_tokens or model_max_new_tokens(model_path) or DEFAULT_MAX_NEW_TOKENS
    config = run_config(cfg, model_path, int(max_new))
    if shard.rank == 0 or not cfg.restart:
        check_resume(Path(cfg.output_dir), config, cfg.restart, write=shard.rank == 0)
    return model_path, config


def _print_summary(summary: dict, out_dir: Path) -> None:
    print(format_table(summary))
    for name, s in summary.items():
        if (rt := s.get("rethinking")) is not None:
            print(
                f"test-time rethinking, {name}: accuracy {rt['accuracy_before']:.3f} -> {rt['accuracy_after']:.3f} "
                f"({rt['wrong_to_right']:.0f} wrong -> right, {rt['right_to_wrong']:.0f} right -> wrong)"
            )
    print(
        f"\npredictions: {out_dir / 'predictions.jsonl'}\nsummary: {out_dir / 'summary.json'} "
        f"(also summary.md, summary.csv)\npage: {out_dir / 'report.html'}"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from ..algo.rethink import TEST_TRIGGER
    from ..eval.engines import build_engine
    from ..rollout.base import SamplingParams

    cfg = config_from_args(args)
    shard, ctx = start_ranks()
    try:
        model_path, config = _prepare(cfg, shard)
        error = None
    except (EvalError, EngineError, FileNotFoundError) as exc:
        error = str(exc)
    if (error := first_error(ctx, error)) is not None:
        if shard.rank == 0:
            print(f"rethinker eval: {error}", file=sys.stderr)
        return 2
    engine, processor, _ = build_engine(
        cfg.engine, model_path, device=cfg.device, dtype=cfg.dtype, batch_queries=cfg.batch_size,
        min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels, seed=cfg.seed, world=shard.world,
    )  # fmt: skip
    params = SamplingParams(
        max_new_tokens=config["max_new_tokens"],
        n=cfg.samples,
        greedy=config["greedy"],
        temperature=config["temperature"] or 1.0,
        top_p=config["top_p"] or 1.0,
        top_k=config["top_k"] or 0,
    )
    torch.manual_seed(cfg.seed + shard.rank)
    log = None if cfg.quiet else (_stderr if shard.world == 1 else lambda m: _stderr(f"[rank {shard.rank}] {m}"))
    settings = dict(
        params=params, limit=cfg.limit, batch_queries=cfg.batch_size, min_pixels=cfg.min_pixels,
        max_pixels=cfg.max_pixels, toy_items=cfg.toy_items, toy_seed=cfg.toy_seed, log=log,
        rethink_trigger=TEST_TRIGGER if cfg.rethink_at_test else None,
    )  # fmt: skip
    out_dir = Path(cfg.output_dir)
    if shard.world > 1:  # every rank judges its share, then the first one merges and summarizes
        judge_share(cfg.benchmarks, engine, processor, out_dir, shard=shard, ready=ctx.barrier, **settings)
        engine.drain()  # a shared engine (T > 1) serves the group's other members until all are done
        ctx.barrier()
        if shard.rank != 0:
            return 0
    summary = evaluate_benchmarks(cfg.benchmarks, engine, processor, out_dir, **settings)
    _print_summary(summary, out_dir)
    return 1 if any("error" in s for s in summary.values()) else 0
