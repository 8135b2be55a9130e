"""Judge throughput and agreement: rethinker.judge vs plain math-verify.

Generates N (default 10,000) (response, ground truth) pairs from a fixed seed, as a GRPO
step would see them: queries of every answer type (integers, fractions, MathVista-style
decimals with a precision, multiple choice, yes/no, short text, radicals, polynomials,
equations, intervals, sets, percentages, degrees), 8 sampled responses per query, some
truncated or without a box. It then grades every pair

- with ``rethinker.judge.grade`` in this process,
- with ``rethinker.judge.grade_many(workers=W)`` (helper processes started before timing),
- and, on the first ``--baseline-n`` pairs (plain math-verify grades about 50-100 pairs/s,
  so all 10,000 would take minutes), with our ``grade`` again and with plain math-verify,
  the released code's call: ``verify(parse(gold), parse(response))`` with ``gold`` boxed,
  default extraction and default (signal) timeouts,

and prints verdicts/s, the ratio to plain math-verify, how often the two verdicts differ
on the pairs both graded, and the differences grouped by kind with one example each.
Every timed run starts with our caches cleared (after a warm-up on pairs of another
seed), so repeated answers within the run are the only cache hits, as in a GRPO group.
Finally it times the hostile inputs of ``tests/test_judge_hostile.py`` through our judge
(plain math-verify hangs on several).

    python benchmarks/judge_speed.py [--n 10000] [--baseline-n 2000] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from collections import Counter, defaultdict
from fractions import Fraction

from rethinker.judge import grade, grade_many
from rethinker.judge.grade import clear_caches

GROUP = 8
FILLER = (
    "First, read the figure carefully and list what is given. "
    "Then set up the relation between the quantities and simplify step by step. "
)


# -- pair generation ------------------------------------------------------------------
def _query(rng: random.Random) -> dict:
    """One query: its kind, ground truth, options, type, precision and a pool of
    predictions (right ones first in the pool, wrong ones after)."""
    kind = rng.choice(list(_ANSWERS))
    q: dict = {"kind": kind, "choices": None, "answer_type": None, "precision": None}
    q["right"], q["wrong"] = _ANSWERS[kind](rng, q)
    return q


def _integer_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    n = rng.randint(1, 5000)
    q["gold"] = str(n)
    right = [str(n), f"{n:,}", f"x={n}", f"{n}.0"]
    wrong = [str(n + rng.randint(1, 9)), str(-n), f"{n}{rng.randint(0, 9)}"]
    return right, wrong


def _fraction_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    p, d = rng.randint(1, 9), rng.choice([2, 3, 4, 5, 6, 8])
    fr = Fraction(p, d)
    q["gold"] = f"\\frac{{{fr.numerator}}}{{{fr.denominator}}}"
    dec = f"{float(fr):.6f}".rstrip("0").rstrip(".")
    right = [f"\\frac{{{p}}}{{{d}}}", f"\\dfrac{{{fr.numerator}}}{{{fr.denominator}}}", dec, f"{p}/{d}"]
    wrong = [f"\\frac{{{d}}}{{{p + 1}}}", f"{float(fr) + 0.1:.2f}"]
    return right, wrong


def _precision_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    x = round(rng.uniform(0.1, 50), 2)
    q.update(gold=f"{x:.2f}", precision=2, answer_type="float")
    right = [f"{x:.2f}", f"{x + 0.001:.3f}", f"{x:.2f}0"]
    wrong = [f"{x + 0.1:.2f}", f"{x:.1f}" if round(x, 1) != x else f"{x + 0.2:.2f}"]
    return right, wrong


def _choice_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    base = rng.randint(2, 20)
    opts = [f"{base + 2 * i} cm" for i in range(4)]
    k = rng.randrange(4)
    letter = "ABCD"[k]
    q.update(gold=letter, choices=opts, answer_type="multiple_choice")
    right = [letter, f"({letter})", f"{letter}. {opts[k]}", opts[k], f"\\text{{{letter}}}"]
    other = "ABCD"[(k + 1) % 4]
    wrong = [other, f"({other})", opts[(k + 1) % 4]]
    return right, wrong


def _yesno_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    gold = rng.choice(["Yes", "No"])
    q["gold"] = gold
    right = [gold, gold.lower(), f"\\text{{{gold}}}", gold + "."]
    wrong = ["No" if gold == "Yes" else "Yes"]
    return right, wrong


def _text_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    words = ["red", "blue", "green", "triangle", "square", "circle", "Tuesday", "north"]
    gold = rng.choice(words)
    q.update(gold=gold)
    right = [gold, gold.capitalize(), f"\\text{{{gold}}}"]
    wrong = [w for w in words if w != gold][:2]
    return right, wrong


def _radical_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    a, b = rng.randint(2, 5), rng.choice([2, 3, 5, 6, 7])
    q["gold"] = f"{a}\\sqrt{{{b}}}"
    right = [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a * b**0.5:.6f}"]
    wrong = [f"\\sqrt{{{a * b}}}", f"{b}\\sqrt{{{a}}}"]
    return right, wrong


def _polynomial_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    a = rng.randint(1, 6)
    q["gold"] = f"(x+{a})^2"
    right = [f"(x+{a})^2", f"x^2+{2 * a}x+{a * a}", f"x^{{2}} + {2 * a} x + {a * a}"]
    wrong = [f"x^2+{a}x+{a * a}", f"(x-{a})^2"]
    return right, wrong


def _equation_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    m, c = rng.randint(2, 9), rng.randint(1, 9)
    q["gold"] = f"y={m}x+{c}"
    right = [f"y={m}x+{c}", f"y={c}+{m}x", f"y = {m}x + {c}"]
    wrong = [f"y={m}x-{c}", f"y={c}x+{m}"]
    return right, wrong


def _interval_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    a, b = sorted(rng.sample(range(-9, 10), 2))
    q["gold"] = f"[{a},{b})"
    right = [f"[{a},{b})", f"[{a}, {b})", f"\\left[{a},{b}\\right)"]
    wrong = [f"({a},{b}]", f"[{a},{b}]"]
    return right, wrong


def _set_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    xs = rng.sample(range(1, 20), 3)
    q["gold"] = "\\{" + ",".join(map(str, sorted(xs))) + "\\}"
    right = ["\\{" + ",".join(map(str, xs)) + "\\}", q["gold"]]
    wrong = ["\\{" + ",".join(map(str, sorted(xs)[:2])) + "\\}"]
    return right, wrong


def _percent_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    p = rng.choice([5, 12.5, 20, 25, 40, 75])
    q["gold"] = f"{p}\\%"
    right = [f"{p}\\%", f"{p}", f"{p / 100:g}", f"{p}%"]
    wrong = [f"{p + 5}\\%", f"{p / 10:g}"]
    return right, wrong


def _degrees_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    d = rng.choice([30, 45, 60, 90, 120])
    q["gold"] = f"{d}^\\circ"
    right = [f"{d}", f"{d}^{{\\circ}}", f"{d}^\\circ", f"{d} degrees"]
    wrong = [f"{180 - d}", f"{d / 2:g}^\\circ"]
    return right, wrong


def _units_answers(rng: random.Random, q: dict) -> tuple[list[str], list[str]]:
    n = rng.randint(2, 90)
    unit = rng.choice(["cm", "m", "minutes", "cm^2", "km/h"])
    q["gold"] = f"{n} {unit}" if rng.random() < 0.5 else str(n)
    right = [f"{n}", f"{n}\\text{{ {unit}}}", f"{n} {unit}"]
    wrong = [f"{n + 1} {unit}", f"{n * 10}"]
    return right, wrong


#: Each kind's ground truth (set on the query) and its right and wrong predictions.
_ANSWERS = {
    "integer": _integer_answers,
    "fraction": _fraction_answers,
    "precision": _precision_answers,
    "choice": _choice_answers,
    "yesno": _yesno_answers,
    "text": _text_answers,
    "radical": _radical_answers,
    "polynomial": _polynomial_answers,
    "equation": _equation_answers,
    "interval": _interval_answers,
    "set": _set_answers,
    "percent": _percent_answers,
    "degrees": _degrees_answers,
    "units": _units_answers,
}


def make_pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    pairs: list[dict] = []
    while len(pairs) < n:
        q = _query(rng)
        gold = q["gold"] if rng.random() < 0.5 else f"\\boxed{{{q['gold']}}}"  # ViRL39K boxes its answers
        p_right = rng.random()  # the query's difficulty
        for _ in range(GROUP):
            u = rng.random()
            kind = q["kind"]
            if u < 0.05:
                response = FILLER * rng.randint(1, 4) + "so the answer is probably"  # truncated, no box
                pred = None
            elif u < 0.08:  # the right answer, but not in a box: training requires the box
                pred = None
                kind = "no-box"
                response = FILLER * rng.randint(1, 4) + f"So the answer is ${q['right'][0]}$."
            else:
                pred = rng.choice(q["right"] if rng.random() < p_right else q["wrong"])
                response = FILLER * rng.randint(1, 4) + f"Therefore the final answer is \\boxed{{{pred}}}."
            pairs.append(
                {
                    "kind": kind,
                    "response": response,
                    "ground_truth": gold,
                    "choices": q["choices"],
                    "answer_type": q["answer_type"],
                    "precision": q["precision"],
                    "pred": pred,
                }
            )
    return pairs[:n]


# -- the graders ------------------------------------------------------------------------
def ours_single(pairs: list[dict]) -> list[bool]:
    return [
        grade(p["response"], p["ground_truth"], p["choices"], p["answer_type"], p["precision"]).correct for p in pairs
    ]


def ours_pool(pairs: list[dict], workers: int) -> list[bool]:
    items = [{k: p[k] for k in ("response", "ground_truth", "choices", "answer_type", "precision")} for p in pairs]
    return [v.correct for v in grade_many(items, workers=workers)]


def plain_math_verify(pairs: list[dict]) -> list[bool]:
    from math_verify import parse, verify

    out = []
    for p in pairs:
        gt = p["ground_truth"]
        gold = parse(gt if "\\boxed" in gt else f"\\boxed{{{gt}}}")
        out.append(bool(verify(gold, parse(p["response"]))))
    return out


# -- why verdicts differ (each a documented choice) -------------------------------------------
EXPLAIN = {
    ("no-box", False): "training rules: the answer must be in \\boxed{} (EVAL_RULES would accept "
    "'the answer is X'); math-verify takes any LaTeX/number it finds",
    ("choice", True): "option letters / option text: math-verify parses 'B' as a symbol and cannot map "
    "'(B)', 'B. 5 cm', '\\text{B}' or the option's text to the letter",
    ("choice", False): "letter mismatch math-verify accepts (e.g. symbol products)",
    ("yesno", True): "yes/no compared as words: math-verify reads 'Yes' as the product E*s*y "
    "('yes' and 'Yes' differ, '\\text{Yes}' vs 'Yes' differ)",
    ("text", True): "short text compared as words, case-insensitive: math-verify compares symbol products, "
    "case-sensitive",
    ("precision", True): "MathVista precision: we round both to the given decimals; math-verify rounds to 6 decimals",
    ("percent", True): "X% equals X and X/100 (math-verify: only for integers, e.g. 12.5% != 12.5)",
    ("percent", False): "percent rules differ",
    ("units", True): "a number with a unit equals the number (math-verify keeps some units as symbols)",
    ("degrees", True): "'30 degrees' / '30^\\circ' equal 30",
}


def _time(fn, *args) -> tuple[list[bool], float]:
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="pairs graded by our judge")
    ap.add_argument(
        "--baseline-n",
        type=int,
        default=2_000,
        help="pairs (the first ones) also graded by plain math-verify, which is slow",
    )
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=int, default=1, help="examples printed per kind of difference")
    from _doc import StdoutSection, add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    doc = StdoutSection(args.write_doc, "judge_speed")
    logging.disable(logging.WARNING)  # math-verify logs every timeout

    pairs = make_pairs(args.n, args.seed)
    base = pairs[: min(args.baseline_n, len(pairs))]
    uniq = len({(p["response"], p["ground_truth"]) for p in pairs})
    kinds = Counter(p["kind"] for p in pairs)
    print(
        f"{len(pairs)} pairs ({uniq} distinct), seed {args.seed}, {GROUP} responses per query, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    print("kinds: " + ", ".join(f"{k} {c}" for k, c in sorted(kinds.items())))

    # Warm-up on pairs of another seed (imports, ANTLR set-up, sympy's own caches, the
    # helper processes), then our caches are cleared: every timed run starts cold.
    warm = make_pairs(400, args.seed + 1)
    ours_single(warm)
    plain_math_verify(warm[:100])
    ours_pool(warm, args.workers)
    clear_caches()

    rows, ours, mv = _timed_runs(pairs, base, args.workers)
    _print_rates(rows)
    _print_differences(base, ours[: len(base)], mv, args.examples)
    hostile_table()
    doc.write()


def _timed_runs(pairs: list[dict], base: list[dict], workers: int) -> tuple[list, list[bool], list[bool]]:
    """Each grader timed from cold caches: ``(rows of (grader, pairs, seconds), our verdicts
    on pairs, plain math-verify's on base)``."""
    rows = []
    ours, t = _time(ours_single, pairs)
    rows.append(("rethinker.judge.grade, 1 process", len(pairs), t))
    clear_caches()
    pooled, t = _time(ours_pool, pairs, workers)
    rows.append((f"rethinker.judge.grade_many, {workers} workers", len(pairs), t))
    assert pooled == ours, "grade_many disagrees with grade"
    clear_caches()
    _, t_ours_base = _time(ours_single, base)
    rows.append(("rethinker.judge.grade, 1 process", len(base), t_ours_base))
    mv, t_mv = _time(plain_math_verify, base)
    rows.append(("plain math_verify parse+verify, 1 process", len(base), t_mv))
    return rows, ours, mv


def _print_rates(rows: list) -> None:
    """The timing table; the last row (plain math-verify) is the ``x plain`` reference."""
    mv_rate = rows[-1][1] / rows[-1][2]
    print()
    print(f"| {'grader':<42} | {'pairs':>6} | {'seconds':>8} | {'verdicts/s':>10} | {'x plain':>7} |")
    print(f"|{'-' * 44}|{'-' * 8}|{'-' * 10}|{'-' * 12}|{'-' * 9}|")
    for name, n, secs in rows:
        print(f"| {name:<42} | {n:>6} | {secs:8.2f} | {n / secs:10.0f} | {n / secs / mv_rate:7.2f} |")


def _print_differences(base: list[dict], ours_b: list[bool], mv: list[bool], examples: int) -> None:
    """Where our verdicts and plain math-verify's differ, grouped by kind, with examples."""
    diffs = [(p, o, m) for p, o, m in zip(base, ours_b, mv) if o != m]
    print()
    print(
        f"on the {len(base)} pairs both graded: accuracy ours {sum(ours_b) / len(base):.3f}, plain math-verify "
        f"{sum(mv) / len(base):.3f}; verdicts differ on {len(diffs)} ({100 * len(diffs) / len(base):.1f}%)"
    )
    groups: dict[tuple[str, bool], list] = defaultdict(list)
    for p, o, _ in diffs:
        groups[(p["kind"], o)].append(p)
    if groups:
        print()
        print(f"| {'kind':<10} | {'ours':<5} | {'m-v':<5} | {'count':>5} | example (answer vs ground truth) | why |")
        print("|---|---|---|---|---|---|")
    for (kind, o), ps in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        why = EXPLAIN.get((kind, o), "UNEXPLAINED")
        for p in ps[:examples]:
            shown = ("..." + p["response"][-28:]) if p["pred"] is None else p["pred"]
            extra = f" choices={p['choices']}" if p["choices"] else ""
            extra += f" precision={p['precision']}" if p["precision"] is not None else ""
            print(
                f"| {kind:<10} | {str(o):<5} | {str(not o):<5} | {len(ps):>5} | "
                f"`{shown}` vs `{p['ground_truth']}`{extra} | {why} |"
            )
        distinct = sorted({("no box" if p["pred"] is None else p["pred"]) for p in ps})
        if len(distinct) > examples:
            print(
                f"|  |  |  |  | all answers: {', '.join('`' + d + '`' for d in distinct[:8])}"
                f"{' ...' if len(distinct) > 8 else ''} |  |"
            )


def hostile_table() -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    try:
        from test_judge_hostile import _payloads
    except Exception as exc:  # the tests folder is not shipped with the package
        print(f"\n(hostile inputs skipped: {exc})")
        return
    print()
    print("| hostile input | chars | verdict | reason | ms |")
    print("|---|---|---|---|---|")
    worst = 0.0
    clear_caches()
    for name, response, gold in _payloads("/nonexistent/sentinel"):
        t = time.perf_counter()
        v = grade(response, gold, rules=("box", "answer_tag", "answer_is", "answer_colon", "final_letter"))
        ms = 1000 * (time.perf_counter() - t)
        worst = max(worst, ms)
        print(f"| {name} | {len(response)} | {v.correct} | {v.reason} ({v.detail or v.path}) | {ms:.1f} |")
    print(f"\nslowest hostile verdict: {worst:.1f} ms")


if __name__ == "__main__":
    main()
