"""``rethinker data``: inspect, select and annotate training data.

    rethinker data stats FILE [--mapping JSON] [--bins 10]
    rethinker data select FILE --output OUT [--category C ...] [--source S ...]
                          [--pass-rate-range LO HI] [--model-size 7B|32B|NAME]
    rethinker data annotate FILE --model PATH --samples K --output OUT [--name NAME]
                            [--engine transformers|vllm ...]   (torchrun: data-parallel)

FILE is anything ``read_records`` reads (parquet / JSONL / JSON / ``datasets`` folder) or
ViRL39K's release parquet (recognized by its ``qid`` and ``PassRate_32BTrained``
columns). ``--model-size 7B`` selects on the ``7B-base`` pass rate, ``32B`` on
``32B-trained``; any other value names a pass-rate column directly (e.g. one written by
``rethinker data annotate``). Queries without that annotation are left out of a
pass-rate selection and counted. ``annotate`` samples K responses per query with a model
and writes its pass rate (``rethinker.eval.annotate``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..data.curate import compute_stats, format_stats, rate_name, select
from ..data.io import DataError, reason_kind, write_records
from ..data.stream import MappedRecords
from ..data.virl39k import load_any
from ..eval.annotate import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, DEFAULT_TOP_P
from ..eval.engines import add_engine_arguments
from ..records import Record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    stats = sub.add_parser("stats", help="counts per category and source, pass-rate histograms, skipped rows")
    stats.add_argument("file")
    stats.add_argument("--mapping", help='column mapping as JSON, e.g. \'{"qid": "id"}\'')
    stats.add_argument("--bins", type=int, default=10, help="pass-rate histogram bins over [0, 1] (default 10)")
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    sel = sub.add_parser("select", help="write the queries that match the filters")
    sel.add_argument("file")
    sel.add_argument("--output", required=True, help="output .parquet or .jsonl")
    sel.add_argument("--mapping", help="column mapping as JSON")
    sel.add_argument("--category", nargs="+", help="keep these categories")
    sel.add_argument("--source", nargs="+", help="keep these sources")
    sel.add_argument(
        "--pass-rate-range",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="keep queries whose pass rate is in [LO, HI]",
    )
    sel.add_argument(
        "--model-size",
        default="7B",
        help="whose pass rate: 7B (7B-base), 32B (32B-trained), or a pass-rate name (default 7B)",
    )
    sel.add_argument("--embed-images", action="store_true", help="copy image bytes into the output")
    _annotate_arguments(
        sub.add_parser(
            "annotate",
            help="each query's pass rate for your model (K samples, the training judge): rethinker.eval.annotate",
        )
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "annotate":
        return _annotate(args)
    mapping = json.loads(args.mapping) if getattr(args, "mapping", None) else None
    result = load_any(args.file, mapping)
    if args.action == "stats":
        st = compute_stats(result, args.bins)
        print(json.dumps(st, indent=2) if args.json else format_stats(st))
        return 0
    rate = rate_name(args.model_size)
    rng = tuple(args.pass_rate_range) if args.pass_rate_range else None
    if rng is not None and not 0.0 <= rng[0] <= rng[1] <= 1.0:
        print(f"rethinker data select: --pass-rate-range needs 0 <= LO <= HI <= 1, got {rng[0]} {rng[1]}")
        return 2
    chosen, unannotated = select(
        result.records, categories=args.category, sources=args.source, pass_rate_range=rng, rate=rate
    )
    src = Path(args.file)
    write_records(args.output, chosen, base_dir=src if src.is_dir() else src.parent, embed_images=args.embed_images)
    msg = f"selected {len(chosen)} of {len(result.records)} records -> {args.output}"
    if rng is not None:
        msg += f" (pass rate {rate!r} in [{rng[0]}, {rng[1]}]; {unannotated} without that annotation left out)"
    if result.skipped:
        kinds = dict(Counter(reason_kind(s.reason) for s in result.skipped))
        msg += f"; {len(result.skipped)} malformed rows skipped: {kinds}"
    print(msg)
    return 0


def _annotate_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``rethinker data annotate`` (FILE first)."""
    parser.add_argument("file", help="records: parquet / JSONL / JSON / datasets folder (or ViRL39K's parquet)")
    parser.add_argument("--model", help="a local model directory (default: the packaged toy policy)")
    parser.add_argument("--samples", type=int, default=8, help="sampled responses per query (default 8)")
    parser.add_argument("--output", required=True, help="output .parquet or .jsonl")
    parser.add_argument("--name", help="pass-rate column name (default: the model folder's name)")
    parser.add_argument("--mapping", help='column mapping of FILE as JSON, e.g. \'{"qid": "id"}\'')
    parser.add_argument("--sidecar", help="resume file (default: OUT.annotate-NAME.jsonl)")
    parser.add_argument("--max-new-tokens", type=int, help="response limit (default: the model's generation config)")
    parser.add_argument(
        "--temperature", type=float, default=DEFAULT_TEMPERATURE, help="sampling temperature (0: greedy; default 1.0)"
    )
    parser.add_argument("--top-p", type=float, default=DEFAULT_TOP_P)
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    parser.add_argument("--batch-size", type=int, default=16, help="queries per generate call (default 16)")
    parser.add_argument("--min-pixels", type=int)
    parser.add_argument("--max-pixels", type=int)
    parser.add_argument("--limit", type=int, help="annotate the first N records only (the rest are written as read)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--embed-images", action="store_true", help="copy image bytes into the output")
    add_engine_arguments(parser)


