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
and timeouts (an answer ending in a lone backslash is boxed with a space before the
closing brace, for both). Printed per suite: cases, the judge's agreement with the labels and plain
math-verify's, on the standard cases (the target) and on all cases; ``--show`` lists
every case where the judge disagrees with a label.

The suite ``generated`` is written by this script (``--write-generated``, seed 0): each
failure class of the judge's history (LaTeX spacing inside numbers, matrices, precision
on the parts of tuples/intervals/matrices, ratio ground truths, units, ``\\bmod``,
``1e4``) and each hedging pattern (several values or options where one is asked for,
``\\pm``, every option, an empty box), with random numbers.

    python benchmarks/judge_agreement.py [--show] [--suite NAME] [--write-generated]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
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
            common = dict(
                suite=name,
                label=bool(r["label"]),
                standard=r.get("standard", True),
                choices=r.get("choices"),
                precision=r.get("precision"),
                answer_type=r.get("answer_type"),
                note=r.get("note", ""),
            )
            cases.append(Case(answer=r["answer"], gold=r["gold"], **common))
            if r.get("symmetric"):
                cases.append(Case(answer=r["gold"], gold=r["answer"], **common))
        suites[name] = (header, cases)
    return suites


def boxed(answer: str) -> str:
    """``\\boxed{answer}``; an answer ending in a lone backslash gets a space first, or
    its ``\\}`` would be an escaped brace and the box would never close."""
    tail = len(answer) - len(answer.rstrip("\\"))
    return f"\\boxed{{{answer}{' ' if tail % 2 else ''}}}"


#: Seconds per symbolic comparison here: agreement is about equivalence, and a loaded
#: machine must not turn a slow sympy call into a "miss" (the 1 s bound of training and
#: evaluation is tested on its own, in tests/test_judge_hostile.py).
AGREEMENT_TIMEOUT_S = 10.0


def judge_verdict(case: Case) -> bool:
    return grade(
        boxed(case.answer), case.gold, case.choices, case.answer_type, case.precision, timeout_s=AGREEMENT_TIMEOUT_S
    ).correct


def math_verify_verdict(case: Case) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse(boxed(case.gold)), parse(boxed(case.answer))))
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


# -- the generated corpus ------------------------------------------------------------------
def _gen_cases(seed: int = 0) -> list[dict]:
    """Cases for every failure class and hedging pattern, with random numbers. ``symmetric``:
    equivalence is symmetric, so the case is graded both ways."""
    rng = random.Random(seed)
    out: list[dict] = []

    def add(answer, gold, label, kind, symmetric=False, **extra):
        out.append(
            {
                "answer": answer,
                "gold": gold,
                "label": label,
                "kind": kind,
                **({"symmetric": True} if symmetric else {}),
                **extra,
            }
        )

    _spacing_cases(rng, add)
    _matrix_cases(rng, add)
    _precision_cases(rng, add)
    _ratio_cases(rng, add)
    _unit_cases(rng, add)
    _mod_cases(rng, add)
    _repeating_cases(rng, add)
    _hedge_cases(rng, add)
    _empty_cases(add)
    return out


def _spacing_cases(rng: random.Random, add: Callable[..., None]) -> None:
    """LaTeX spacing and separators inside numbers."""
    for _ in range(8):
        n = rng.randint(1000, 9_999_999)
        grouped = f"{n:,}"
        for sep in (",\\!", "{,}", "\\,", ",\\! "):
            add(grouped.replace(",", sep), str(n), True, "spacing", symmetric=True)
        add(grouped.replace(",", ",\\!"), str(n + 1), False, "spacing", symmetric=True)
        cents = rng.randint(0, 99)
        add("\\$" + grouped.replace(",", ",\\!") + f".{cents:02d}", f"{n}.{cents:02d}", True, "spacing", symmetric=True)


def _matrix_cases(rng: random.Random, add: Callable[..., None]) -> None:
    """Matrices and vectors, spaced and tight."""
    for _ in range(6):
        a = [rng.randint(-9, 9) for _ in range(4)]
        sp = f"\\begin{{pmatrix}} {a[0]} & {a[1]} \\\\ {a[2]} & {a[3]} \\end{{pmatrix}}"
        tight = f"\\begin{{pmatrix}}{a[0]}&{a[1]}\\\\{a[2]}&{a[3]}\\end{{pmatrix}}"
        brk = f"\\begin{{bmatrix}}{a[0]} & {a[1]}\\\\ {a[2]} & {a[3]}\\end{{bmatrix}}"
        add(sp, tight, True, "matrix", symmetric=True)
        add(brk, sp, True, "matrix", symmetric=True)
        wrong = f"\\begin{{pmatrix}} {a[0]} & {a[1]} \\\\ {a[2]} & {a[3] + 1} \\end{{pmatrix}}"
        add(wrong, sp, False, "matrix", symmetric=True)
        v = [rng.randint(-9, 9) for _ in range(3)]
        col = f"\\begin{{pmatrix}} {v[0]} \\\\ {v[1]} \\\\ {v[2]} \\end{{pmatrix}}"
        col_tight = f"\\begin{{pmatrix}}{v[0]}\\\\{v[1]}\\\\{v[2]}\\end{{pmatrix}}"
        add(col, col_tight, True, "matrix", symmetric=True)
        add(
            col,
            f"\\begin{{pmatrix}} {v[0]} \\\\ {v[1]} \\\\ {v[2] + 2} \\end{{pmatrix}}",
            False,
            "matrix",
            symmetric=True,
        )


