"""Fast path for intervals, sets and tuples whose entries are plain numbers.

Recognized forms (after ``clean_latex``):

- interval: ``[a, b)``, ``(a, b]``, ``(-\\infty, b)`` ... with a < b (``\\infty``,
  ``+\\infty``, ``-\\infty``, ``∞`` allowed as endpoints);
- set: ``\\{a, b, c\\}``;
- tuple / point: ``(a, b, c)``, and ``(a, b)`` when it is no interval (a >= b);
- matrix / column vector: ``\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}`` (also
  ``bmatrix``, ``Bmatrix``, ``matrix``, ``smallmatrix`` and ``array``; the bracket style
  does not matter, ``vmatrix`` is a determinant and is left to math-verify).

Two intervals are equal iff their brackets and endpoints are equal; two sets iff they
hold the same values; two tuples iff entries are equal in order; two matrices iff they
have the same shape and equal entries. Entries compare by the rules of
:func:`~rethinker.judge.numeric.numbers_equal`, with the benchmark's ``precision``
applied to every entry. Anything else (unions, empty or reversed intervals, symbolic
entries, a set against an interval ...) returns None and is left to math-verify, which
agrees with these rules on the forms recognized here.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .numeric import Num, numbers_equal, parse_number

_INF = re.compile(r"^([+-]?)\s*(?:\\infty|∞|\\inf|oo)$")
_INTERVAL = re.compile(r"^([\[(])([^,\[\]()]+),([^,\[\]()]+)([\])])$")
_SET = re.compile(r"^\\\{(.*)\\\}$")
_TUPLE = re.compile(r"^\(([^()]*)\)$")
_MATRIX = re.compile(
    r"^\\begin\{(pmatrix|bmatrix|Bmatrix|matrix|smallmatrix|array)\}(?:\{[lcr| ]*\})?(.*)\\end\{\1\}$", re.DOTALL
)


def _endpoint(s: str) -> Num | float | None:
    s = s.strip()
    m = _INF.match(s)
    if m:
        return float("-inf") if m.group(1) == "-" else float("inf")
    n = parse_number(s)
    return n if n is not None and not n.percent and n.var is None else None


def _value(e: Num | float) -> float | Fraction:
    return e if isinstance(e, float) else e.value


def parse_interval(s: str) -> tuple[str, Num | float, Num | float, str] | None:
    m = _INTERVAL.match(s.replace(" ", ""))
    if not m:
        return None
    a, b = _endpoint(m.group(2)), _endpoint(m.group(3))
    if a is None or b is None or not _value(a) < _value(b):
        return None
    return m.group(1), a, b, m.group(4)


def _entries(body: str) -> list[Num] | None:
    parts = [p for p in body.split(",")]
    if not parts or any(not p.strip() for p in parts):
        return None
    nums = [parse_number(p.strip()) for p in parts]
    if any(n is None or n.percent or n.var is not None for n in nums):
        return None
    return nums  # type: ignore[return-value]


def _eq(a: Num | float, b: Num | float, precision: int | None = None) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == b if isinstance(a, float) and isinstance(b, float) else False
    return numbers_equal(a, b, precision)


def parse_matrix(s: str) -> list[list[Num]] | None:
    """The rows of a matrix of plain numbers, or None."""
    s = s.strip()
    if s[:1] in "([" and s[-1:] in ")]" and s[1:].lstrip().startswith("\\begin"):
        s = s[1:-1].strip()  # "(\\begin{pmatrix}...\\end{pmatrix})": brackets around a matrix
    m = _MATRIX.match(s)
    if not m:
        return None
    body = m.group(2).strip()
    body = body.removesuffix("\\\\")
    rows = []
    for row in body.split("\\\\"):
        cells = [parse_number(c.strip()) for c in row.split("&")]
        if any(c is None or c.var is not None for c in cells):
            return None
        rows.append(cells)
    if not rows or len({len(r) for r in rows}) != 1:
        return None
    return rows  # type: ignore[return-value]


def compare_structured(pred: str, gold: str, precision: int | None = None) -> bool | None:
    """True/False when both sides are the same recognized form, else None. ``precision``:
    decimals every entry is rounded to (a benchmark's rule for its numbers)."""

    def eq(x: Num, y: Num) -> bool:
        return numbers_equal(x, y, precision)

    gi, pi = parse_interval(gold), parse_interval(pred)
    if gi is not None and pi is not None:
        return gi[0] == pi[0] and gi[3] == pi[3] and _eq(pi[1], gi[1], precision) and _eq(pi[2], gi[2], precision)
    gs, ps = _SET.match(gold.strip()), _SET.match(pred.strip())
    if gs and ps:
        g, p = _entries(gs.group(1)), _entries(ps.group(1))
        if g is None or p is None:
            return None
        return all(any(eq(x, y) for y in g) for x in p) and all(any(eq(x, y) for y in p) for x in g)
    gt, pt = _TUPLE.match(gold.strip()), _TUPLE.match(pred.strip())
    if gt and pt:
        g, p = _entries(gt.group(1)), _entries(pt.group(1))
        if g is None or p is None or len(g) < 2 or len(p) < 2:
            return None
        return len(g) == len(p) and all(eq(x, y) for x, y in zip(p, g))
    if "\\begin" in gold and "\\begin" in pred:
        gm, pm = parse_matrix(gold), parse_matrix(pred)
        if gm is None or pm is None:
            return None
        if len(gm) != len(pm) or len(gm[0]) != len(pm[0]):
            return False
        return all(eq(x, y) for pr, gr in zip(pm, gm) for x, y in zip(pr, gr))
    return None
