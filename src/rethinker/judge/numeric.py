"""Fast path for plain numbers: parse, then compare exactly, without sympy.

A "plain number" is, after ``clean_latex``: an optional single-symbol assignment
(``x = ``) or a chain whose earlier sides are names or letter-free expressions
(``17 \\bmod 5 = 2``, ``x = 3 + 4 = 7``: the last side is the answer), an optional
approximation sign (``\\approx 3.14``), an optional currency sign (before or after),
then a signed integer or decimal (thousands separators ``1,000`` / ``1{,}000`` /
``1 000`` allowed), scientific notation (``m \\times 10^{k}``; ``clean_latex`` writes
``1.5e-3`` so), a fraction (``a/b``, ``\\frac{a}{b}``, ``\\frac12``), a repeating decimal
(``0.\\overline{3}`` is 1/3) or an integer remainder ``a \\bmod b``; then optionally
``%`` and a unit ("5 cm", "12 minutes", "3 m^2", "5 m²", "4 square units",
"250 milliliters (ml)"). Values are exact ``Fraction``s.

Comparison (pred vs gold), the same numbers math-verify would call equal:

- with ``precision`` p (MathVista): ``round(float(pred), p) == round(float(gold), p)``,
  the benchmark's own rule;
- else, when either side was written with a decimal point: both rounded to 6 decimals
  (math-verify's ``float_rounding=6``), so ``1/3 == 0.333333`` but ``1/3 != 0.33``;
- else exact equality (``0.5 == 1/2 == \\frac{1}{2}``, ``1,000 == 1000``).

Percent: with ``allow_percent`` (default) ``X%`` matches both ``X`` and ``X/100`` (so
``50\\% == 50 == 0.5``); without it ``X%`` means only ``X/100``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_VAR_PREFIX = re.compile(r"^(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?\s*(?:=|\\approx|≈)\s*")
_CURRENCY = re.compile(r"^(?:\\\$|\$|€|£|¥|₹|(?:Rs\.?|USD|EUR|GBP|INR|RMB|CNY)(?![A-Za-z]))\s*")
_APPROX = re.compile(r"^(?:\\approx|≈|\\sim)\s*")
_CURRENCY_AFTER = re.compile(r"\s*(?:\\\$|\$|€|£|¥|₹)$")
_PERCENT = re.compile(r"\s*(?:\\%|%|percent)$")

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d{1,3}(?: \d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
_DEC = re.compile(rf"^([+-])?\s*({_NUM})")
# a repeating decimal: 0.\overline{3} = 1/3, 3.1\overline{27}
_REPEATING = re.compile(r"^([+-])?\s*(\d*)\.(\d*)\s*\\overline\s*\{\s*(\d{1,12})\s*\}")
_MOD = re.compile(r"^([+-])?\s*(\d+)\s*\\(?:bmod|mod)\s*(\d+)")
_NAME = re.compile(r"^(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?$")
_FRAC_BRACED = re.compile(r"^([+-])?\s*\\frac\s*\{\s*([+-]?)\s*(\d+(?:\.\d+)?)\s*\}\s*\{\s*(\d+(?:\.\d+)?)\s*\}")
_FRAC_DIGITS = re.compile(r"^([+-])?\s*\\frac\s*(\d)\s*(\d)(?!\d)")
_SLASH = re.compile(r"^([+-])?\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")
_SCI = re.compile(r"^\s*(?:\\times|\\cdot|×|\*)\s*10\s*\^\s*\{?\s*([+-]?\d{1,3})\s*\}?")

_KNOWN_UNITS = (
    "mm|cm|dm|m|km|in|ft|yd|mi|mg|g|kg|t|lb|lbs|oz|ml|mL|l|L|s|sec|min|h|hr|hrs|"
    "N|J|W|kW|V|Pa|kPa|Hz|mph|kmh|rad|deg|units?"
)
_POWER = r"(?:\^\{?[23]\}?|[²³])"
# a word joining two answers is no unit: "12 or fourteen" is a hedge, not 12
_NOT_UNIT = r"(?!(?:or|and|nor|to|not|vs|versus|but|plus|minus)(?![A-Za-z]))"
_UNIT_WORD = rf"{_NOT_UNIT}[A-Za-z]+{_POWER}?"
# "5 cm", "12 minutes", "4 square units", "3 m/s", "60 km/h"; a lone letter after a
# space must be a known unit ("5 m"), so "5 x" is not the number 5
_UNIT_SPACED = re.compile(
    rf"^\s+{_NOT_UNIT}(?:(?:{_KNOWN_UNITS})(?![A-Za-z])|[A-Za-z]{{2,}}){_POWER}?"
    rf"(?:\s*/\s*{_UNIT_WORD}|\s+{_UNIT_WORD}){{0,3}}(?:\s*\({_UNIT_WORD}\))?$"
)
# "5cm", "3m^2", "10m/s" (no space: only known units, so "5x" stays an expression)
_UNIT_TIGHT = re.compile(rf"^(?:{_KNOWN_UNITS}){_POWER}?(?:\s*/\s*(?:{_KNOWN_UNITS}){_POWER}?)?$")


@dataclass(frozen=True)
class Num:
    """A parsed plain number: exact value, whether it was written as a decimal (or in
    scientific notation), whether it carried ``%``, and the assigned variable if any."""

    value: Fraction
    is_float: bool
    percent: bool
    var: str | None = None


def _dec(text: str) -> Fraction:
    return Fraction(text.replace(",", "").replace(" ", ""))


_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")


def _split_top_level(s: str, sep: str) -> list[str]:
    """``s`` split at each ``sep`` outside brackets and braces."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _last_side(s: str) -> tuple[str, str | None] | None:
    """For a chain ``a = b = c``: (``c``, the name ``a`` if it is one). None when an
    earlier side is neither a name nor free of letters (``x + y = 10`` is an equation,
    not the value 10)."""
    parts = [p.strip() for p in _split_top_level(s, "=")]
    if any(not p for p in parts):
        return None
    for p in parts[:-1]:
        if not (_NAME.match(p) or not re.search(r"[A-Za-z]", _LATEX_COMMAND.sub("", p))):
            return None
    return parts[-1], (parts[0] if _NAME.match(parts[0]) else None)


