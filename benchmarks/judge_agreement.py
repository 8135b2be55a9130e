"""Judge agreement with other graders' answer-equivalence suites, against plain math-verify.

Reads every ``tests/data/judge_suites/*.jsonl``: the first line of a file names the suite
and its source (repository, path, commit); each further line is one case
``{"answer", "gold", "label"}`` plus optional ``choices``, ``precision``,
``answer_type``, ``standard`` (false: the label does not follow standard mathematical
equivalence, see ``note`` and docs/judge.md) and ``symmetric`` (the generated corpus:
the case is also graded with answer and gold swapped).

Both graders see the same strings: the judge grades the response ``\\boxed{answer}``
against ``gold``; plain math-verify, the released code's call, computes
``verify(parse("\\boxed{gold}"), parse("\\boxed{answer}"))`` with its default extraction
and timeouts. Printed per suite: cases, the judge's agreement with the labels and plain
math-verify's, on the standard cases (the target) and on all cases; ``--show`` lists
every case where the judge disagrees with a label.

    python benchmarks/judge_agreement.py [--show] [--suite NAME]
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from rethinker.judge import grade

SUITES_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "judge_suites"


@dataclass
class Case:
    suite: str
    answer: str
    gold: str
    label: bool
    standard: bool = True
    choices: list[str] | None = None
    precision: int | None = None
    answer_type: str | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def load_suites(directory: Path = SUITES_DIR) -> dict[str, tuple[dict, list[Case]]]:
    """suite name -> (its header, its cases); symmetric cases appear twice (swapped)."""
    suites: dict[str, tuple[dict, list[Case]]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        header, rows = lines[0], lines[1:]
        name = header["suite"]
        cases = []
        for r in rows:
            common = dict(suite=name, label=bool(r["label"]), standard=r.get("standard", True),
                          choices=r.get("choices"), precision=r.get("precision"),
                          answer_type=r.get("answer_type"), note=r.get("note", ""))
            cases.append(Case(answer=r["answer"], gold=r["gold"], **common))
            if r.get("symmetric"):
                cases.append(Case(answer=r["gold"], gold=r["answer"], **common))
        suites[name] = (header, cases)
    return suites


def judge_verdict(case: Case) -> bool:
    return grade(f"\\boxed{{{case.answer}}}", case.gold, case.choices, case.answer_type, case.precision).correct


def math_verify_verdict(case: Case) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse(f"\\boxed{{{case.gold}}}"), parse(f"\\boxed{{{case.answer}}}")))
    except Exception:
        return False


def agreement(suites: dict[str, tuple[dict, list[Case]]]) -> list[dict]:
    """One row per suite (and a total): counts of cases and of agreeing verdicts."""
    rows = []
    total = {"suite": "total", "n": 0, "judge": 0, "mv": 0, "n_std": 0, "judge_std": 0, "mv_std": 0, "misses": []}
    for name, (_, cases) in suites.items():
        row = {"suite": name, "n": 0, "judge": 0, "mv": 0, "n_std": 0, "judge_std": 0, "mv_std": 0, "misses": []}
        for c in cases:
            j, m = judge_verdict(c) == c.label, math_verify_verdict(c) == c.label
            for r in (row, total):
                r["n"] += 1
                r["judge"] += j
                r["mv"] += m
                if c.standard:
                    r["n_std"] += 1
                    r["judge_std"] += j
                    r["mv_std"] += m
            if not j:
                row["misses"].append(c)
        rows.append(row)
    rows.append(total)
    return rows


def _pct(a: int, n: int) -> str:
    return f"{100 * a / n:.1f}%" if n else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--show", action="store_true", help="list the cases where the judge disagrees with a label")
    ap.add_argument("--suite", help="only this suite")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    suites = load_suites()
    if args.suite:
        suites = {args.suite: suites[args.suite]}
    rows = agreement(suites)
    print("| suite | source | standard cases | judge | plain math-verify | all cases | judge | plain math-verify |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        src = suites[r["suite"]][0].get("source_repo", "") if r["suite"] in suites else ""
        print(f"| {r['suite']} | {src} | {r['n_std']} | {_pct(r['judge_std'], r['n_std'])} | "
              f"{_pct(r['mv_std'], r['n_std'])} | {r['n']} | {_pct(r['judge'], r['n'])} | {_pct(r['mv'], r['n'])} |")
    if args.show:
        for r in rows[:-1]:
            for c in r["misses"]:
                tag = "" if c.standard else f"  [non-standard label: {c.note}]"
                print(f"{c.suite}: answer={c.answer!r} gold={c.gold!r} label={c.label}{tag}")


if __name__ == "__main__":
    main()
