"""Canonical forms of an answer string, shared by every comparison path.

``clean_latex`` is the released code's normalization (``\\dfrac`` -> ``\\frac``,
``\\text`` removed, ``\\varnothing`` -> ``\\emptyset``) plus the obvious LaTeX noise:
Unicode math (``−``, ``∞``, ``π``, ``√2``, ``²``, ``½`` ...) as LaTeX, ``1e4`` as
``1 \\times 10^{4}``,
math delimiters, ``\\left``/``\\right``, spacing commands (``\\!``, a negative space,
joins its neighbours: ``10,\\!000`` is ``10,000``; a matrix row break ``\\\\`` is never
read as a space command), ``\\displaystyle``, degree marks (``30^\\circ`` means 30), a
stray trailing backslash and a trailing period. ``norm_text`` adds case folding and
markdown/quote stripping for word answers. Units are removed only next to a number (see
``numeric``), never from a word answer ("5 cm" is 5; "cm" stays "cm").

All functions are linear-time on inputs of at most ``MAX_ANSWER_CHARS`` characters; the
grader refuses longer answers before calling them.
"""

from __future__ import annotations

import re

from .extract import balanced_from, last_boxed

#: Longest answer (or ground truth) the grader normalizes or parses; longer is refused.
MAX_ANSWER_CHARS = 1000

_WRAPPER = re.compile(
    r"\\(?:text|textbf|textit|textrm|textsf|texttt|mathrm|mathbf|mathit|mathsf|mbox|boldsymbol|operatorname)\s*\{"
)
# a spacing command; ``\\\\`` (a matrix row break) is matched first so that the
# ``\\ `` inside ``\\\\ 2`` is never read as a space command; ``\\!`` (a negative
# thin space, as in ``10,\\!000``) joins its neighbours
_SPACING = re.compile(r"\\\\|\s*\\!\s*|\\[,;: ]|\\quad|\\qquad|~")


def _spacing(m: re.Match) -> str:
    t = m.group(0)
    if t == "\\\\":
        return t
    return "" if "!" in t else " "


_LEFT_RIGHT = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])\s*")
# a degree mark, with the Celsius/Fahrenheit letter after it ("120^\\circ C", "30°F")
_DEGREE = re.compile(r"(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\degree(?![A-Za-z]))(?:\s*[CF](?![A-Za-z]))?")
_WS = re.compile(r"\s+")
# Unicode math that models write, as the LaTeX it stands for (not the en dash: "12–14"
# is a range, not a subtraction)
_UNICODE = str.maketrans(
    {
        "−": "-",
        "∞": "\\infty ",
        "π": "\\pi ",
        "×": "\\times ",
        "÷": "\\div ",
        "·": "\\cdot ",
        "≤": "\\le ",
        "≥": "\\ge ",
        "≠": "\\ne ",
        "²": "^2",
        "³": "^3",
        "½": "\\frac{1}{2}",
        "¼": "\\frac{1}{4}",
        "¾": "\\frac{3}{4}",
    }
)
_ROOT = re.compile(r"√\s*(\d+(?:\.\d+)?|[A-Za-z]|\{[^{}]*\}|\([^()]*\))")
# scientific notation as calculators and programs write it (1e4, 1.5E-3): digits on both
# sides of the e, so 2e (twice Euler's number) stays as it is
_E_NOTATION = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([+-]?\d{1,3})(?![\w.])")


def unbox(text: str) -> str:
    """A ground truth written as ``\\boxed{X}`` (ViRL39K's style) -> ``X``; otherwise the
    text unchanged. Only the last box counts, as for responses."""
    if "\\boxed" in text or "\\fbox" in text:
        inner = last_boxed(text)
        if inner is not None:
            return inner.strip()
    return text.strip()


def unwrap_text_commands(s: str) -> str:
    """``\\text{cm}`` -> ``cm`` (also ``\\textbf``, ``\\mathrm``, ``\\mbox`` ...), braces
    balanced; an unclosed wrapper is left as it is."""
    out = []
    pos = 0
    while True:
        m = _WRAPPER.search(s, pos)
        if m is None:
            out.append(s[pos:])
            return "".join(out)
        inner = balanced_from(s, m.end() - 1)  # the wrapper's argument, braces balanced
        if inner is None:
            out.append(s[pos:])
            return "".join(out)
        end = m.end() - 1 + len(inner) + 1
        out.append(s[pos : m.start()])
        out.append(s[m.end() : end])
        pos = end + 1


