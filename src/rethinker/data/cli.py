"""``rethinker data``: inspect and select training data.

    rethinker data stats FILE [--mapping JSON] [--bins 10]
    rethinker data select FILE --output OUT [--category C ...] [--source S ...]
                          [--pass-rate-range LO HI] [--model-size 7B|32B|NAME]

FILE is anything ``read_records`` reads (parquet / JSONL / JSON / ``datasets`` folder) or
ViRL39K's release parquet (recognized by its ``qid`` and ``PassRate_32BTrained``
columns). ``--model-size 7B`` selects on the ``7B-base`` pass rate, ``32B`` on
``32B-trained``; any other value names a pass-rate column directly (e.g. one written by
``rethinker data annotate``). Queries without that annotation are left out of a
pass-rate selection and counted. ``rethinker data annotate FILE --model PATH --samples K
--output OUT [--name NAME]`` is ``rethinker.eval.annotate`` (it needs the rollout engine).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..records import Record
from .io import LoadResult, read_records, reason_kind, write_records
from .virl39k import MODEL_SIZES, load_virl39k


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
    sel.add_argument("--pass-rate-range", nargs=2, type=float, metavar=("LO", "HI"),
                     help="keep queries whose pass rate is in [LO, HI]")
    sel.add_argument("--model-size", default="7B",
                     help="whose pass rate: 7B (7B-base), 32B (32B-trained), or a pass-rate name (default 7B)")
    sel.add_argument("--embed-images", action="store_true", help="copy image bytes into the output")
    from ..eval.annotate import add_arguments as annotate_arguments

    annotate_arguments(sub.add_parser("annotate", help="each query's pass rate for your model (K samples, the "
                                                      "training judge): rethinker.eval.annotate"))


def load_any(path: str | Path, mapping: dict[str, str] | None = None) -> LoadResult:
    """ViRL39K's release parquet through its reader; anything else through read_records."""
    p = Path(path)
    if mapping is None and p.suffix == ".parquet" and p.is_file():
        import pyarrow.parquet as pq

        names = set(pq.read_schema(p).names)
        if {"qid", "PassRate_32BTrained"} <= names:
            return load_virl39k(p)
    return read_records(p, mapping)


def histogram(values: list[float], bins: int) -> list[int]:
    """Counts of ``values`` in ``bins`` equal bins over [0, 1]; bin k holds
    [k/bins, (k+1)/bins), the last bin also holds 1.0."""
    counts = [0] * bins
    for v in values:
        counts[min(int(v * bins), bins - 1)] += 1
    return counts


def compute_stats(result: LoadResult, bins: int = 10) -> dict[str, Any]:
    recs = result.records
    names = sorted({k for r in recs for k in (r.pass_rates or {})})
    rates: dict[str, Any] = {}
    for name in names:
        vals = [r.pass_rates[name] for r in recs if r.pass_rates and name in r.pass_rates]
        rates[name] = {
            "annotated": len(vals),
            "mean": sum(vals) / len(vals),
            "zero": sum(v == 0.0 for v in vals),
            "one": sum(v == 1.0 for v in vals),
            "histogram": histogram(vals, bins),
        }
    return {
        "n_records": len(recs),
        "n_skipped": len(result.skipped),
        "skipped": dict(Counter(reason_kind(s.reason) for s in result.skipped)),
        "by_category": dict(Counter(r.category or "(none)" for r in recs).most_common()),
        "by_source": dict(Counter(r.source or "(none)" for r in recs).most_common()),
        "n_images": dict(sorted(Counter(len(r.images) for r in recs).items())),
        "pass_rates": rates,
        "bins": bins,
    }


def format_stats(st: dict[str, Any]) -> str:
    lines = [f"records: {st['n_records']}    skipped: {st['n_skipped']}"]
    for kind, n in st["skipped"].items():
        lines.append(f"  skipped ({kind}): {n}")
    for key, title in (("by_category", "category"), ("by_source", "source")):
        lines.append(f"\n{title:<40} {'count':>7}")
        lines += [f"{name:<40} {n:>7}" for name, n in st[key].items()]
    lines.append("\nimages per query: " + ", ".join(f"{k}: {n}" for k, n in st["n_images"].items()))
    bins = st["bins"]
    for name, r in st["pass_rates"].items():
        lines.append(f"\npass rate {name}: annotated {r['annotated']}, mean {r['mean']:.3f}, "
                     f"=0: {r['zero']}, =1: {r['one']}")
        width = max(r["histogram"]) or 1
        for k, n in enumerate(r["histogram"]):
            hi = "]" if k == bins - 1 else ")"
            lines.append(f"  [{k / bins:.2f}, {(k + 1) / bins:.2f}{hi} {n:>7} {'#' * round(30 * n / width)}")
    return "\n".join(lines)


def rate_name(model_size: str) -> str:
    return MODEL_SIZES.get(model_size.upper(), model_size)


def select(records: list[Record], *, categories: list[str] | None = None, sources: list[str] | None = None,
           pass_rate_range: tuple[float, float] | None = None, rate: str = "7B-base") -> tuple[list[Record], int]:
    """Records matching every given filter; also the number dropped for lacking the
    ``rate`` annotation when a pass-rate range is given."""
    out, unannotated = [], 0
    for r in records:
        if categories and r.category not in categories:
            continue
        if sources and r.source not in sources:
            continue
        if pass_rate_range is not None:
            value = (r.pass_rates or {}).get(rate)
            if value is None:
                unannotated += 1
                continue
            lo, hi = pass_rate_range
            if not lo <= value <= hi:
                continue
        out.append(r)
    return out, unannotated


def run(args: argparse.Namespace) -> int:
    if args.action == "annotate":
        from ..eval.annotate import run as annotate_run

        return annotate_run(args)
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
    chosen, unannotated = select(result.records, categories=args.category, sources=args.source,
                                 pass_rate_range=rng, rate=rate)
    src = Path(args.file)
    write_records(args.output, chosen, base_dir=src if src.is_dir() else src.parent, embed_images=args.embed_images)
    msg = f"selected {len(chosen)} of {len(result.records)} records -> {args.output}"
    if rng is not None:
        msg += f" (pass rate {rate!r} in [{rng[0]}, {rng[1]}]; {unannotated} without that annotation left out)"
    if result.skipped:
        msg += f"; {len(result.skipped)} malformed rows skipped: {dict(Counter(reason_kind(s.reason) for s in result.skipped))}"
    print(msg)
    return 0