def parse_number(s: str) -> Num | None:
    """Parse ``s`` (already ``clean_latex``-ed) as a plain number, or None."""
    unwrapped = _unwrap(s)
    if unwrapped is None:
        return None
    return _parse_value(*unwrapped)


def _unwrap(s: str) -> tuple[str, bool, str | None] | None:
    """``s`` without what surrounds its number: ``(rest, percent, var)``, ``var`` the
    name of ``x = ...`` / ``x \\approx ...``; rest starts at the number. None: too long,
    empty, or an equation rather than a value."""
    s = s.strip().replace("{,}", ",")
    if not s or len(s) > 200:
        return None
    var = None
    if "=" in s:
        last = _last_side(s)
        if last is None:
            return None
        s, var = last
    m = _VAR_PREFIX.match(s)
    if m:
        var = m.group(0).split("=")[0].split("\\approx")[0].split("≈")[0].strip()
        s = s[m.end() :]
    s = _APPROX.sub("", s)
    s = _CURRENCY_AFTER.sub("", _CURRENCY.sub("", s))
    percent = False
    m = _PERCENT.search(s)
    if m:
        percent = True
        s = s[: m.start()]
    return s, percent, var


def _parse_value(s: str, percent: bool, var: str | None) -> Num | None:
    """The number at the start of ``s`` (a fraction, repeating decimal, ``a mod b``,
    decimal or scientific notation), followed by nothing but a unit; None otherwise."""
    is_float = False
    m = _FRAC_BRACED.match(s)
    if m:
        if Fraction(m.group(4)) == 0:
            return None
        sign = -1 if (m.group(1) == "-") != (m.group(2) == "-") else 1
        value = sign * Fraction(m.group(3)) / Fraction(m.group(4))
        is_float = "." in m.group(3) or "." in m.group(4)
        return _finish(value, is_float, percent, var, s[m.end() :])
    m = _REPEATING.match(s)
    if m:
        whole, head, rep = m.group(2) or "0", m.group(3), m.group(4)
        value = Fraction(int(whole)) + Fraction(int(head or "0"), 10 ** len(head))
        value += Fraction(int(rep), 10 ** len(head) * (10 ** len(rep) - 1))
        return _finish(-value if m.group(1) == "-" else value, False, percent, var, s[m.end() :])
    m = _MOD.match(s)
    if m:
        if int(m.group(3)) == 0:
            return None
        a = int(m.group(2)) * (-1 if m.group(1) == "-" else 1)
        return _finish(Fraction(a % int(m.group(3))), False, percent, var, s[m.end() :])
    m = _FRAC_DIGITS.match(s) or _SLASH.match(s)
    if m:
        if Fraction(m.group(3)) == 0:
            return None
        value = Fraction(m.group(2)) / Fraction(m.group(3))
        if m.group(1) == "-":
            value = -value
        is_float = "." in m.group(2) or "." in m.group(3)
        return _finish(value, is_float, percent, var, s[m.end() :])
    m = _DEC.match(s)
    if not m:
        return None
    value = _dec(m.group(2))
    if m.group(1) == "-":
        value = -value
    is_float = "." in m.group(2)
    rest = s[m.end() :]
    sci = _SCI.match(rest)
    if sci:
        value *= Fraction(10) ** int(sci.group(1))
        is_float = True
        rest = rest[sci.end() :]
    return _finish(value, is_float, percent, var, rest)


def _finish(value: Fraction, is_float: bool, percent: bool, var: str | None, rest: str) -> Num | None:
    if rest.strip() and not (_UNIT_SPACED.match(rest) or _UNIT_TIGHT.match(rest.strip())):
        return None
    return Num(value, is_float, percent, var)


def _candidates(n: Num, allow_percent: bool) -> list[Fraction]:
    if not n.percent:
        return [n.value]
    return [n.value, n.value / 100] if allow_percent else [n.value / 100]


def _round_float(x: Fraction, p: int) -> float | Fraction:
    try:
        return round(float(x), p)
    except OverflowError:
        return round(x, p)


def numbers_equal(pred: Num, gold: Num, precision: int | None = None, allow_percent: bool = True) -> bool:
    """See the module docstring for the rule."""
    if pred.var is not None and gold.var is not None and pred.var != gold.var:
        return False
    use_float = pred.is_float or gold.is_float
    for a in _candidates(pred, allow_percent):
        for b in _candidates(gold, allow_percent):
            if precision is not None:
                if _round_float(a, precision) == _round_float(b, precision):
                    return True
            elif use_float:
                if round(a, 6) == round(b, 6):
                    return True
            elif a == b:
                return True
    return False
