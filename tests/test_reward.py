"""The method's reward: each rule, its value, configuration, and the optional
native-reflection shaping (released code, off by default)."""

from __future__ import annotations

import pytest

from rethinker.judge import RewardConfig, count_self_checks, count_wait_words, reward
from rethinker.judge.selfcheck import SELF_CHECK_PHRASES

RIGHT = "The sides are 3 and 4, so the hypotenuse is 5. \\boxed{5}"
WRONG = "The sides are 3 and 4, so the hypotenuse is 6. \\boxed{6}"


@pytest.mark.parametrize(
    "response,kwargs,value,rule,correct",
    [
        (RIGHT, {}, 1.0, "correct", True),
        (WRONG, {}, 0.0, "wrong", False),
        (RIGHT, {"finished": False}, -0.1, "truncated", True),
        (WRONG, {"finished": False}, -0.1, "truncated", False),
        ("The hypotenuse is 5.", {}, -0.1, "no_box", False),
        ("The answer is 5", {}, -0.1, "no_box", False),
        ("so \\boxed{5", {}, -0.1, "no_box", False),  # unclosed box: no complete box
        ("\\boxed{}", {}, -0.1, "no_box", False),
        ("wait " * 6 + RIGHT, {}, -0.1, "too_many_waits", True),
        ("Wait, " * 5 + RIGHT, {}, 1.0, "correct", True),  # five is still allowed
        ("WAIT " * 6 + WRONG, {}, -0.1, "too_many_waits", False),
        ("\\boxed{B}", {"choices": ["1", "5"], "gold": "A"}, 0.0, "wrong", False),
        ("\\boxed{(B)}", {"choices": ["1", "5"], "gold": "B"}, 1.0, "correct", True),
        ("\\boxed{5}", {"choices": ["1", "5"], "gold": "B"}, 1.0, "correct", True),
    ],
)
def test_reward_rules(response, kwargs, value, rule, correct) -> None:
    kwargs = dict(kwargs)
    gold = kwargs.pop("gold", "5")
    r = reward(response, gold, **kwargs)
    assert (r.value, r.rule, r.correct) == (pytest.approx(value), rule, correct), r
    assert r.verdict is not None


def test_truncation_checked_before_box() -> None:
    r = reward("no box and cut", "5", finished=False)
    assert (r.value, r.rule) == (-0.1, "truncated")


def test_reward_config_values() -> None:
    cfg = RewardConfig(correct=2.0, wrong=-1.0, invalid=-0.5)
    assert reward(RIGHT, "5", config=cfg).value == 2.0
    assert reward(WRONG, "5", config=cfg).value == -1.0
    assert reward("5", "5", config=cfg).value == -0.5


def test_reward_config_switches() -> None:
    assert reward(RIGHT, "5", finished=False, config=RewardConfig(penalize_truncated=False)).rule == "correct"
    assert reward("wait " * 9 + RIGHT, "5", config=RewardConfig(max_waits=None)).rule == "correct"
    assert reward("wait " * 3 + RIGHT, "5", config=RewardConfig(max_waits=2)).rule == "too_many_waits"
    # without the box requirement the evaluation fallbacks count
    r = reward("So the answer is 5.", "5", config=RewardConfig(require_box=False))
    assert (r.value, r.rule, r.verdict.rule) == (1.0, "correct", "answer_is")


def test_ground_truth_in_box() -> None:
    assert reward(RIGHT, "\\boxed{5}").rule == "correct"


SHAPING = RewardConfig(reflection_shaping=True)


@pytest.mark.parametrize(
    "checks,value,rule",
    [
        (0, 1.0, "correct"),
        (1, 1.1, "reflection_bonus"),
        (2, 1.1, "reflection_bonus"),
        (3, 0.4, "reflection_penalty"),  # max(1 - 0.2 * 3, -0.1)
        (4, 0.2, "reflection_penalty"),
        (5, 0.0, "reflection_penalty"),
    ],
)
def test_reflection_shaping(checks: int, value: float, rule: str) -> None:
    text = "Alternatively, " * checks + RIGHT
    r = reward(text, "5", config=SHAPING)
    assert (r.value, r.rule) == (pytest.approx(value), rule)


def test_reflection_shaping_floor_and_scope() -> None:
    # many self-checks that are not "wait" (no invalidity): floored at the invalid value
    r = reward("alternatively " * 8 + RIGHT, "5", config=SHAPING)
    assert (r.value, r.rule) == (pytest.approx(-0.1), "reflection_penalty")
    # wrong answers are never shaped
    r = reward("Wait, let me recheck. " + WRONG, "5", config=SHAPING)
    assert (r.value, r.rule) == (0.0, "wrong")
    # invalid responses are never shaped (the released code would give 1.1 here)
    r = reward("Wait, hmm. " + RIGHT, "5", finished=False, config=SHAPING)
    assert (r.value, r.rule) == (-0.1, "truncated")
    # counted in the given first-pass text only
    r = reward("Wait, " + RIGHT, "5", config=SHAPING, self_check_text="no checks here")
    assert (r.value, r.rule) == (1.0, "correct")
    # off by default
    assert reward("Wait, " + RIGHT, "5").value == 1.0


@pytest.mark.parametrize(
    "text,n",
    [
        ("", 0),
        ("Wait, that is wrong.", 1),
        ("wait a moment", 1),
        ("WAIT, Wait a second. Alternatively", 3),
        ("Wait. Waiting for nothing", 0),  # "wait." and "waiting" are not self-checks
        ("alternatively, wait, wait a", 3),
        ("await, wait,", 2),  # substrings, as in the released code: "await," counts
    ],
)
def test_count_self_checks(text: str, n: int) -> None:
    assert count_self_checks(text) == n


def test_self_check_phrases_are_the_released_ones() -> None:
    assert SELF_CHECK_PHRASES == ("wait,", "wait a", "alternatively")


@pytest.mark.parametrize("text,n", [("", 0), ("Wait wait WAIT", 3), ("awaiting", 1), ("w a i t", 0)])
def test_count_wait_words(text: str, n: int) -> None:
    assert count_wait_words(text) == n