def _precision_cases(rng: random.Random, add: Callable[..., None]) -> None:
    """Precision on every part of a structure."""
    for _ in range(6):
        x, y = sorted(round(rng.uniform(0.5, 9.5), 2) for _ in range(2))
        if x == y:
            y += 0.5
        xa, ya = x + 0.001, y - 0.002
        add(f"({xa:.3f}, {ya:.3f})", f"({x:.2f}, {y:.2f})", True, "precision", symmetric=True, precision=2)
        add(f"[{xa:.3f}, {ya:.3f}]", f"[{x:.2f}, {y:.2f}]", True, "precision", symmetric=True, precision=2)
        add(f"({xa:.3f}, {ya:.3f}, 1)", f"({x:.2f}, {y:.2f}, 1)", True, "precision", symmetric=True, precision=2)
        add(
            f"\\begin{{pmatrix}} {xa:.3f} \\\\ {ya:.3f} \\end{{pmatrix}}",
            f"\\begin{{pmatrix}} {x:.2f} \\\\ {y:.2f} \\end{{pmatrix}}",
            True,
            "precision",
            symmetric=True,
            precision=2,
        )
        add(f"({x + 0.02:.2f}, {y:.2f})", f"({x:.2f}, {y:.2f})", False, "precision", symmetric=True, precision=2)
        add(
            f"\\begin{{pmatrix}} {x:.2f} \\\\ {y + 0.03:.2f} \\end{{pmatrix}}",
            f"\\begin{{pmatrix}} {x:.2f} \\\\ {y:.2f} \\end{{pmatrix}}",
            False,
            "precision",
            symmetric=True,
            precision=2,
        )


def _ratio_cases(rng: random.Random, add: Callable[..., None]) -> None:
    """Ratio ground truths are no option letters."""
    for _ in range(4):
        k = rng.randint(2, 9)
        add(str(k), f"A:B={k}", True, "ratio")
        add("A", f"A:B={k}", False, "ratio")
        add(str(k + 1), f"A:B={k}", False, "ratio")


def _unit_cases(rng: random.Random, add: Callable[..., None]) -> None:
    """Numbers with units and currency signs."""
    for _ in range(4):
        n = rng.randint(2, 500)
        for form in (
            f"€{n}",
            f"{n}€",
            f"{n} m²",
            f"{n}\\text{{ cm}}^2",
            f"{n} milliliters (ml)",
            f"{n} km/h",
            f"\\${n}",
            f"{n}\\text{{ dollars}}",
        ):
            add(form, str(n), True, "units", symmetric=True)
        add(f"{n + 1} m²", str(n), False, "units", symmetric=True)


def _mod_cases(rng: random.Random, add: Callable[..., None]) -> None:
    """``\\bmod`` and e-notation."""
    for _ in range(4):
        a, b = rng.randint(20, 99), rng.randint(3, 11)
        add(f"{a} \\bmod {b} = {a % b}", str(a % b), True, "mod", symmetric=True)
        add(f"{a} \\bmod {b}", str(a % b), True, "mod", symmetric=True)
        add(f"{a} \\bmod {b}", str(a % b + 1), False, "mod", symmetric=True)
        m, e = rng.randint(1, 9), rng.randint(2, 6)
        add(f"{m}e{e}", str(m * 10**e), True, "e-notation", symmetric=True)
        add(f"{m}.5e-{e}", f"{(m + 0.5) / 10**e:.{e + 1}f}", True, "e-notation", symmetric=True)
        add(f"{m}e{e + 1}", str(m * 10**e), False, "e-notation", symmetric=True)


