"""Multiple choice: read an option letter strictly, and map letters <-> option texts.

The released code calls a prediction correct when the boxed text *starts with* the
ground-truth letter, so ``\\boxed{Area is 5}`` matches ``A`` and ``\\boxed{Because}``
matches ``B``. Our rule is strict. A letter is read only from

- the letter alone: ``B`` (a lone lowercase ``b`` too),
- the letter in brackets, alone or followed by text: ``(B)``, ``(B) 5 cm``, ``[B]``,
- the letter followed by a delimiter ``.`` ``:`` ``)`` and optional text:
  ``B.``, ``B: 5 cm``, ``B) 5 cm``,

each optionally after "option", "choice" or "answer" ("Option B", "Answer: (C)").
A capital followed by more letters ("Area", "A triangle") is never a letter. When the
option texts are known, a prediction that is not a letter is matched to an option by its
text (case/whitespace-insensitive, or numerically equal), and a ground truth written as
option text is mapped to its letter. If a letter comes with text ("B: 7"), the letter
decides.

A delimiter must be followed by a space or the end: ``A:B`` (a ratio) and ``A.5`` are
not letters. An answer that names a second option is no letter at all (a hedge):
``(A) or (B)``, ``(A), (B)``, ``A) 3 cm; B) 5 cm``, ``A. or B.`` -- the text after the
letter may not hold another bracketed letter, or a lone capital at its start or after a
connector (``or``, ``and``, ``,``, ``;``, ``/``), unless it is exactly that option's text.
A capital after a number is a unit (``B: 12 N``), after a word part of the option's text
(``A: point B``), and ``I``/``V``/``X`` are roman numerals (``(C) I and III``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .normalize import clean_latex, compact, norm_text
from .numeric import numbers_equal, parse_number

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MC_TYPES = {None, "multiple_choice", "multiple-choice", "multi_choice", "choice", "mc"}

_PREFIX = re.compile(r"^(?:the\s+)?(?:correct\s+)?(?:option|choice|answer)\s*(?:is\s*)?[:\s]\s*", re.IGNORECASE)
_BRACKETED = re.compile(r"^[(\[]([A-Za-z])[)\]](?:\s.*|[.:,].*)?$", re.DOTALL)
_DELIMITED = re.compile(r"^([A-Z])(?:[.:)](?:\s.*)?)?$", re.DOTALL)
# another option named in the text after the letter: "(B)", "[b]", or a lone capital
_OTHER_LETTER = re.compile(r"[(\[][A-Za-z][)\]]|(?<![A-Za-z\\])[A-Z](?![A-Za-z])")
_TAIL_LEAD = re.compile(r"^[)\].:,\s]+")
_LONE_LOWER = re.compile(r"^([a-z])$")
_MD = re.compile(r"^[\s*_\"'`$]+|[\s*_\"'`$]+$")


_CONNECTOR = re.compile(r"(?:^|[,;/&|+]|\bor|\band|\\lor|\\vee)\s*$")


def _names_another_option(tail: str) -> bool:
    """True when the text after a letter names an option: a bracketed letter, or a lone
    capital at the start or after a connector (``or B``, ``; B)``, ``, B``). A capital
    after a number is a unit (``12 N``), after a word part of the text (``point A``);
    ``I``, ``V``, ``X`` are roman numerals (``(C) I and III``)."""
    for m in _OTHER_LETTER.finditer(tail):
        if m.group(0)[0] in "([":
            return True
        if m.group(0) not in "IVX" and _CONNECTOR.search(tail[: m.start()]):
            return True
    return False


def parse_letter(
    text: str, n_choices: int | None = None, choices: Sequence[str] | None = None, hedge_check: bool = True
) -> str | None:
    """The option letter ``text`` names under the strict rule above, or None. With
    ``n_choices`` (or ``choices``) a letter beyond the last option is None.
    ``hedge_check=False`` (ground truths, which are trusted) skips the second-option
    rule, so a gold ``C. \\angle A = 30`` is still option C."""
    t = _MD.sub("", clean_latex(text))
    t = _PREFIX.sub("", t, count=1).strip()
    t = _MD.sub("", t)
    m = _BRACKETED.match(t) or _DELIMITED.match(t) or _LONE_LOWER.match(t)
    if not m:
        return None
    letter = m.group(1).upper()
    index = LETTERS.index(letter)
    if n_choices is None and choices:
        n_choices = len(choices)
    if n_choices is not None and index >= n_choices:
        return None
    tail = _TAIL_LEAD.sub("", t[m.end(1) :]).strip()
    if hedge_check and tail and _names_another_option(tail):
        if not (choices and index < len(choices) and norm_text(tail) == norm_text(str(choices[index]))):
            return None  # a second option named: a hedge, not an answer
    return letter


def match_option(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the first option whose text equals ``text``: same words
    (case/whitespace-insensitive), same compact LaTeX, or the same plain number."""
    t_text, t_compact = norm_text(text), compact(text)
    t_num = parse_number(clean_latex(text))
    for i, option in enumerate(choices[: len(LETTERS)]):
        opt = str(option)
        if norm_text(opt) == t_text or compact(opt) == t_compact:
            return LETTERS[i]
        if t_num is not None:
            o_num = parse_number(clean_latex(opt))
            if o_num is not None and numbers_equal(t_num, o_num):
                return LETTERS[i]
    return None


def gold_letter(gold: str, choices: Sequence[str] | None, answer_type: str | None) -> str | None:
    """The correct option's letter when the item is multiple choice: a ground truth
    written as a letter (``B``, ``(B)``, ``B. text``), or, given the options, written as
    one option's text. None for other answer types."""
    if answer_type is not None and answer_type.lower() not in _MC_TYPES:
        return None
    letter = parse_letter(gold, choices=choices, hedge_check=False)
    if letter is not None:
        # "B. text" ground truths: accept; a lone lowercase gold letter only with options
        if choices or not _LONE_LOWER.match(_MD.sub("", clean_latex(gold))):
            return letter
    if choices:
        return match_option(gold, choices)
    return None
