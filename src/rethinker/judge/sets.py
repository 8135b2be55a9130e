"""Fast path for intervals, sets and tuples whose entries are plain numbers.

Recognized forms (after ``clean_latex``):

- interval: ``[a, b)``, ``(a, b]``, ``(-\\infty, b)`` ... with a < b (``\\infty``,
  ``+\\infty``, ``-\\infty``, ``∞`` allowed as endpoints);
- set: ``\\{a, b, c\\}``;
- tuple / point with three or more entries: ``(a, b, c)``.

Two intervals are equal iff their brackets and endpoints are equal; two sets iff they
hold the same values; two tuples iff entries are equal in order. Entries compare by the
rules of :func:`~rethinker.judge.numeric.numbers_equal`. Anything else (unions, empty or
reversed intervals, symbolic entries, a set against an interval ...) returns None and is
left to math-verify, which agrees with these rules on the forms recognized here.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .numeric import Num, numbers_equal, parse_number

_INF = re.compile(r"^([+-]?)\s*(?:\\infty|∞|\\inf|oo)$")
_INTERVAL = re.compile(r"^([\[(])([^,\[\]()]+),([^,\[\]()]+)([\])])$")
_SET = re.compile(r"^\\\{(.*)\\\}$")
_TUPLE = re.compile(r"^\(([^()]*)\)$")


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


def _eq(a: Num | float, b: Num | float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == b if isinstance(a, float) and isinstance(b, float) else False
    return numbers_equal(a, b)


def compare_structured(pred: str, gold: str) -> bool | None:
    """True/False when both sides are the same recognized form, else None."""
    gi, pi = parse_interval(gold), parse_interval(pred)
    if gi is not None and pi is not None:
        return gi[0] == pi[0] and gi[3] == pi[3] and _eq(pi[1], gi[1]) and _eq(pi[2], gi[2])
    gs, ps = _SET.match(gold.strip()), _SET.match(pred.strip())
    if gs and ps:
        g, p = _entries(gs.group(1)), _entries(ps.group(1))
        if g is None or p is None:
            return None
        return all(any(numbers_equal(x, y) for y in g) for x in p) and all(any(numbers_equal(x, y) for y in p) for x in g)
    gt, pt = _TUPLE.match(gold.strip()), _TUPLE.match(pred.strip())
    if gt and pt:
        g, p = _entries(gt.group(1)), _entries(pt.group(1))
        if g is None or p is None or len(g) < 3 or len(p) < 3:
            return None
        return len(g) == len(p) and all(numbers_equal(x, y) for x, y in zip(p, g))
    return None
