"""math-verify behind a time bound that works in any thread, with a cache.

math-verify's own timeouts use ``signal.alarm``: whole seconds only, and only in the
main thread (elsewhere it raises). We always call it with its timeouts off and bound
the time ourselves:

1. ``screen`` refuses, before any parsing, what makes sympy run for minutes inside C
   code where no signal can interrupt it: answers over ``MAX_ANSWER_CHARS``, bracket
   nesting deeper than ``MAX_DEPTH``, integer literals over ``MAX_DIGITS`` digits, power
   towers (an exponent that itself holds ``^`` and a digit: ``9^{9^{9}}``), exponents
   whose integer literals total more than ``MAX_EXPONENT_DIGITS`` digits
   (``2^{99999}``, ``\\prod_{i=1}^{99999}``), and factorials of more than a literal
   up to ``MAX_FACTORIAL``. A refused answer is a ``parse_error``.
2. In the main thread a real-time interval timer (``setitimer``, sub-second) raises
   :class:`JudgeTimeout` at the deadline -> ``timeout``.
3. Off the main thread (``backend="auto"``) the comparison runs in a helper process
   (:mod:`rethinker.judge.helper`, started once, reused) that applies (2) in its own
   main thread; if it does not answer by the deadline plus a margin it is killed and
   restarted -> ``timeout``. ``backend="inline"`` instead runs in the calling thread
   with no preemption (screen only).

Only math-verify's LaTeX extraction is used (never its ``ExprExtractionConfig``, which
calls sympy's ``parse_expr``, i.e. ``eval``): nothing here evaluates model text as code.
Parsed ground truths and predictions are kept in LRU caches keyed by their string.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from functools import lru_cache

from .helper import helpers
from .normalize import MAX_ANSWER_CHARS

MAX_DEPTH = 12
MAX_DIGITS = 100
MAX_EXPONENT_DIGITS = 4
MAX_FACTORIAL = 1000

#: Outcomes of a symbolic comparison.
CORRECT, MISMATCH, PARSE_ERROR, TIMEOUT = "correct", "mismatch", "parse_error", "timeout"


class JudgeTimeout(BaseException):
    """Raised by the interval timer. A BaseException so that math-verify's and sympy's
    ``except Exception`` clauses do not swallow it."""


class _DropTimeoutDisabledWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutDisabledWarning())


# -- screening ----------------------------------------------------------------------
def _group_after(s: str, i: int) -> tuple[str, int]:
    """The exponent starting at ``s[i]``: a balanced ``{...}`` group or one token."""
    n = len(s)
    while i < n and s[i] == " ":
        i += 1
    if i >= n:
        return "", i
    if s[i] == "{":
        depth = 0
        j = i
        while j < n:
            if s[j] == "\\":
                j += 2
                continue
            if s[j] == "{":
                depth += 1
            elif s[j] == "}":
                depth -= 1
                if depth == 0:
                    return s[i + 1 : j], j + 1
            j += 1
        return s[i + 1 :], n
    j = i
    if s[j] == "\\":
        j += 1
        while j < n and s[j].isalpha():
            j += 1
        return s[i:j], j
    while j < n and (s[j].isdigit() or s[j] in "+-.") and (j == i or s[j] not in "+-"):
        j += 1
    return s[i : max(j, i + 1)], max(j, i + 1)


_INT_LITERAL = re.compile(r"(?<![\d.])\d+")


def _int_literals(s: str) -> list[str]:
    """Digit runs that are integers or integer parts (not the digits after a point)."""
    return _INT_LITERAL.findall(s)


def screen(latex: str) -> str | None:
    """Why ``latex`` must not reach sympy, or None when it may. Linear in its length
    (times the number of ``^``, bounded by the length cap)."""
    if len(latex) > MAX_ANSWER_CHARS:
        return f"answer longer than {MAX_ANSWER_CHARS} characters"
    depth = 0
    for c in latex:
        if c in "{([":
            depth += 1
            if depth > MAX_DEPTH:
                return f"brackets nested deeper than {MAX_DEPTH}"
        elif c in "})]":
            depth = max(depth - 1, 0)
    if any(len(d) > MAX_DIGITS for d in _int_literals(latex)):
        return f"number with more than {MAX_DIGITS} digits"
    s = latex.replace("**", "^")
    i = s.find("^")
    while i >= 0:
        exponent, end = _group_after(s, i + 1)
        rest = s[end:].lstrip()
        if ("^" in exponent and any(c.isdigit() for c in exponent)) or rest.startswith("^"):
            return "power tower"
        if sum(len(d) for d in _int_literals(exponent)) > MAX_EXPONENT_DIGITS:
            return f"exponent with more than {MAX_EXPONENT_DIGITS} digits"
        i = s.find("^", i + 1)
    i = s.find("!")
    while i >= 0:
        j = i
        while j > 0 and s[j - 1].isdigit():
            j -= 1
        operand = s[j:i]
        if (not operand and i > 0 and s[i - 1] in ")}]") or (operand and int(operand) > MAX_FACTORIAL):
            return f"factorial beyond {MAX_FACTORIAL}!"
        i = s.find("!", i + 1)
    return None


# -- deadline -----------------------------------------------------------------------
def signals_usable() -> bool:
    """True in the main thread of the main interpreter on a POSIX system."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`JudgeTimeout` in this (main) thread after ``seconds``; restores the
    previous SIGALRM handler and any running timer. A no-op where signals are unusable."""
    if not seconds or seconds <= 0 or not signals_usable():
        yield
        return

    def _on_alarm(signum, frame):  # noqa: ARG001
        raise JudgeTimeout()

    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:
            left = max(old_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


# -- math-verify --------------------------------------------------------------------
@lru_cache(maxsize=1)
def _mv():
    import math_verify
    from math_verify import LatexExtractionConfig

    return math_verify, [LatexExtractionConfig()]


def _parse(latex: str):
    math_verify, config = _mv()
    return math_verify.parse(
        "\\boxed{" + latex + "}",
        extraction_config=config,
        fallback_mode="no_fallback",
        parsing_timeout=None,
    )


_parse_gold = lru_cache(maxsize=8192)(_parse)
_parse_pred = lru_cache(maxsize=8192)(_parse)


def _rounded_value(expr, precision: int) -> float | None:
    """``round(float(expr), precision)`` for a real constant expression, else None."""
    try:
        if not getattr(expr, "is_number", False) or expr.free_symbols:
            return None
        value = complex(expr.evalf(30))
    except Exception:
        return None
    if abs(value.imag) > 1e-12 * max(1.0, abs(value.real)):
        return None
    return round(value.real, precision)


#: Points at which ``_clearly_different`` evaluates both sides (one value per symbol).
_PROBE_POINTS = ((0.5321, 1.2707, -0.8113), (-1.9043, 0.3371, 2.4419))


def _clearly_different(a, b) -> bool:
    """True when two sympy expressions (not relations, sets, tuples or matrices; no bare
    symbol; the same free symbols, at most three) take values farther apart than 1e-5
    (relative) at one of two fixed points. Equal expressions agree at every point where
    both are finite, and math-verify calls nothing equal that differs that much (its
    float rounding is 1e-6), so a True here is math-verify's ``False``, reached without
    ``simplify``. Any doubt (singular point, complex error, odd symbol) returns False."""
    from sympy import Expr, Symbol

    try:
        if not (isinstance(a, Expr) and isinstance(b, Expr)) or isinstance(a, Symbol) or isinstance(b, Symbol):
            return False
        syms = a.free_symbols
        if syms != b.free_symbols or len(syms) > 3 or not all(isinstance(s, Symbol) for s in syms):
            return False
        ordered_syms = sorted(syms, key=str)
        for point in _PROBE_POINTS:
            subs = {s: point[i] for i, s in enumerate(ordered_syms)}
            va, vb = complex(a.evalf(30, subs=subs)), complex(b.evalf(30, subs=subs))
            if not all(math.isfinite(x) for x in (va.real, va.imag, vb.real, vb.imag)):
                continue
            if abs(va - vb) > 1e-5 * max(1.0, abs(va), abs(vb)):
                return True
    except Exception:
        return False
    return False


def _linear_equations_differ(a, b) -> bool:
    """True when ``a`` and ``b`` are two linear equations (``Eq``, total degree 1 in the
    same free symbols, rational coefficients) that are not multiples of each other, so
    their solution sets differ and math-verify's comparison (``lhs - rhs`` equal or
    opposite, else ``solve`` both) is ``False``; reached without the slow ``solve``. Any
    doubt (floats, other relations, nonlinear terms) returns False."""
    from sympy import Eq, Poly, Rational

    try:
        if not (isinstance(a, Eq) and isinstance(b, Eq)):
            return False
        syms = a.free_symbols
        if syms != b.free_symbols or not 1 <= len(syms) <= 3:
            return False
        ordered_syms = sorted(syms, key=str)
        pa, pb = Poly(a.lhs - a.rhs, *ordered_syms), Poly(b.lhs - b.rhs, *ordered_syms)
        if pa.total_degree() != 1 or pb.total_degree() != 1:
            return False
        ca, cb = pa.as_dict(), pb.as_dict()
        if not all(isinstance(c, Rational) for c in (*ca.values(), *cb.values())):
            return False
        if set(ca) != set(cb):
            return True
        k = next(iter(ca))
        return any(ca[m] * cb[k] != cb[m] * ca[k] for m in ca)
    except Exception:
        return False


def compare_unbounded(gold: str, pred: str, precision: int | None = None) -> str:
    """math-verify verdict for two screened LaTeX strings, with no time bound of its own:
    ``correct``, ``mismatch`` or ``parse_error`` (either side parsed to nothing).

    With ``precision`` (a benchmark's decimals), a prediction that is a real constant
    (``\\sqrt{2}``, ``3\\pi``) is evaluated and rounded like a plain number would be:
    ``round(value, precision) == round(gold, precision)``."""
    math_verify, _ = _mv()
    g = _parse_gold(gold)
    if not g:
        return PARSE_ERROR
    p = _parse_pred(pred)
    if not p:
        return PARSE_ERROR
    if precision is not None:
        gv, pv = _rounded_value(g[0], precision), _rounded_value(p[0], precision)
        if gv is not None and pv is not None:
            return CORRECT if gv == pv else MISMATCH
    if (
        len(g) == 1
        and len(p) == 1
        and "%" not in gold
        and "%" not in pred
        and (_clearly_different(g[0], p[0]) or _linear_equations_differ(g[0], p[0]))
    ):
        return MISMATCH  # fast: no simplify (or solve) for answers that clearly differ
    return CORRECT if math_verify.verify(g, p, timeout_seconds=None) else MISMATCH


_WARM = False


def warm_up() -> None:
    """Import math-verify and run one comparison of each kind, so that one-time costs
    (ANTLR parser set-up, sympy's lazy imports: about a second) never count against a
    verdict's deadline."""
    global _WARM
    if not _WARM:
        for g, p in (("1", "1"), ("x^2+2x+1", "(x+1)^2"), ("\\{1,2\\}", "[1,2)")):
            try:
                compare_unbounded(g, p)
            except Exception:
                pass
        _WARM = True


def compare_here(gold: str, pred: str, timeout_s: float | None, precision: int | None = None) -> str:
    """Compare in this thread: preemptive deadline in the main thread, none elsewhere."""
    warm_up()
    start = time.monotonic()
    try:
        with deadline(timeout_s):
            result = compare_unbounded(gold, pred, precision)
    except JudgeTimeout:
        return TIMEOUT
    except RecursionError:
        return PARSE_ERROR
    if timeout_s and time.monotonic() - start > timeout_s:
        return TIMEOUT  # a library swallowed our exception; the deadline still counts
    return result


_LINEAR_TERM = re.compile(r"\s*([+-])?\s*(\d{1,6})?\s*([a-df-hj-z])?\s*")


def _linear_form(side: str) -> dict[str, Fraction] | None:
    """``2x + 3 - y`` -> {"x": 2, "": 3, "y": -1}: integer coefficients, single-letter
    variables (not ``e``, ``i``), terms joined by ``+``/``-``; None for anything else."""
    out: dict[str, Fraction] = {}
    pos, first, n = 0, True, len(side)
    if not side.strip():
        return None
    while pos < n:
        m = _LINEAR_TERM.match(side, pos)
        sign, num, var = m.groups()
        if m.end() == pos or (num is None and var is None) or (sign is None and not first):
            return None
        coef = Fraction(int(num)) if num else Fraction(1)
        key = var or ""
        out[key] = out.get(key, Fraction(0)) + (-coef if sign == "-" else coef)
        pos, first = m.end(), False
    return out


def _linear_equation(s: str) -> dict[str, Fraction] | None:
    """``lhs - rhs`` of a linear equation in the grammar of :func:`_linear_form`, with
    no variable cancelling out, or None."""
    if s.count("=") != 1:
        return None
    left, right = s.split("=")
    lf, rf = _linear_form(left), _linear_form(right)
    if lf is None or rf is None:
        return None
    f = dict(lf)
    for k, v in rf.items():
        f[k] = f.get(k, Fraction(0)) - v
    if any(k and v == 0 for k, v in f.items()) or not any(k for k in f):
        return None
    return {k: v for k, v in f.items() if v != 0}


def linear_equations_compare(gold: str, pred: str) -> str | None:
    """Two linear equations (:func:`_linear_equation`) in the same one to three
    variables, compared before any parsing: ``mismatch`` when they are not multiples of
    each other (:func:`_linear_equations_differ` on the strings: math-verify finds this
    with ``solve`` after a slow parse), ``correct`` when ``lhs - rhs`` agree up to sign
    (math-verify's first relational check), else None (math-verify decides: it calls
    ``3x = 18`` and ``x = 6`` different, so a restated equation earns nothing)."""
    f, g = _linear_equation(gold), _linear_equation(pred)
    if f is None or g is None:
        return None
    vf, vg = {k for k in f if k}, {k for k in g if k}
    if vf != vg or not 1 <= len(vf) <= 3:
        return None
    if f == g or f == {k: -v for k, v in g.items()}:
        return CORRECT
    if set(f) != set(g):
        return MISMATCH
    k = next(iter(f))
    return MISMATCH if any(f[m] * g[k] != g[m] * f[k] for m in f) else None


def linear_equations_differ(gold: str, pred: str) -> bool:
    """True when :func:`linear_equations_compare` finds a mismatch."""
    return linear_equations_compare(gold, pred) == MISMATCH


def compare(
    gold: str, pred: str, timeout_s: float | None = 1.0, backend: str = "auto", precision: int | None = None
) -> str:
    """Screen both sides, then compare within ``timeout_s`` seconds. ``backend``:
    ``auto`` (main thread: here; other threads: the sandbox process), ``inline`` (here,
    whatever thread), ``sandbox`` (always the helper process)."""
    for side in (gold, pred):
        if screen(side) is not None:
            return PARSE_ERROR
    if backend not in ("auto", "inline", "sandbox"):
        raise ValueError(f"unknown symbolic backend {backend!r}")
    fast = linear_equations_compare(gold, pred)
    if fast is not None:
        return fast  # no parse, no solve: two linear equations
    if backend == "sandbox" or (backend == "auto" and timeout_s and not signals_usable()):
        return _sandbox_compare(gold, pred, timeout_s, precision)
    return compare_here(gold, pred, timeout_s, precision)


# -- off the main thread: a helper process ------------------------------------------
#: Extra seconds the caller waits for the helper beyond the comparison's own timeout.
SANDBOX_MARGIN_S = 0.5


def _sandbox_compare(gold: str, pred: str, timeout_s: float | None, precision: int | None = None) -> str:
    helper = helpers("symbolic", 1)[0]
    answer = helper.request(
        {"op": "compare", "g": gold, "p": pred, "t": timeout_s, "n": precision},
        (timeout_s or 3600.0) + SANDBOX_MARGIN_S,
    )
    if not isinstance(answer, dict) or answer.get("r") not in (CORRECT, MISMATCH, PARSE_ERROR, TIMEOUT):
        return TIMEOUT
    return answer["r"]
