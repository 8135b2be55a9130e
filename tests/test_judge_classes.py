"""Table-driven tests for each failure class the judge once had and for each hedging
pattern: every case is graded as written and, where equivalence is symmetric, with
answer and ground truth swapped. Hedges are never credited, whichever side they are on.
"""

from __future__ import annotations

import pytest

from rethinker.judge import grade, reward
from rethinker.judge.normalize import clean_latex

MC4 = ["3 cm", "5 cm", "7 cm", "9 cm"]

# (answer, gold, kwargs, label): symmetric, graded both ways
SYMMETRIC = [
    # LaTeX spacing commands inside numbers
    ("10,\\!000", "10000", {}, True),
    ("10,\\!000", "10,000", {}, True),
    ("16,\\!386.20", "16386.2", {}, True),
    ("\\$16,\\!386.20", "16386.20", {}, True),
    ("11,\\! 111,\\! 111,\\! 100", "11111111100", {}, True),
    ("1\\,000\\,000", "1000000", {}, True),
    ("1{,}000{,}000", "10^6", {}, True),
    ("10,\\!000", "10001", {}, False),
    ("32, 349", "32349", {}, False),  # a comma and a space: two numbers
    # matrices and vectors: a row break followed by a space, bracket styles
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", {}, True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{bmatrix}1\\\\2\\end{bmatrix}", {}, True),
    ("\\begin{pmatrix} 1 & -2 \\\\ 0 & 3 \\end{pmatrix}", "\\begin{bmatrix}1&-2\\\\0&3\\end{bmatrix}", {}, True),
    (
        "\\begin{pmatrix} \\frac{1}{2} \\\\ 0.25 \\end{pmatrix}",
        "\\begin{pmatrix}0.5\\\\\\frac14\\end{pmatrix}",
        {},
        True,
    ),
    ("\\left(\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}\\right)", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", {}, True),
    ("\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", {}, True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", {}, False),
    ("\\begin{pmatrix} 1 & 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", {}, False),  # shape
    ("\\begin{pmatrix} x \\\\ 2 \\end{pmatrix}", "\\begin{bmatrix}x\\\\2\\end{bmatrix}", {}, True),  # symbolic
    # precision on the parts of tuples, intervals and matrices
    ("(1.234, 4.566)", "(1.23, 4.57)", {"precision": 2}, True),
    ("[1.234, 4.566)", "[1.23, 4.57)", {"precision": 2}, True),
    ("(1.234, 4.566, 7)", "(1.23, 4.57, 7)", {"precision": 2}, True),
    ("(4.566, 1.234)", "(4.57, 1.23)", {"precision": 2}, True),
    (
        "\\begin{pmatrix} 0.333 \\\\ 0.2 \\end{pmatrix}",
        "\\begin{pmatrix}\\frac13\\\\\\frac15\\end{pmatrix}",
        {"precision": 2},
        True,
    ),
    ("(1.25, 4.566)", "(1.23, 4.57)", {"precision": 2}, False),
    ("(1.234, 4.566)", "(1.23, 4.57)", {}, False),  # no precision: 6 decimals
    # units other than plain ASCII words
    ("€12", "12", {}, True),
    ("12€", "12", {}, True),
    ("£7.50", "7.5", {}, True),
    ("5 m²", "5", {}, True),
    ("5m²", "5", {}, True),
    ("250 milliliters (ml)", "250", {}, True),
    ("3 m³", "3", {}, True),
    ("6 m²", "5", {}, False),
    # \bmod, chains, e-notation
    ("17 \\bmod 5 = 2", "2", {}, True),
    ("17 \\bmod 5", "2", {}, True),
    ("17 \\bmod 5", "3", {}, False),
    ("x = 3 + 4 = 7", "7", {}, True),
    ("1e4", "10000", {}, True),
    ("1.5e-3", "0.0015", {}, True),
    ("2E3", "2000", {}, True),
    ("1e3", "10000", {}, False),
    # Unicode math, approximation signs, units in \text{} after symbolic answers
    ("−3", "-3", {}, True),
    ("√2", "\\sqrt{2}", {}, True),
    ("2√3", "\\sqrt{12}", {}, True),
    ("(−∞, 3]", "(-\\infty, 3]", {}, True),
    ("x²+1", "x^2+1", {}, True),
    ("½", "0.5", {}, True),
    ("2π", "2\\pi", {}, True),
    ("√2", "\\sqrt{3}", {}, False),
    ("\\approx 3.14", "3.14", {}, True),
    ("≈ 3.14", "3.15", {}, False),
    ("2\\pi\\text{ rad}", "2\\pi", {}, True),
    ("6\\sqrt{2}\\text{ cm}^2", "\\sqrt{72}", {}, True),
    ("\\frac{\\pi}{4}\\text{ radians}", "\\frac{\\pi}{3}", {}, False),
    ("1e-3", "10^{-3}", {}, True),
    # repeating decimals
    ("0.\\overline{3}", "\\frac{1}{3}", {}, True),
    ("3.\\overline{27}", "\\frac{36}{11}", {}, True),
    ("0.1\\overline{6}", "\\frac{1}{6}", {}, True),
    ("0.\\overline{3}", "0.33", {}, False),
]

# (answer, gold, kwargs, label): graded as written only
ONE_WAY = [
    ("1", "A:B=1", {}, True),  # a ratio ground truth is no option letter
    ("A", "A:B=1", {}, False),
    ("A:B", "A", {}, False),
    ("185", "185\\", {}, True),  # a stray trailing backslash
    ("185\\ ", "185", {}, True),
]

HEDGES_NUMBER = [
    "12 or 14",
    "14 or 12",
    "12, 14",
    "14, 12",
    "\\pm 12",
    "12 \\pm 2",
    "\\{12, 14\\}",
    "12 \\text{ or } 14",
    "x = 12 \\text{ or } x = 14",
    "12 \\text{ and } 14",
    "12, 14, 16",
    "(12, 14)",
    "12; 14",
    "12 / 14",
    "12 or fourteen",
    "12 cm or more",
    "12 apples or pears",
    "12 and more",
    "12 plus 2",
    "12\\text{ or more}",
    "12\\text{ or } 14\\text{ cm}",
    "12–14",
]
HEDGES_LETTER = [
    "A or B",
    "B or A",
    "A, B",
    "B, A",
    "AB",
    "ABCD",
    "A, B, C, D",
    "A B C D",
    "(A) or (B)",
    "(A), (B)",
    "(A)(B)",
    "(A) (B)",
    "A) 3 cm; B) 5 cm",
    "A. 3 cm or B. 5 cm",
    "(A) 3 cm (B) 5 cm",
    "A. or B.",
    "A: or B",
    "A and B",
    "A/B",
    "A:B",
    "A \\text{ or } B",
    "\\text{(A) or (B)}",
    "Option A or option B",
    "(a) or (b)",
    "A \\lor B",
    "A \\vee B",
]
BLANKS = ["", " ", "\\ ", "\\quad", "\\text{}", "{}", "\\text{ }", "$ $"]


@pytest.mark.parametrize("answer,gold,kwargs,label", SYMMETRIC)
def test_failure_class_both_ways(answer, gold, kwargs, label) -> None:
    v = grade(f"\\boxed{{{answer}}}", gold, **kwargs)
    assert v.correct is label, v
    w = grade(f"\\boxed{{{gold}}}", answer, **kwargs)
    assert w.correct is label, w


@pytest.mark.parametrize("answer,gold,kwargs,label", ONE_WAY)
def test_failure_class_one_way(answer, gold, kwargs, label) -> None:
    v = grade(f"\\boxed{{{answer}}}", gold, **kwargs)
    assert v.correct is label, v


@pytest.mark.parametrize("hedge", HEDGES_NUMBER)
def test_number_hedges_get_nothing(hedge) -> None:
    for answer, gold in ((hedge, "12"), ("12", hedge)) if "\\pm" not in hedge else ((hedge, "12"),):
        v = grade(f"\\boxed{{{answer}}}", gold)
        assert not v.correct, v
    assert reward(f"\\boxed{{{hedge}}}", "12").value <= 0.0


@pytest.mark.parametrize("choices", [None, MC4], ids=["no-options", "options"])
@pytest.mark.parametrize("hedge", HEDGES_LETTER)
def test_letter_hedges_get_nothing(hedge, choices) -> None:
    v = grade(f"\\boxed{{{hedge}}}", "A", choices)
    assert not v.correct, v
    assert reward(f"\\boxed{{{hedge}}}", "A", choices=choices).value <= 0.0


def test_every_option_listed_gets_nothing() -> None:
    for gold in "ABCD":
        assert not grade("\\boxed{A, B, C, D}", gold, MC4).correct
        assert not grade("\\boxed{" + "; ".join(f"{L}) {t}" for L, t in zip("ABCD", MC4)) + "}", gold, MC4).correct
        assert not grade("\\boxed{" + ", ".join(MC4) + "}", gold, MC4).correct


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize("gold", ["5", "B", "\\frac{1}{2}", "yes", "0", " "])
def test_empty_or_blank_box_gets_nothing(blank, gold) -> None:
    v = grade(f"\\boxed{{{blank}}}", gold)
    assert not v.correct, v
    assert reward(f"\\boxed{{{blank}}}", gold).value <= 0.0


def test_letters_with_their_own_text_still_count() -> None:
    # the hedge rule only refuses a second option, not an option's own text
    assert grade("\\boxed{A: point A}", "A", ["point A", "point B"]).correct
    assert not grade("\\boxed{B: point B}", "A", ["point A", "point B"]).correct
    for answer in ("(C) I and III", "(C) I and III only", "C. Vitamin A", "(C) point B"):
        assert grade(f"\\boxed{{{answer}}}", "C").correct, answer
        assert not grade(f"\\boxed{{{answer}}}", "B").correct, answer
    # an option text that itself joins two letters counts only when it is that option's text
    options = ["A only", "B only", "both A and B", "neither"]
    assert grade("\\boxed{(C) both A and B}", "C", options).correct
    assert not grade("\\boxed{(C) both A and B}", "C").correct
    for answer in ("A", "(A)", "A.", "A. 3 cm", "A: 3 cm", "(A) 3 cm", "Answer: (A)", "\\text{A}"):
        assert grade(f"\\boxed{{{answer}}}", "A", MC4).correct, answer
    # a capital after a number is a unit, not a second option
    for answer in ("(B) 12 N", "B: 3 A", "B. 2 C", "(B) 4 V"):
        assert grade(f"\\boxed{{{answer}}}", "B").correct, answer
        assert not grade(f"\\boxed{{{answer}}}", "A").correct, answer


def test_gold_letters_are_trusted() -> None:
    # the second-option rule is for answers; a ground truth's option text may name points
    assert grade("\\boxed{C}", "C. \\angle A = 30^\\circ").correct
    assert not grade("\\boxed{A}", "C. \\angle A = 30^\\circ").correct


def test_linear_equation_shortcut_agrees_with_math_verify() -> None:
    from math_verify import verify

    from rethinker.judge.symbolic import (
        _linear_equations_differ,
        _parse,
        linear_equations_compare,
        linear_equations_differ,
    )

    pairs = [
        ("y=2x+1", "y=2x-1"),
        ("y=2x+1", "2y=4x+2"),
        ("y=2x+1", "y-2x=1"),
        ("x+y=3", "y=3-x"),
        ("x+y=3", "x-y=3"),
        ("y=3x", "y=x+3"),
        ("2x+3y=6", "4x+6y=12"),
        ("y=x^2", "y=x"),
        ("y=0.5x", "y=x/2"),
        ("x=2", "2x=4"),
        ("x=2", "x=3"),
        ("x+y+z=1", "z=1-x-y"),
        ("y=2x+1", "y=2x+1+z"),
    ]
    for g, p in pairs:
        gp, pp = _parse(g), _parse(p)
        if _linear_equations_differ(gp[0], pp[0]):
            assert not verify(gp, pp), (g, p)
    assert _linear_equations_differ(_parse("y=2x+1")[0], _parse("y=2x-1")[0])
    assert not _linear_equations_differ(_parse("y=2x+1")[0], _parse("2y=4x+2")[0])
    # the same rule on the strings, before any parsing
    for g, p in pairs:
        if linear_equations_differ(g, p):
            assert not verify(_parse(g), _parse(p)), (g, p)
    assert linear_equations_differ("y=2x+1", "y = 2 x - 1") and linear_equations_differ("x+y=3", "x-y=3")
    for g, p in (("y=2x+1", "2y=4x+2"), ("y=2x+1", "y=x^2"), ("y=2x", "y=2t"), ("y=ex", "y=2x"), ("y=x", "y=x+y-y")):
        assert not linear_equations_differ(g, p), (g, p)
    # equal up to sign: correct, as math-verify says; a multiple is left to math-verify
    for g, p in (("y=2x+1", "y=1+2x"), ("y=2x+1", "2x+1=y"), ("x=6", "6=x"), ("x+y=3", "3-y=x")):
        assert linear_equations_compare(g, p) == "correct" and verify(_parse(g), _parse(p)), (g, p)
    assert linear_equations_compare("x=6", "3x=18") is None and not grade("\\boxed{3x=18}", "x=6").correct


def test_spacing_normalization() -> None:
    assert clean_latex("10,\\!000") == "10,000"
    assert clean_latex("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}") == "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"
    assert clean_latex("1\\,000") == "1 000"
    assert clean_latex("185\\") == "185"
