"""Evaluation summaries: prediction lines -> per-benchmark numbers -> JSON, markdown, CSV
and a printed table.

Everything here is a pure function of the prediction lines ``rethinker eval`` writes
(``predictions.jsonl``), so a resumed run and a fresh one summarize identically.

Numbers, per benchmark (``n`` judged items, item i with ``c_i`` of ``K`` samples correct):

    accuracy  = (1/n) * sum_i c_i / K          (K = 1: share of correct items)
    pass@k    = (1/n) * sum_i [1 - C(K - c_i, k) / C(K, k)]     (unbiased, k <= K)
    ci95      = Wilson score interval of ``accuracy`` over n items (z = 1.96)

Published reference numbers are shown beside ours only where they can be cited:
``REFERENCES`` holds the VL-Rethinker-72B figures of the authors' README.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..algo.rethink import rethink_effect
from ..data.io import reason_kind
from ..files import write_atomic

#: Category name for items whose record carries none.
NO_CATEGORY = "uncategorized"
#: How many skipped items are listed by id in the summary (all are counted).
MAX_LISTED_SKIPS = 50


@dataclass(frozen=True)
class Reference:
    """A published score (percent) with where it comes from."""

    model: str
    accuracy: float
    split: str
    source: str


_README = "VL-Rethinker authors' README (github.com/TIGER-AI-Lab/VL-Rethinker) and paper (arXiv 2504.08837)"

#: Published numbers shown beside ours (never used as test targets).
REFERENCES: dict[str, Reference] = {
    "mathvista": Reference("VL-Rethinker-72B", 80.3, "testmini", _README),
    "mathverse": Reference("VL-Rethinker-72B", 61.8, "testmini", _README),
    "mathvision": Reference("VL-Rethinker-72B", 43.9, "test", _README),
}


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed on ``n`` items:

    centre = (p + z^2 / 2n) / (1 + z^2 / n)
    half   = z * sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)
    """
    if n <= 0:
        return (0.0, 0.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item with ``c`` correct among ``n`` samples:
    ``1 - C(n - c, k) / C(n, k)`` (Chen et al. 2021)."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def item_score(row: Mapping[str, Any]) -> tuple[int, int]:
    """``(correct samples, samples)`` of one prediction line."""
    if "n_samples" in row:
        return int(row["n_correct"]), int(row["n_samples"])
    return int(bool(row["correct"])), 1


def _ks(k_max: int) -> list[int]:
    ks, k = [], 1
    while k < k_max:
        ks.append(k)
        k *= 2
    return ks + [k_max]


def summarize(
    rows: Sequence[Mapping[str, Any]],
    skipped: Sequence[tuple[str | None, str]] = (),
    *,
    benchmark: str = "",
    n_excluded: int = 0,
    extra_groups: Sequence[str] = (),
) -> dict[str, Any]:
    """One benchmark's summary from its prediction lines and its skipped items.

    ``skipped``: ``(id, reason)`` of every item left out as bad input; ``n_excluded``:
    well-formed items outside the reader's scope (MEGA-Bench tasks no rule-based judge
    can score), reported as coverage; ``extra_groups``: per-item keys (e.g.
    ``problem_version``) to report accuracy by, besides the category."""
    n = len(rows)
    scores = [item_score(r) for r in rows]
    per_item = [c / k for c, k in scores]
    accuracy = sum(per_item) / n if n else 0.0
    cats: dict[str, list[float]] = defaultdict(list)
    for r, s in zip(rows, per_item):
        cats[r.get("category") or NO_CATEGORY].append(s)
    lo, hi = wilson_interval(accuracy, n)
    out: dict[str, Any] = {
        "n_items": n,
        "n_skipped": len(skipped),
        "accuracy": accuracy,
        "by_category": {c: sum(v) / len(v) for c, v in sorted(cats.items())},
        "category_counts": {c: len(v) for c, v in sorted(cats.items())},
        "n_correct": sum(c for c, _ in scores),  # correct samples (= correct items with one sample each)
        "ci95": [lo, hi],
    }
    for key in extra_groups:
        groups: dict[str, list[float]] = defaultdict(list)
        for r, s in zip(rows, per_item):
            groups[str(r.get(key) or NO_CATEGORY)].append(s)
        out[f"by_{key}"] = {g: sum(v) / len(v) for g, v in sorted(groups.items())}
    k_max = max((k for _, k in scores), default=1)
    if k_max > 1:
        out["n_samples"] = k_max
        out["pass_at_k"] = {str(k): sum(pass_at_k(kk, c, k) for c, kk in scores if kk >= k) / n for k in _ks(k_max)}
    truncated = sum(1 for r in rows if r.get("finished") is False)
    out["n_truncated"] = truncated
    out["reasons"] = dict(sorted(Counter(str(r.get("reason")) for r in rows).items()))
    if skipped:
        out["skipped_by_reason"] = dict(sorted(Counter(reason_kind(reason) for _, reason in skipped).items()))
        out["skipped_items"] = [[rid, reason] for rid, reason in list(skipped)[:MAX_LISTED_SKIPS]]
    if n_excluded:
        out["n_excluded"] = n_excluded
        kept = n + len(skipped)
        out["coverage"] = kept / (kept + n_excluded)
    effect = rethink_effect([(bool(r["correct"]), bool(r["rethought"]["correct"])) for r in rows if r.get("rethought")])
    if effect is not None:  # rethinker eval --rethink-at-test
        out["rethinking"] = effect
    ref = REFERENCES.get(benchmark)
    if ref is not None:
        out["reference"] = asdict(ref)
    return out


# -- rendering -----------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _rows(summary: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Flat table rows: one per benchmark, then one per category and extra group."""
    rows = []
    for name, s in summary.items():
        ref = s.get("reference")
        rows.append(
            {
                "benchmark": name,
                "group": "overall",
                "name": "",
                "n": s["n_items"],
                "skipped": s["n_skipped"],
                "accuracy": s["accuracy"],
                "ci_low": s["ci95"][0],
                "ci_high": s["ci95"][1],
                "reference": ref["accuracy"] if ref else None,
                "reference_model": ref["model"] if ref else "",
                **{f"pass@{k}": v for k, v in (s.get("pass_at_k") or {}).items()},
            }
        )
        counts = s.get("category_counts", {})
        for cat, acc in s.get("by_category", {}).items():
            rows.append({"benchmark": name, "group": "category", "name": cat, "n": counts.get(cat), "accuracy": acc})
        for key, groups in s.items():
            if key.startswith("by_") and key != "by_category" and isinstance(groups, dict):
                for g, acc in groups.items():
                    rows.append({"benchmark": name, "group": key[3:], "name": g, "accuracy": acc})
    return rows


def format_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The printed table: accuracy in percent with its 95% interval, skipped items, and
    the published reference beside it when there is one."""
    head = ("benchmark", "items", "skipped", "acc %", "95% CI", "reference %")
    lines: list[tuple[str, ...]] = []
    notes: list[str] = []
    for name, s in summary.items():
        ref = s.get("reference")
        ref_txt = f"{ref['accuracy']:.1f} ({ref['model']}, {ref['split']})" if ref else "-"
        lines.append(
            (
                name,
                str(s["n_items"]),
                str(s["n_skipped"]),
                _pct(s["accuracy"]),
                f"[{_pct(s['ci95'][0])}, {_pct(s['ci95'][1])}]",
                ref_txt,
            )
        )
        counts = s.get("category_counts", {})
        for cat, acc in s.get("by_category", {}).items():
            lines.append((f"  {cat}", str(counts.get(cat, "")), "", _pct(acc), "", ""))
        for key, groups in s.items():
            if key.startswith("by_") and key != "by_category" and isinstance(groups, dict):
                for g, acc in groups.items():
                    lines.append((f"  {key[3:]}: {g}", "", "", _pct(acc), "", ""))
        if s.get("pass_at_k"):
            notes.append(
                f"{name}: "
                + ", ".join(f"pass@{k} {_pct(v)}" for k, v in s["pass_at_k"].items())
                + f" (accuracy = mean over {s.get('n_samples')} samples)"
            )
        if s.get("skipped_by_reason"):
            notes.append(f"{name}: skipped " + ", ".join(f"{k} {v}" for k, v in s["skipped_by_reason"].items()))
        if s.get("error"):
            notes.append(f"{name}: NOT EVALUATED: {s['error']}")
        if "coverage" in s:
            notes.append(
                f"{name}: coverage {_pct(s['coverage'])}% ({s['n_excluded']} items no rule-based judge "
                "can score left out)"
            )
        if ref:
            notes.append(f"{name}: reference from {ref['source']}")
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    out = [fmt(head), fmt(tuple("-" * w for w in widths)), *(fmt(r) for r in lines)]
    return "\n".join(out + (["", *notes] if notes else []))


def to_markdown(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The summary as a markdown table (accuracies in percent)."""
    lines = [
        "| benchmark | group | items | skipped | accuracy (%) | 95% CI | reference (%) |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in _rows(summary):
        ci = f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]" if "ci_low" in r else ""
        ref = f"{r['reference']:.1f} ({r['reference_model']})" if r.get("reference") is not None else ""
        group = "overall" if r["group"] == "overall" else f"{r['group']}: {r['name']}"
        lines.append(
            f"| {r['benchmark']} | {group} | {r.get('n') if r.get('n') is not None else ''} | "
            f"{r.get('skipped', '')} | {_pct(r['accuracy'])} | {ci} | {ref} |"
        )
    sources = {s["reference"]["source"] for s in summary.values() if s.get("reference")}
    lines += [""] + [f"Reference numbers: {src}." for src in sorted(sources)]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """The summary as CSV: one row per benchmark (group ``overall``), category and extra
    group; accuracies as fractions in [0, 1]."""
    rows = _rows(summary)
    fields = [
        "benchmark",
        "group",
        "name",
        "n",
        "skipped",
        "accuracy",
        "ci_low",
        "ci_high",
        "reference",
        "reference_model",
    ]
    fields += sorted({k for r in rows for k in r if k.startswith("pass@")}, key=lambda k: int(k[5:]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") if r.get(k) is not None else "" for k in fields})
    return buf.getvalue()


def write_reports(out_dir: str | Path, summary: Mapping[str, Mapping[str, Any]]) -> dict[str, Path]:
    """``summary.json``, ``summary.md`` and ``summary.csv`` in ``out_dir`` (atomically)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": d / "summary.json", "md": d / "summary.md", "csv": d / "summary.csv"}
    write_atomic(paths["json"], json.dumps(summary, indent=2, sort_keys=False) + "\n")
    write_atomic(paths["md"], to_markdown(summary))
    write_atomic(paths["csv"], to_csv(summary))
    return paths
