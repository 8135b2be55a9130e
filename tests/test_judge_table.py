"""Table-driven judge tests: each case asserts the exact verdict and its reason.

Cases are (response, ground truth, keyword arguments, correct, reason). ``B(x)`` wraps
``x`` in a short response ending in ``\\boxed{x}``.
"""

from __future__ import annotations

import pytest

from rethinker.judge import EVAL_RULES, TRAIN_RULES, extract, extract_answer, grade, is_correct


def B(content: str) -> str:
    return f"Let me work it out step by step.\nSo the result is \\boxed{{{content}}}."


OK, NO = (True, "correct"), (False, "mismatch")
MC4 = ["3 cm", "5 cm", "7 cm", "9 cm"]
MC_TXT = ["dog", "cat", "bird", "fish"]
MC_MATH = ["\\frac{1}{2}", "2\\sqrt{3}", "\\pi", "4"]
MC_NUM = ["12", "15", "18", "21"]

CASES = [
    # --- fractions, decimals, \frac forms -------------------------------------------
    ("frac-vs-decimal", B("0.5"), "\\frac{1}{2}", {}, *OK),
    ("decimal-vs-frac", B("\\frac{1}{2}"), "0.5", {}, *OK),
    ("frac12-short", B("\\frac12"), "0.5", {}, *OK),
    ("dfrac", B("\\dfrac{1}{2}"), "\\frac{1}{2}", {}, *OK),
    ("tfrac", B("\\tfrac{3}{4}"), "0.75", {}, *OK),
    ("slash-frac", B("3/4"), "\\frac{3}{4}", {}, *OK),
    ("neg-frac", B("-\\frac{2}{3}"), "-2/3", {}, *OK),
    ("frac-neg-num", B("\\frac{-2}{3}"), "-\\frac{2}{3}", {}, *OK),
    ("frac-unreduced", B("\\frac{4}{8}"), "\\frac{1}{2}", {}, *OK),
    ("frac-wrong", B("\\frac{1}{3}"), "\\frac{1}{2}", {}, *NO),
    ("decimal-6dp-of-third", B("0.333333"), "\\frac{1}{3}", {}, *OK),
    ("decimal-2dp-of-third", B("0.33"), "\\frac{1}{3}", {}, *NO),
    ("decimal-trailing-zero", B("2.50"), "2.5", {}, *OK),
    ("integer-as-float", B("3.0"), "3", {}, *OK),
    ("leading-dot", B(".5"), "0.5", {}, *OK),
    ("plus-sign", B("+7"), "7", {}, *OK),
    ("negative-int", B("-4"), "-4", {}, *OK),
    ("sign-wrong", B("4"), "-4", {}, *NO),
    ("int-wrong", B("41"), "42", {}, *NO),
    ("int-right", B("42"), "42", {}, *OK),
    ("ground-truth-boxed", B("42"), "\\boxed{42}", {}, *OK),
    ("ground-truth-boxed-frac", B("0.25"), "\\boxed{\\frac{1}{4}}", {}, *OK),
    ("ground-truth-boxed-wrong", B("0.3"), "\\boxed{\\frac{1}{4}}", {}, *NO),
    ("sci-notation", B("1.5 \\times 10^{3}"), "1500", {}, *OK),
    ("sci-notation-wrong", B("1.5 \\times 10^{4}"), "1500", {}, *NO),
    # --- radicals and symbolic equivalence -------------------------------------------
    ("sqrt-equiv", B("2\\sqrt{3}"), "\\sqrt{12}", {}, True, "correct"),
    ("sqrt-equiv-rev", B("\\sqrt{12}"), "2\\sqrt{3}", {}, True, "correct"),
    ("sqrt-wrong", B("3\\sqrt{2}"), "2\\sqrt{3}", {}, False, "mismatch"),
    ("sqrt-vs-decimal", B("3.464102"), "2\\sqrt{3}", {}, True, "correct"),
    ("sqrt-vs-rough-decimal", B("3.46"), "2\\sqrt{3}", {}, False, "mismatch"),
    ("pi-frac", B("\\frac{\\pi}{2}"), "\\frac{\\pi}{2}", {}, *OK),
    ("pi-frac-equiv", B("\\frac{2\\pi}{4}"), "\\frac{\\pi}{2}", {}, True, "correct"),
    ("pi-wrong", B("\\frac{\\pi}{3}"), "\\frac{\\pi}{2}", {}, False, "mismatch"),
    ("poly-expanded", B("x^2+2x+1"), "(x+1)^2", {}, True, "correct"),
    ("poly-wrong", B("x^2+1"), "(x+1)^2", {}, False, "mismatch"),
    ("expr-reordered", B("1+2x"), "2x+1", {}, True, "correct"),
    ("sqrt-frac", B("\\frac{\\sqrt{3}}{2}"), "\\frac{\\sqrt{3}}{2}", {}, *OK),
    ("sqrt-frac-rationalized", B("\\frac{1}{\\sqrt{2}}"), "\\frac{\\sqrt{2}}{2}", {}, True, "correct"),
    ("exponent-numeric", B("2^{10}"), "1024", {}, True, "correct"),
    ("log-equiv", B("\\log_2 8"), "3", {}, True, "correct"),
    # --- percentages -----------------------------------------------------------------
    ("pct-vs-pct", B("50\\%"), "50\\%", {}, *OK),
    ("pct-vs-number", B("50\\%"), "50", {}, *OK),
    ("number-vs-pct", B("50"), "50\\%", {}, *OK),
    ("pct-vs-fraction", B("50\\%"), "0.5", {}, *OK),
    ("pct-plain-sign", B("25%"), "25", {}, *OK),
    ("pct-decimal", B("12.5\\%"), "12.5", {}, *OK),
    ("pct-wrong", B("40\\%"), "50", {}, *NO),
    ("pct-strict-number", B("50\\%"), "50", {"allow_percent": False}, *NO),
    ("pct-strict-fraction", B("50\\%"), "0.5", {"allow_percent": False}, *OK),
    ("pct-word", B("30 percent"), "30", {}, *OK),
    # --- intervals and sets ------------------------------------------------------------
    ("interval-same", B("[1,2)"), "[1,2)", {}, *OK),
    ("interval-spaces", B("[1, 2)"), "[1,2)", {}, *OK),
    ("interval-open-closed", B("(1,2]"), "[1,2)", {}, False, "mismatch"),
    ("interval-infinite", B("(-\\infty, 3]"), "(-\\infty,3]", {}, *OK),
    ("interval-union", B("(-\\infty,1)\\cup(2,\\infty)"), "(-\\infty,1)\\cup(2,\\infty)", {}, *OK),
    ("set-reordered", B("\\{3,1,2\\}"), "\\{1,2,3\\}", {}, True, "correct"),
    ("set-wrong", B("\\{1,2\\}"), "\\{1,2,3\\}", {}, False, "mismatch"),
    ("emptyset-varnothing", B("\\varnothing"), "\\emptyset", {}, *OK),
    ("emptyset-reverse", B("\\emptyset"), "\\varnothing", {}, *OK),
    ("emptyset-vs-number", B("\\emptyset"), "0", {}, False, "mismatch"),
    ("tuple-point", B("(1, 2)"), "(1,2)", {}, *OK),
    ("tuple-point-wrong", B("(2,1)"), "(1,2)", {}, False, "mismatch"),
    # --- equations and assignments -----------------------------------------------------
    ("assign-vs-number", B("x=3"), "3", {}, *OK),
    ("assign-spaced", B("x = 3"), "3", {}, *OK),
    ("number-vs-assign", B("3"), "x=3", {}, *OK),
    ("assign-both", B("x=3"), "x=3", {}, *OK),
    ("assign-other-var", B("y=3"), "x=3", {}, *NO),
    ("assign-wrong", B("x=4"), "3", {}, *NO),
    ("assign-approx", B("x \\approx 2.5"), "2.5", {}, *OK),
    ("line-equation", B("y=2x+1"), "y=1+2x", {}, True, "correct"),
    ("line-equation-wrong", B("y=2x-1"), "y=2x+1", {}, False, "mismatch"),
    ("theta-assign", B("\\theta = 45"), "45", {}, *OK),
    # --- degrees -----------------------------------------------------------------------
    ("degrees-circ", B("30^\\circ"), "30", {}, *OK),
    ("degrees-braced", B("30^{\\circ}"), "30", {}, *OK),
    ("degrees-both", B("30^\\circ"), "30^\\circ", {}, *OK),
    ("degrees-gold", B("30"), "30^{\\circ}", {}, *OK),
    ("degrees-symbol", B("30°"), "30", {}, *OK),
    ("degrees-word", B("30 degrees"), "30", {}, *OK),
    ("degrees-wrong", B("60^\\circ"), "30", {}, *NO),
    # --- units, thousands separators, \text wrappers ------------------------------------
    ("unit-cm", B("5 cm"), "5", {}, *OK),
    ("unit-text-cm", B("5\\text{ cm}"), "5", {}, *OK),
    ("unit-mathrm", B("5\\,\\mathrm{cm}"), "5", {}, *OK),
    ("unit-tight", B("5cm"), "5", {}, *OK),
    ("unit-both", B("12 minutes"), "12 minutes", {}, *OK),
    ("unit-gold-only", B("12"), "12 minutes", {}, *OK),
    ("unit-square", B("16 cm^2"), "16", {}, *OK),
    ("unit-words", B("4 square units"), "4", {}, *OK),
    ("unit-speed", B("60 km/h"), "60", {}, *OK),
    ("unit-wrong-number", B("6 cm"), "5", {}, *NO),
    ("variable-not-unit", B("5x"), "5", {}, False, "mismatch"),
    ("currency", B("\\$12.50"), "12.5", {}, *OK),
    ("thousands", B("1,000"), "1000", {}, *OK),
    ("thousands-gold", B("1000"), "1,000", {}, *OK),
    ("thousands-braced", B("1{,}234"), "1234", {}, *OK),
    ("thousands-decimal", B("12,345.5"), "12345.5", {}, *OK),
    ("thousands-wrong", B("1,000"), "100", {}, *NO),
    ("text-wrapper-number", B("\\text{42}"), "42", {}, *OK),
    ("textbf-wrapper", B("\\textbf{7}"), "7", {}, *OK),
    ("dollar-delims", B("$\\frac{1}{2}$"), "0.5", {}, *OK),
    ("left-right", B("\\left(1,2\\right)"), "(1,2)", {}, *OK),
    # --- multiple choice: letters ------------------------------------------------------
    ("mc-letter", B("B"), "B", {}, *OK),
    ("mc-paren", B("(B)"), "B", {}, *OK),
    ("mc-dot", B("B."), "B", {}, *OK),
    ("mc-colon-text", B("B: 5 cm"), "B", {}, *OK),
    ("mc-paren-text", B("(B) 5 cm"), "B", {}, *OK),
    ("mc-close-paren", B("B) 5 cm"), "B", {}, *OK),
    ("mc-option-word", B("Option B"), "B", {}, *OK),
    ("mc-text-wrapper", B("\\text{B}"), "B", {}, *OK),
    ("mc-lowercase", B("b"), "B", {}, *OK),
    ("mc-gold-paren", B("C"), "(C)", {}, *OK),
    ("mc-gold-boxed", B("D"), "\\boxed{D}", {}, *OK),
    ("mc-gold-letter-text", B("A"), "A. 3 cm", {}, *OK),
    ("mc-wrong-letter", B("C"), "B", {}, *NO),
    ("mc-wrong-paren", B("(C)"), "B", {}, *NO),
    ("mc-area-is-not-A", B("Area is 5"), "A", {}, *NO),
    ("mc-because-not-B", B("Because"), "B", {}, *NO),
    ("mc-article-A", B("A triangle"), "A", {}, *NO),
    ("mc-word-starting-with-letter", B("Cat"), "C", {}, *NO),
    ("mc-two-letters", B("A, B"), "A", {}, *NO),
    ("mc-number-no-choices", B("5"), "B", {}, *NO),
    # --- multiple choice with option texts ----------------------------------------------
    ("mc-choices-letter", B("B"), "B", {"choices": MC4}, *OK),
    ("mc-choices-text", B("5 cm"), "B", {"choices": MC4}, *OK),
    ("mc-choices-text-wrong", B("7 cm"), "B", {"choices": MC4}, *NO),
    ("mc-choices-number-of-text", B("5"), "B", {"choices": MC4}, *OK),
    ("mc-gold-text-pred-letter", B("B"), "5 cm", {"choices": MC4}, *OK),
    ("mc-gold-text-pred-wrong-letter", B("A"), "5 cm", {"choices": MC4}, *NO),
    ("mc-gold-text-pred-text", B("5 cm"), "5 cm", {"choices": MC4}, *OK),
    ("mc-words-text", B("Cat"), "B", {"choices": MC_TXT}, *OK),
    ("mc-words-letter-text", B("B. cat"), "B", {"choices": MC_TXT}, *OK),
    ("mc-words-wrong", B("dog"), "B", {"choices": MC_TXT}, *NO),
    ("mc-out-of-range", B("E"), "B", {"choices": MC4}, *NO),
    ("mc-letter-beats-text", B("B: 7 cm"), "B", {"choices": MC4}, *OK),
    ("mc-math-option-equiv", B("\\sqrt{12}"), "B", {"choices": MC_MATH}, True, "correct"),
    ("mc-math-option-decimal", B("0.5"), "A", {"choices": MC_MATH}, *OK),
    ("mc-math-option-wrong", B("0.5"), "B", {"choices": MC_MATH}, *NO),
    ("mc-numeric-options", B("18"), "C", {"choices": MC_NUM}, *OK),
    ("mc-numeric-options-letter", B("(C)"), "18", {"choices": MC_NUM}, *OK),
    ("mc-answer-type", B("(A)"), "A", {"answer_type": "multiple_choice", "choices": MC4}, *OK),
    ("mc-unrelated-text", B("none of these"), "A", {"choices": MC4}, *NO),
    # --- precision (MathVista) ----------------------------------------------------------
    ("prec-round-up", B("1.449"), "1.45", {"precision": 2}, *OK),
    ("prec-exact", B("1.45"), "1.45", {"precision": 2}, *OK),
    ("prec-too-coarse", B("1.4"), "1.45", {"precision": 2}, *NO),
    ("prec-one-decimal", B("3.14159"), "3.1", {"precision": 1}, *OK),
    ("prec-zero", B("7.4"), "7", {"precision": 0}, *OK),
    ("prec-zero-wrong", B("7.6"), "7", {"precision": 0}, *NO),
    ("prec-fraction", B("\\frac{1}{3}"), "0.33", {"precision": 2}, *OK),
    ("prec-three", B("2.7183"), "2.718", {"precision": 3}, *OK),
    ("no-prec-needs-6dp", B("3.14159"), "3.1", {}, *NO),
    ("prec-integer-type", B("12"), "12", {"answer_type": "integer", "precision": None}, *OK),
    ("prec-float-type", B("0.30"), "0.3", {"answer_type": "float", "precision": 1}, *OK),
    ("prec-as-string", B("2.36"), "2.4", {"precision": "1"}, *OK),
    ("prec-radical", B("\\sqrt{2}"), "1.41", {"precision": 2}, True, "correct"),
    ("prec-pi", B("3\\pi"), "9.42", {"precision": 2}, True, "correct"),
    ("prec-pi-wrong", B("3\\pi"), "9.43", {"precision": 2}, False, "mismatch"),
    ("prec-symbol-not-number", B("x"), "1.41", {"precision": 2}, False, "mismatch"),
    # --- yes/no and short text -------------------------------------------------------------
    ("yes-case", B("Yes"), "yes", {}, True, "correct"),
    ("yes-period", B("Yes."), "Yes", {}, True, "correct"),
    ("yes-text", B("\\text{Yes}"), "yes", {}, True, "correct"),
    ("yes-bold", B("**yes**"), "Yes", {}, True, "correct"),
    ("no-vs-yes", B("No"), "Yes", {}, False, "mismatch"),
    ("yes-spaces", B("  yes  "), "Yes", {}, True, "correct"),
    ("text-colour", B("Red"), "red", {}, True, "correct"),
    ("text-colour-wrong", B("blue"), "red", {}, False, "mismatch"),
    ("text-multiword", B("Right  triangle"), "right triangle", {}, True, "correct"),
    ("text-multiword-wrong", B("acute triangle"), "right triangle", {}, False, "mismatch"),
    ("text-type", B("Tuesday"), "tuesday", {"answer_type": "text"}, True, "correct"),
    ("text-not-product", B("ba"), "ab", {}, False, "mismatch"),
    ("text-vs-number", B("five"), "5", {}, False, "mismatch"),
    ("number-vs-text", B("5"), "yes", {}, False, "mismatch"),
    ("text-quoted", B('"left"'), "left", {}, True, "correct"),
    # --- no answer / extraction rules --------------------------------------------------------
    ("no-box-train", "The answer is 5.", "5", {"rules": TRAIN_RULES}, False, "no_answer"),
    ("no-box-eval-answer-is", "The answer is 5.", "5", {"rules": EVAL_RULES}, True, "correct"),
    ("eval-answer-colon", "Work...\nAnswer: 12", "12", {"rules": EVAL_RULES}, True, "correct"),
    ("eval-answer-tag", "<think>hmm</think><answer>7</answer>", "7", {"rules": EVAL_RULES}, True, "correct"),
    ("eval-final-letter", "Comparing the options...\n\n(C)", "C", {"rules": EVAL_RULES}, True, "correct"),
    ("train-final-letter-ignored", "Comparing the options...\n\n(C)", "C", {"rules": TRAIN_RULES}, False, "no_answer"),
    ("empty-response", "", "5", {}, False, "no_answer"),
    ("none-response", None, "5", {}, False, "no_answer"),
    ("empty-box", "\\boxed{}", "5", {}, False, "no_answer"),
    ("unclosed-last-box", "\\boxed{4} then \\boxed{5", "5", {}, False, "no_answer"),
    ("last-box-wins", "\\boxed{4} no wait \\boxed{5}", "5", {}, True, "correct"),
    ("last-box-wins-wrong", "\\boxed{5} no wait \\boxed{4}", "5", {}, False, "mismatch"),
    ("fbox", "\\fbox{5}", "5", {}, True, "correct"),
    ("nested-braces", "\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", {}, True, "correct"),
    ("escaped-braces", "\\boxed{\\{1,2\\}}", "\\{1,2\\}", {}, True, "correct"),
    ("box-space", "\\boxed {9}", "9", {}, True, "correct"),
    ("box-in-dollars", "$\\boxed{9}$", "9", {}, True, "correct"),
    # --- parse errors ---------------------------------------------------------------------------
    ("unclosed-frac-in-box", B("\\frac{"), "\\sqrt{2}", {}, False, "no_answer"),
    ("unparseable-empty-frac", B("\\frac{}{}"), "\\sqrt{2}", {}, False, "parse_error"),
    ("unparseable-operators", B("2+*3"), "\\sqrt{2}", {}, False, "parse_error"),
    ("unparseable-env", B("\\begin{matrix}"), "\\sqrt{2}", {}, False, "parse_error"),
    ("refused-power-tower", B("9^{9^{9^{9}}}"), "\\sqrt{2}", {}, False, "parse_error"),
    ("refused-deep-nesting", B("{" * 40 + "1" + "}" * 40), "\\sqrt{2}", {}, False, "parse_error"),
    ("empty-gold", B("5"), "", {}, False, "parse_error"),
    ("huge-answer", B("1" * 2000), "1", {}, False, "parse_error"),
]