def _repeating_cases(rng: random.Random, add: Callable[..., None]) -> None:
    """Repeating decimals against their fractions."""
    for _ in range(4):
        q = rng.choice([3, 7, 9, 11, 12, 13])
        p_ = rng.randint(1, q - 1)
        frac = Fraction(p_, q)
        head, rest, digits, seen = "", frac.numerator * 10, [], {}
        while rest and rest not in seen:  # long division until the remainder repeats
            seen[rest] = len(digits)
            digits.append(str(rest // frac.denominator))
            rest = rest % frac.denominator * 10
        if rest:
            start = seen[rest]
            head, rep = "".join(digits[:start]), "".join(digits[start:])
            add(
                f"0.{head}\\overline{{{rep}}}",
                f"\\frac{{{frac.numerator}}}{{{frac.denominator}}}",
                True,
                "repeating",
                symmetric=True,
            )
            add(f"0.{head}{rep[:2]}", f"0.{head}\\overline{{{rep}}}", False, "repeating", symmetric=True)


def _hedge_cases(rng: random.Random, add: Callable[..., None]) -> None:
    """Hedges (never credited) and their controls."""
    options = ["3 cm", "5 cm", "7 cm", "9 cm"]
    for _ in range(6):
        k = rng.randint(2, 99)
        other = k + rng.randint(1, 9)
        for form in (
            f"{k} or {other}",
            f"{other} or {k}",
            f"{k}, {other}",
            f"{other}, {k}",
            f"\\pm {k}",
            f"\\{{{k}, {other}\\}}",
            f"{k} \\text{{ or }} {other}",
            f"x = {k} \\text{{ or }} x = {other}",
            f"{k} \\text{{ and }} {other}",
            f"{k}, {other}, {other + 1}",
        ):
            add(form, str(k), False, "hedge")
        add(f"\\pm {k}", f"\\pm {k}", True, "hedge-control")
        add(f"{k}, {other}", f"{k}, {other}", True, "hedge-control")
        i = rng.randrange(4)
        L, M = "ABCD"[i], "ABCD"[(i + 1) % 4]
        for form in (
            f"{L} or {M}",
            f"{M} or {L}",
            f"{L}, {M}",
            f"{L}{M}",
            "ABCD",
            "A, B, C, D",
            f"({L}) or ({M})",
            f"({L}), ({M})",
            f"{L}) {options[i]}; {M}) {options[(i + 1) % 4]}",
            f"{L}. or {M}.",
            f"{L} and {M}",
            f"{L}/{M}",
            f"{L}:{M}",
        ):
            add(form, L, False, "hedge")
            add(form, L, False, "hedge", choices=options)
        add(f"({L})", L, True, "hedge-control", choices=options)
        add(f"{L}. {options[i]}", L, True, "hedge-control", choices=options)


def _empty_cases(add: Callable[..., None]) -> None:
    """Empty and blank boxes."""
    for gold in ("5", "B", "\\frac{1}{2}", "yes"):
        for blank in ("", " ", "\\ ", "\\quad", "\\text{}", "{}"):
            add(blank, gold, False, "empty")


def write_generated(seed: int = 0) -> Path:
    path = SUITES_DIR / "generated.jsonl"
    header = {
        "suite": "generated",
        "source_repo": "rethinker (this repository)",
        "source_paths": ["benchmarks/judge_agreement.py"],
        "seed": seed,
        "selection": "written by `python benchmarks/judge_agreement.py --write-generated`: every failure class "
        "and hedging pattern of docs/judge.md with random numbers; labels by construction",
    }
    with path.open("w", encoding="utf-8") as f:
        for row in [header, *_gen_cases(seed)]:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--show", action="store_true", help="list the cases where the judge disagrees with a label")
    ap.add_argument("--suite", help="only this suite")
    ap.add_argument("--write-generated", action="store_true", help="rewrite tests/data/judge_suites/generated.jsonl")
    from _doc import StdoutSection, add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    if args.write_generated:
        print(f"wrote {write_generated()}")
    doc = StdoutSection(args.write_doc, "judge_agreement")  # what follows is the table
    suites = load_suites()
    if args.suite:
        suites = {args.suite: suites[args.suite]}
    rows = agreement(suites)
    print("| suite | source | standard cases | judge | plain math-verify | all cases | judge | plain math-verify |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        src = suites[r["suite"]][0].get("source_repo", "") if r["suite"] in suites else ""
        print(
            f"| {r['suite']} | {src} | {r['n_std']} | {_pct(r['judge_std'], r['n_std'])} | "
            f"{_pct(r['mv_std'], r['n_std'])} | {r['n']} | {_pct(r['judge'], r['n'])} | {_pct(r['mv'], r['n'])} |"
        )
    if args.show:
        for r in rows[:-1]:
            for c in r["misses"]:
                tag = "" if c.standard else f"  [non-standard label: {c.note}]"
                print(f"{c.suite}: answer={c.answer!r} gold={c.gold!r} label={c.label}{tag}")
    doc.write()


if __name__ == "__main__":
    main()