def _strip_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s


def clean_latex(s: str) -> str:
    """The canonical LaTeX form used for exact comparison and handed to math-verify."""
    s = _strip_delimiters(s)
    if "√" in s:
        s = _ROOT.sub(lambda m: "\\sqrt{" + m.group(1).strip("{}()") + "}", s)
    s = s.translate(_UNICODE)
    s = _E_NOTATION.sub(r"\1 \\times 10^{\2}", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\varnothing", "\\emptyset").replace("\\displaystyle", "")
    s = unwrap_text_commands(s)
    s = _DEGREE.sub("", s)
    s = _LEFT_RIGHT.sub("", s)
    s = _SPACING.sub(_spacing, s)
    s = _WS.sub(" ", s).strip()
    if s.endswith("\\") and (len(s) - len(s.rstrip("\\"))) % 2:
        s = s[:-1].rstrip()  # a stray trailing backslash ("185\\")
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    return _strip_delimiters(s)


_MD = re.compile(r"^[\s*_\"'`]+|[\s*_\"'`]+$")


def norm_text(s: str) -> str:
    """Word-answer form: clean_latex, then markdown/quotes and ``$`` dropped, whitespace
    collapsed, case folded, trailing ``.``/``!`` dropped ("Yes." == "yes")."""
    s = clean_latex(s).replace("$", "")
    s = _MD.sub("", s)
    s = _WS.sub(" ", s).strip().casefold()
    while s and s[-1] in ".!":
        s = s[:-1].rstrip()
    return s


def compact(s: str) -> str:
    """clean_latex without any whitespace: ``x = 3`` and ``x=3`` compare equal."""
    return _WS.sub("", clean_latex(s))


_TEXTUAL = re.compile(r"^[A-Za-z][A-Za-z '\-]*[A-Za-z]$")
#: Words that are math, not text (left to the numeric/symbolic paths).
_MATH_WORDS = frozenset(
    {"pi", "inf", "infty", "infinity", "oo", "nan", "sin", "cos", "tan", "log", "ln", "exp", "sqrt", "emptyset"}
)


def is_textual(s: str) -> bool:
    """True for a word answer ("yes", "red", "Tuesday", "triangle ABC"): at least two
    letters, only letters, spaces, hyphens and apostrophes, and not a math word. Such
    answers are compared as text, never parsed as products of symbols (math-verify reads
    "ab" as a*b, equal to "ba")."""
    t = clean_latex(s).strip()
    if not _TEXTUAL.match(t):
        return False
    return t.casefold() not in _MATH_WORDS


_UNIT_TEXT = re.compile(r"\\(?:text|textrm|mathrm|mbox)\s*\{")
_UNIT_TEXT_BODY = re.compile(r"^\s*[A-Za-z][A-Za-z .]*$")
_UNIT_TEXT_AFTER = re.compile(r"^\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*\.?\s*$")
_CONNECTOR_WORD = re.compile(r"^\s*(?:or|and|nor|to|not|vs|versus|but|plus|minus)(?![A-Za-z])", re.IGNORECASE)


def drop_unit_text(s: str) -> str:
    """A unit written as text after a math expression, dropped: ``2\\pi \\text{ rad}`` ->
    ``2\\pi``, ``6\\sqrt{2}\\text{ cm}^2`` -> ``6\\sqrt{2}``. Only a last ``\\text{}`` (or
    ``\\mathrm{}``, ``\\mbox{}``) of letters, after something with a digit, a command or a
    bracket; never one starting with a joining word (``\\text{ or more}``). For the
    symbolic comparison (math-verify would read the letters as a product)."""
    last = None
    for m in _UNIT_TEXT.finditer(s):
        last = m
    if last is None:
        return s
    inner = balanced_from(s, last.end() - 1)
    if inner is None or not _UNIT_TEXT_BODY.match(inner) or _CONNECTOR_WORD.match(inner):
        return s
    after = s[last.end() + len(inner) + 1 :]
    before = s[: last.start()].strip()
    if not _UNIT_TEXT_AFTER.match(after) or not re.search(r"[\d\\)}\]]", before):
        return s
    return before
