"""How saturated is a data mix for a policy? The zero-advantage share a GRPO step would see,
per kind, from ``rethinker data annotate``'s pass rates (K samples per query at the training
sampling settings). A query's group has a zero advantage when its K samples are all right or
all wrong (pass rate 0 or 1), so a kind's share is the fraction of its queries at 0 or 1 and a
mix's share is the query-weighted mean over its kinds.

    rethinker toy data --split train --n 1000 --seed 0 --output train.parquet
    rethinker data annotate train.parquet --model runs/E2/grpo-seed0/final --samples 8 \\
        --name start --temperature 1.0 --top-p 1.0 --top-k 0 --max-new-tokens 48 \\
        --output annotated.parquet
    python benchmarks/zero_adv_pilot.py annotated.parquet --name start --target 0.85

``--target`` applies E2's saturated-mix rule (docs/experiments.md): drop the kinds with the
lowest share, one at a time, until the remaining mix's share reaches the target.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rethinker.data.io import read_records  # noqa: E402


def kind_shares(rates: Iterable[tuple[str, float]]) -> dict[str, tuple[int, float, float]]:
    """``(kind, pass rate)`` pairs -> ``{kind: (queries, mean pass rate, zero-adv share)}``."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for kind, rate in rates:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"a pass rate must lie within [0, 1], got {rate} for kind {kind!r}")
        by_kind[kind].append(rate)
    return {k: (len(v), sum(v) / len(v), sum(r in (0.0, 1.0) for r in v) / len(v)) for k, v in sorted(by_kind.items())}


def mix_share(shares: dict[str, tuple[int, float, float]], kinds: Iterable[str]) -> float:
    """The query-weighted zero-advantage share of a mix of ``kinds``."""
    kinds = list(kinds)
    n = sum(shares[k][0] for k in kinds)
    if n == 0:
        raise ValueError("an empty mix has no share")
    return sum(shares[k][0] * shares[k][2] for k in kinds) / n


def saturated_mix(shares: dict[str, tuple[int, float, float]], target: float) -> tuple[list[str], list[str]]:
    """Drop the kind with the lowest share (ties: by name) until the rest's share reaches
    ``target``; returns ``(kept, dropped in order)``. Raises if no non-empty mix reaches it."""
    kept = sorted(shares)
    dropped: list[str] = []
    while mix_share(shares, kept) < target:
        if len(kept) == 1:
            raise ValueError(f"no mix of these kinds reaches a zero-advantage share of {target}")
        lowest = min(kept, key=lambda k: (shares[k][2], k))
        kept.remove(lowest)
        dropped.append(lowest)
    return kept, dropped


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", help="records annotated by `rethinker data annotate`")
    ap.add_argument("--name", required=True, help="the pass-rate name the annotation wrote")
    ap.add_argument("--target", type=float, default=None, help="apply the saturated-mix rule with this share")
    args = ap.parse_args()
    loaded = read_records(args.file)
    if loaded.skipped:
        ap.error(f"{len(loaded.skipped)} rows of {args.file} could not be read (first: {loaded.skipped[0]})")
    records = loaded.records
    missing = [r.id for r in records if not r.pass_rates or args.name not in r.pass_rates]
    if missing:
        ap.error(f"{len(missing)} of {len(records)} records lack pass_rates[{args.name!r}] (first: {missing[0]})")
    shares = kind_shares((r.category or "?", r.pass_rates[args.name]) for r in records)
    print("| kind | queries | mean pass rate | zero-advantage share |\n|---|---|---|---|")
    for k, (n, rate, share) in shares.items():
        print(f"| {k} | {n} | {rate:.2f} | {share:.2f} |")
    print(f"| all | {len(records)} | - | {mix_share(shares, shares):.2f} |")
    if args.target is not None:
        kept, dropped = saturated_mix(shares, args.target)
        print(
            f"\nrule (target {args.target}): drop {', '.join(dropped) or 'nothing'} -> "
            f"kinds {','.join(kept)}, predicted share {mix_share(shares, kept):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
