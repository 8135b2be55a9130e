"""Statistics and selection over a training set: counts per category and source,
pass-rate histograms, and the filters of ``rethinker data select`` (by category, source
and a model's pass rate)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..records import Record
from .io import LoadResult, reason_kind
from .virl39k import MODEL_SIZES


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
        lines.append(
            f"\npass rate {name}: annotated {r['annotated']}, mean {r['mean']:.3f}, =0: {r['zero']}, =1: {r['one']}"
        )
        width = max(r["histogram"]) or 1
        for k, n in enumerate(r["histogram"]):
            hi = "]" if k == bins - 1 else ")"
            lines.append(f"  [{k / bins:.2f}, {(k + 1) / bins:.2f}{hi} {n:>7} {'#' * round(30 * n / width)}")
    return "\n".join(lines)


def rate_name(model_size: str) -> str:
    return MODEL_SIZES.get(model_size.upper(), model_size)


def select(
    records: list[Record],
    *,
    categories: list[str] | None = None,
    sources: list[str] | None = None,
    pass_rate_range: tuple[float, float] | None = None,
    rate: str = "7B-base",
) -> tuple[list[Record], int]:
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