def test_enough_cases() -> None:
    assert len(CASES) >= 150
    assert len({c[0] for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case_id,response,gold,kwargs,correct,reason", CASES, ids=[c[0] for c in CASES])
def test_verdict(case_id, response, gold, kwargs, correct, reason) -> None:
    v = grade(response, gold, **kwargs)
    assert (v.correct, v.reason) == (correct, reason), v
    assert is_correct(response, gold, **kwargs) is correct


EXTRACT_CASES = [
    ("\\boxed{1} and \\boxed{2}", TRAIN_RULES, "2", "box"),
    ("\\boxed{\\frac{a}{b}}", TRAIN_RULES, "\\frac{a}{b}", "box"),
    ("\\boxed{{{x}}}", TRAIN_RULES, "{{x}}", "box"),
    ("\\boxed{a\\}b}", TRAIN_RULES, "a\\}b", "box"),
    ("\\boxed{5} ... \\fbox{6}", TRAIN_RULES, "6", "box"),
    ("\\boxedx{5}", TRAIN_RULES, None, None),
    ("no box here", TRAIN_RULES, None, None),
    ("the final answer is $3$.", EVAL_RULES, "3", "answer_is"),
    ("The answer is: 12 apples.\nDone", EVAL_RULES, "12 apples", "answer_is"),
    ("**Answer:** 4", EVAL_RULES, "4", "answer_colon"),
    ("<answer> x=2 </answer>", EVAL_RULES, "x=2", "answer_tag"),
    ("so...\n**B**", EVAL_RULES, "B", "final_letter"),
    ("so the shape is A triangle", EVAL_RULES, None, None),
    ("\\boxed{7}\nThe answer is 8", EVAL_RULES, "7", "box"),
]


@pytest.mark.parametrize("text,rules,answer,rule", EXTRACT_CASES)
def test_extract(text, rules, answer, rule) -> None:
    ex = extract(text, rules)
    assert (ex.answer, ex.rule) == (answer, rule)
    assert extract_answer(text, rules) == answer


def test_unknown_rule_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown extraction rule"):
        extract("\\boxed{1}", ("box", "guess"))


def test_verdict_carries_normalized_forms() -> None:
    v = grade(B("\\dfrac{1}{2}\\text{ cm}"), "\\boxed{\\frac{1}{2}}")
    assert v.extracted == "\\dfrac{1}{2}\\text{ cm}"
    assert v.pred == "\\frac{1}{2} cm"
    assert v.gold == "\\frac{1}{2}"
    assert v.rule == "box" and v.path == "numeric"
