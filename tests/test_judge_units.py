"""Unit and property tests of the judge's parts: numbers, letters, screens, batches,
helper processes."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rethinker.judge import Verdict, grade, grade_many
from rethinker.judge.choice import gold_letter, match_option, parse_letter
from rethinker.judge.helper import helpers
from rethinker.judge.normalize import clean_latex, is_textual, norm_text, unbox
from rethinker.judge.numeric import numbers_equal, parse_number
from rethinker.judge.sets import compare_structured
from rethinker.judge.symbolic import screen


# -- numbers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,value,is_float,percent",
    [
        ("42", Fraction(42), False, False),
        ("-3/4", Fraction(-3, 4), False, False),
        ("\\frac{-2}{3}", Fraction(-2, 3), False, False),
        ("1,234,567", Fraction(1234567), False, False),
        ("2.50", Fraction(5, 2), True, False),
        ("12.5\\%", Fraction(25, 2), True, True),
        ("1.5 \\times 10^{3}", Fraction(1500), True, False),
        ("x = 7", Fraction(7), False, False),
        ("\\$3", Fraction(3), False, False),
        ("9 m/s", Fraction(9), False, False),
    ],
)
def test_parse_number(text, value, is_float, percent) -> None:
    n = parse_number(text)
    assert n is not None and (n.value, n.is_float, n.percent) == (value, is_float, percent)


@pytest.mark.parametrize("text", ["5x", "5 x", "2\\sqrt{3}", "1,2", "abc", "3/0", "\\frac{1}{0}", "", "1" * 300])
def test_not_a_plain_number(text) -> None:
    assert parse_number(text) is None


@settings(max_examples=60, deadline=None)
@given(st.integers(-10_000, 10_000), st.integers(1, 999))
def test_fraction_equals_its_decimal_and_not_its_neighbour(p: int, q: int) -> None:
    frac = f"\\frac{{{p}}}{{{q}}}"
    dec = f"{p / q:.6f}"
    assert grade(f"\\boxed{{{dec}}}", frac).correct
    assert grade(f"\\boxed{{{p}/{q}}}", frac).correct
    off = f"{p / q + 0.01:.6f}"
    v = grade(f"\\boxed{{{off}}}", frac)
    assert (v.correct, v.reason, v.path) == (False, "mismatch", "numeric")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_integers_with_separators(a: int, b: int) -> None:
    v = grade(f"\\boxed{{{a:,}}}", str(b))
    assert v.correct == (a == b) and v.path in ("numeric", "exact")


@settings(max_examples=60, deadline=None)
@given(st.floats(0.001, 1000, allow_nan=False), st.integers(0, 4))
def test_precision_is_mathvista_rounding(x: float, p: int) -> None:
    gold = f"{round(x, p):.{p}f}"
    assert grade(f"\\boxed{{{x!r}}}", gold, precision=p).correct
    assert numbers_equal(parse_number(repr(x)), parse_number(gold), precision=p)


def test_percent_rules() -> None:
    pct, half, fifty = parse_number("50\\%"), parse_number("0.5"), parse_number("50")
    assert numbers_equal(pct, half) and numbers_equal(pct, fifty)
    assert numbers_equal(pct, half, allow_percent=False) and not numbers_equal(pct, fifty, allow_percent=False)


# -- letters ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,letter",
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B: 5 cm", "B"),
        ("(B) 5", "B"),
        ("[C]", "C"),
        ("b", "B"),
        ("Option D", "D"),
        ("The answer is (A)", "A"),
        ("**C**", "C"),
        ("\\text{(A)}", "A"),
        ("Area is 5", None),
        ("A triangle", None),
        ("Because", None),
        ("AB", None),
        ("A, B", None),
        ("5", None),
        ("", None),
    ],
)
def test_parse_letter(text, letter) -> None:
    assert parse_letter(text) == letter


def test_letter_range_and_option_text() -> None:
    assert parse_letter("E", n_choices=4) is None
    assert match_option("5 CM", ["3 cm", "5 cm"]) == "B"
    assert match_option("5.0", ["3", "5"]) == "B"
    assert match_option("4", ["3", "5"]) is None
    assert gold_letter("5 cm", ["3 cm", "5 cm"], None) == "B"
    assert gold_letter("B", None, "integer") is None  # not a multiple-choice item
    assert gold_letter("x", None, None) is None  # a lone lowercase letter is a variable


# -- normalization, sets, screens ------------------------------------------------------------
def test_normalization() -> None:
    assert unbox("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert unbox("see \\boxed{1} then \\boxed{2}") == "2"
    assert clean_latex("$\\dfrac{1}{2}\\text{ cm}$.") == "\\frac{1}{2} cm"
    assert clean_latex("\\left( 30^{\\circ} \\right)") == "( 30 )"
    assert norm_text("**Yes.**") == "yes"
    assert is_textual("right triangle") and not is_textual("pi") and not is_textual("x") and not is_textual("2x")


@pytest.mark.parametrize(
    "pred,gold,same",
    [
        ("[1, 2)", "[1,2)", True),
        ("(1,2]", "[1,2)", False),
        ("(-\\infty,3]", "(-∞, 3]", True),
        ("\\{2,1\\}", "\\{1,2\\}", True),
        ("\\{1,2\\}", "\\{1,2,3\\}", False),
        ("(1,2,3)", "(1, 2, 3)", True),
        ("(3,2,1)", "(1,2,3)", False),
        ("(2,1)", "(1,2)", False),
        ("(2,1)", "(2,1.0)", True),
        ("[1,2]\\cup[3,4]", "[1,4]", None),
        ("\\{x, 1\\}", "\\{1, x\\}", None),
    ],
)
def test_structured(pred, gold, same) -> None:
    assert compare_structured(pred, gold) is same


@pytest.mark.parametrize(
    "latex,refused",
    [
        ("x^2+1", False),
        ("10^{23}", False),
        ("e^{-3}", False),
        ("5!", False),
        ("2^{0.5}", False),
        ("9^{9^{9}}", True),
        ("a^b^c", True),
        ("2^{99999}", True),
        ("1001!", True),
        ("(3)!", True),
        ("\\sqrt{" * 13 + "2" + "}" * 13, True),
        ("1" * 101, True),
        ("x" * 1001, True),
    ],
)
def test_screen(latex: str, refused: bool) -> None:
    assert (screen(latex) is not None) == refused


# -- batches -----------------------------------------------------------------------------------
ITEMS = [
    {"response": "\\boxed{5}", "ground_truth": "5"},
    {"response": "\\boxed{B}", "answer": "A", "choices": ["1", "2"]},  # "answer" as the ground-truth key
    ("\\boxed{1.449}", "1.45", None, "float", 2),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}"),
    ("no box", "5"),
]
EXPECTED = [(True, "correct"), (False, "mismatch"), (True, "correct"), (True, "correct"), (False, "no_answer")]


def test_grade_many_serial_and_in_workers() -> None:
    serial = grade_many(ITEMS)
    assert [(v.correct, v.reason) for v in serial] == EXPECTED
    pooled = grade_many(ITEMS * 3, workers=2, chunksize=2)
    assert pooled == serial * 3
    assert all(isinstance(v, Verdict) for v in pooled)


def test_grade_many_bad_items() -> None:
    with pytest.raises(TypeError, match="grade_many items"):
        grade_many(["just a string"])
    with pytest.raises(TypeError, match="grade_many items"):
        grade_many([("only one",)])


def test_helper_missing_its_deadline_is_killed_and_restarted() -> None:
    helper = helpers("symbolic", 1)[0]  # the shared one: later tests reuse the restarted process
    assert helper.request({"op": "compare", "g": "1", "p": "1", "t": 5}, 60.0) == {"r": "correct"}
    restarts = helper.restarts
    assert helper.request({"op": "compare", "g": "1", "p": "1", "t": 5}, 0.0) is None  # deadline missed
    assert helper.restarts == restarts + 1 and not helper.running
    assert helper.request({"op": "compare", "g": "2", "p": "1", "t": 5}, 60.0) == {"r": "mismatch"}
    assert helper.request({"op": "nonsense"}, 60.0) == {"error": "unknown op 'nonsense'"}


@pytest.mark.parametrize(
    "a,b,different",
    [
        ("4\\sqrt{7}", "\\sqrt{28}", True),
        ("(x+3)^2", "x^2+3x+9", True),
        ("(x+3)^2", "x^2+6x+9", False),
        ("\\pi", "3.14159", False),  # closer than the tolerance: left to math-verify
        ("\\frac{1}{x}", "\\frac{2}{2x}", False),
        ("x+1", "y+1", False),  # other symbols: left to math-verify
        ("x", "2x", False),
    ],  # a bare symbol: left to math-verify (it matches words to symbol products)
)
def test_numeric_probe(a: str, b: str, different: bool) -> None:
    from rethinker.judge.symbolic import _clearly_different, _parse

    assert _clearly_different(_parse(a)[0], _parse(b)[0]) is different
