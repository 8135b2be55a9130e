"""Find the final answer in a response.

The primary rule is the method's: the content of the LAST ``\\boxed{...}`` (or
``\\fbox{...}``), read with balanced braces. Evaluation may also accept a few documented
fallbacks, each a named rule that can be switched off:

==================  ==================================================================
rule                what it takes
==================  ==================================================================
``box``             content of the last ``\\boxed{}`` / ``\\fbox{}``; braces balanced,
                    ``\\{`` and ``\\}`` are literal braces. An unclosed last box (a
                    truncated response) yields nothing: an earlier box is NOT used,
                    since the model's final answer was the unfinished one.
``answer_tag``      content of the last ``<answer>...</answer>``
``answer_is``       text after the last "the answer is" / "final answer is" (to the
                    end of that line, a trailing period dropped)
``answer_colon``    text after the last line-leading "Answer:" (to the end of line)
``final_letter``    a bare option letter (``B``, ``(B)``, ``B.``, ``**B**``) alone on
                    the last non-empty line
==================  ==================================================================

Rules are tried in that order (the order of :data:`EVAL_RULES`); the first that finds
something wins. Every scan is linear in the response length: no backtracking regex runs
over the whole response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Rule names, in priority order.
ALL_RULES: tuple[str, ...] = ("box", "answer_tag", "answer_is", "answer_colon", "final_letter")
#: Training: the method requires the box.
TRAIN_RULES: tuple[str, ...] = ("box",)
#: Evaluation: the box first, then the documented fallbacks.
EVAL_RULES: tuple[str, ...] = ALL_RULES
DEFAULT_RULES: tuple[str, ...] = TRAIN_RULES

#: Longest text a fallback rule may return (a fallback grabbing a paragraph is no answer).
MAX_FALLBACK_CHARS = 300

_BOX_OPENERS = ("\\boxed", "\\fbox")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Extraction:
    """The answer text a rule found (``None`` when none fired) and the rule's name."""

    answer: str | None
    rule: str | None


def balanced_from(text: str, start: int) -> str | None:
    """``text[start]`` is ``{``: return the content up to its matching ``}`` (escaped
    ``\\{``/``\\}`` do not count), or None when it never closes. O(len(text))."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # skip the escaped character (\{, \}, \\ ...)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` with braces balanced, or
    None (no box, or the last box never closes). ``\\boxed {x}`` (space) is accepted."""
    best = -1
    for opener in _BOX_OPENERS:
        pos = text.rfind(opener)
        while pos != -1:
            after = pos + len(opener)
            # \boxed must not be the prefix of a longer command (\boxedfoo)
            if after >= len(text) or not text[after].isalpha():
                break
            pos = text.rfind(opener, 0, pos)
        if pos > best:
            best = pos
            best_opener = opener
    if best < 0:
        return None
    i = best + len(best_opener)
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    return balanced_from(text, i)


def _clean_fallback(ans: str) -> str | None:
    ans = ans.strip().strip("*").strip()
    if ans.endswith("."):
        ans = ans[:-1].rstrip()
    if ans.startswith("$") and ans.endswith("$") and len(ans) >= 2:
        ans = ans.strip("$").strip()
    if not ans or len(ans) > MAX_FALLBACK_CHARS:
        return None
    return ans


def _answer_tag(text: str) -> str | None:
    end = text.rfind("</answer>")
    if end < 0:
        return None
    start = text.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return _clean_fallback(text[start + len("<answer>") : end])


_ANSWER_IS = ("final answer is", "the answer is", "answer is")


def _rest_of_line(text: str, pos: int) -> str:
    end = text.find("\n", pos)
    return text[pos : end if end >= 0 else len(text)]


def _answer_is(text: str, lower: str) -> str | None:
    best = -1
    best_len = 0
    for phrase in _ANSWER_IS:
        p = lower.rfind(phrase)
        if p > best:
            best, best_len = p, len(phrase)
    if best < 0:
        return None
    rest = _rest_of_line(text, best + best_len).lstrip(" :")
    return _clean_fallback(rest)


_ANSWER_COLON = re.compile(r"(?im)^[ \t>*#_]*(?:final\s+)?answer[ \t*_]*:")


def _answer_colon(text: str, lower: str) -> str | None:
    # Only look at the last line that mentions "answer" (bounded: one line).
    p = lower.rfind("answer")
    while p >= 0:
        line_start = text.rfind("\n", 0, p) + 1
        line = _rest_of_line(text, line_start)
        m = _ANSWER_COLON.match(line)
        if m:
            return _clean_fallback(line[m.end() :])
        p = lower.rfind("answer", 0, line_start)
        if line_start == 0:
            break
    return None


_FINAL_LETTER = re.compile(r"^[ \t*_$]*\(?([A-Z])\)?[ \t.*_$]*$")


def _final_letter(text: str) -> str | None:
    stripped = text.rstrip()
    line_start = stripped.rfind("\n") + 1
    line = stripped[line_start:]
    if len(line) > 20:
        return None
    m = _FINAL_LETTER.match(line)
    return m.group(1) if m else None


def extract(text: str, rules: tuple[str, ...] | list[str] = DEFAULT_RULES) -> Extraction:
    """Apply ``rules`` in the priority order of :data:`ALL_RULES`; the first that finds
    an answer wins. Unknown rule names raise ``ValueError``."""
    unknown = set(rules) - set(ALL_RULES)
    if unknown:
        raise ValueError(f"unknown extraction rule(s) {sorted(unknown)}; known: {ALL_RULES}")
    if not isinstance(text, str) or not text:
        return Extraction(None, None)
    lower: str | None = None
    for rule in ALL_RULES:
        if rule not in rules:
            continue
        if rule == "box":
            ans = last_boxed(text)
            if ans is not None:
                ans = ans.strip() or None  # an empty box is no answer
        elif rule == "answer_tag":
            ans = _answer_tag(text)
        elif rule == "final_letter":
            ans = _final_letter(text)
        else:
            if lower is None:
                lower = text.translate(_ASCII_LOWER)  # same length as text, unlike str.lower
            ans = _answer_is(text, lower) if rule == "answer_is" else _answer_colon(text, lower)
        if ans is not None:
            return Extraction(ans, rule)
    return Extraction(None, None)


def extract_answer(text: str, rules: tuple[str, ...] | list[str] = DEFAULT_RULES) -> str | None:
    """The final answer's text, or None; see :func:`extract`."""
    return extract(text, rules).answer
