"""Counting self-checks and "wait"s in a response (the released code's counters).

``count_self_checks``: occurrences of "wait,", "wait a" and "alternatively", case-
insensitive: the statistic behind the reflection rate and the native-reflection reward
shaping. ``count_wait_words``: occurrences of "wait" anywhere (also inside "waiting" or
"await"), case-insensitive: the released code's degenerate-repetition test
(``sol.lower().count("wait") > 5``).
"""

from __future__ import annotations

#: The phrases that count as one self-check each.
SELF_CHECK_PHRASES: tuple[str, ...] = ("wait,", "wait a", "alternatively")


def count_self_checks(text: str, phrases: tuple[str, ...] = SELF_CHECK_PHRASES) -> int:
    """Sum over ``phrases`` of their non-overlapping, case-insensitive occurrences."""
    low = text.lower()
    return sum(low.count(p) for p in phrases)


def count_wait_words(text: str) -> int:
    """Case-insensitive occurrences of the substring "wait"."""
    return text.lower().count("wait")