def _annotate_setup(args: argparse.Namespace, shard) -> tuple:
    """``(loaded records, model path)`` after the checks (``DataError``, ``EngineError`` ...)."""
    from ..eval.engines import EngineOptions
    from ..toyworld.model import resolve_model_path

    EngineOptions.from_args(args).check(shard.world)
    if args.samples < 1:
        raise ValueError("--samples must be >= 1")
    loaded = load_any(args.file, json.loads(args.mapping) if args.mapping else None)
    return loaded, resolve_model_path(args.model)


def _annotate(args: argparse.Namespace) -> int:
    import torch

    from ..eval.annotate import annotate, default_name, default_sidecar  # the rollout engine: torch
    from ..eval.engines import EngineError, EngineOptions, build_engine
    from ..eval.shards import first_error, start_ranks
    from ..eval.suite import model_max_new_tokens

    shard, ctx = start_ranks()
    try:
        loaded, model_path = _annotate_setup(args, shard)
        error = None
    except (DataError, EngineError, FileNotFoundError, ValueError) as exc:  # JSONDecodeError is a ValueError
        error = str(exc)
    if (error := first_error(ctx, error)) is not None:
        if shard.rank == 0:
            print(f"rethinker data annotate: {error}", file=sys.stderr)
        return 2
    name = args.name or default_name(args.model, model_path)
    src = Path(args.file)
    base = src if src.is_dir() else src.parent
    engine, processor, model = build_engine(
        EngineOptions.from_args(args), model_path, device=args.device, dtype=args.dtype,
        batch_queries=args.batch_size, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
        seed=args.seed, world=shard.world,
    )  # fmt: skip
    torch.manual_seed(args.seed + shard.rank)
    records: Sequence[Record] = loaded.records
    head = records[: args.limit] if args.limit is not None else records
    sidecar = Path(args.sidecar) if args.sidecar else default_sidecar(args.output, name)
    prefix = "" if shard.world == 1 else f"[rank {shard.rank}] "
    kwargs = dict(
        samples=args.samples, name=name, engine=engine, sidecar=sidecar,
        max_new_tokens=args.max_new_tokens or model_max_new_tokens(model_path), temperature=args.temperature,
        top_p=args.top_p, top_k=args.top_k, batch_queries=args.batch_size, base_dir=base,
        min_pixels=args.min_pixels, max_pixels=args.max_pixels,
        log=lambda m: print(prefix + m, file=sys.stderr, flush=True),
    )  # fmt: skip
    if shard.world > 1:  # every rank annotates its share, then the first one merges and writes
        annotate(head, model, processor, shard=shard, ready=ctx.barrier, **kwargs)
        engine.drain()  # a shared engine (T > 1) serves the group's other members until all are done
        ctx.barrier()
        if shard.rank != 0:
            return 0
    res = annotate(head, model, processor, **kwargs)
    write_records(args.output, MappedRecords(records, res.apply), base_dir=base, embed_images=args.embed_images)
    _print_annotated(args, res, loaded, len(records), sidecar, name)
    return 0


def _print_annotated(args: argparse.Namespace, res, loaded, n_records: int, sidecar: Path, name: str) -> None:
    rates = list(res.rates.values())
    mean = sum(rates) / len(rates) if rates else 0.0
    msg = (
        f"annotated {res.n_annotated} of {n_records} records with pass_rates[{name!r}] "
        f"({args.samples} samples each; {res.n_resumed} resumed from {sidecar}; mean pass rate {mean:.3f}) "
        f"-> {args.output}"
    )
    if res.skipped:
        msg += f"; {len(res.skipped)} left unannotated (bad input): {res.skipped[:5]}"
    if loaded.skipped:
        kinds: dict[str, int] = {}
        for s in loaded.skipped:
            kinds[reason_kind(s.reason)] = kinds.get(reason_kind(s.reason), 0) + 1
        msg += f"; {len(loaded.skipped)} malformed rows of {args.file} not written: {kinds}"
    print(msg)
