"""The method's reward: a verdict turned into a number, with the rule that fired.

Rules, checked in this order (first match wins):

=====================  ==========================================  ===================
rule                   condition                                   value (default)
=====================  ==========================================  ===================
``truncated``          no end-of-sequence (``finished=False``)     ``invalid`` (-0.1)
``no_box``             ``require_box`` and no complete ``\\boxed``  ``invalid`` (-0.1)
``too_many_waits``     more than ``max_waits`` "wait"s              ``invalid`` (-0.1)
``wrong``              the judge says incorrect                    ``wrong`` (0.0)
``correct``            the judge says correct                      ``correct`` (1.0)
=====================  ==========================================  ===================

Optional native-reflection shaping (``reflection_shaping=True``; released code, off by
default): a correct response whose own reasoning holds n self-checks
(:func:`~rethinker.judge.selfcheck.count_self_checks`) gets

    r = reflection_bonus (1.1)                              if 1 <= n <= 2
    r = max(correct - reflection_penalty * n, invalid)      if n >= 3  (0.2 per check)

rules ``reflection_bonus`` / ``reflection_penalty``; n = 0 keeps ``correct``. Pass
``self_check_text`` to count in the first pass only (a force-rethought response's own
reasoning, not the appended trigger). Unlike the released code, shaping never applies to
an invalid response.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .extract import EVAL_RULES, TRAIN_RULES
from .grade import DEFAULT_TIMEOUT_S, Verdict, grade
from .selfcheck import count_self_checks, count_wait_words

RULES = ("correct", "wrong", "truncated", "no_box", "too_many_waits", "reflection_bonus", "reflection_penalty")
#: The rules of an invalid response: whatever the judge says of its answer, it earns the
#: invalid reward and never counts as correct in the metrics.
INVALID_RULES = ("no_box", "truncated", "too_many_waits")


@dataclass(frozen=True)
class RewardConfig:
    correct: float = 1.0
    wrong: float = 0.0
    invalid: float = -0.1
    #: More "wait"s than this makes a response invalid (None: no limit).
    max_waits: int | None = 5
    #: Training requires the final answer in \boxed{}; False also accepts the fallbacks.
    require_box: bool = True
    #: A response cut at the length limit (no end-of-sequence) is invalid.
    penalize_truncated: bool = True
    reflection_shaping: bool = False
    reflection_bonus: float = 1.1
    reflection_penalty: float = 0.2
    #: Seconds for one symbolic comparison.
    timeout_s: float | None = DEFAULT_TIMEOUT_S

    @property
    def rules(self) -> tuple[str, ...]:
        return TRAIN_RULES if self.require_box else EVAL_RULES


@dataclass(frozen=True)
class RewardResult:
    value: float
    correct: bool
    rule: str
    verdict: Verdict | None

    @property
    def valid(self) -> bool:
        return self.rule not in INVALID_RULES

    @property
    def valid_correct(self) -> bool:
        """What the metrics count as correct: judged correct and a valid response."""
        return bool(self.correct) and self.valid


def reward(
    response: str,
    ground_truth: str,
    *,
    choices: Sequence[str] | None = None,
    finished: bool = True,
    config: RewardConfig | None = None,
    answer_type: str | None = None,
    precision: int | None = None,
    self_check_text: str | None = None,
) -> RewardResult:
    """The reward of one response; see the module docstring for the rules."""
    cfg = config or RewardConfig()
    response = "" if response is None else str(response)
    verdict = grade(response, ground_truth, choices, answer_type, precision, rules=cfg.rules, timeout_s=cfg.timeout_s)
    if cfg.penalize_truncated and not finished:
        return RewardResult(cfg.invalid, verdict.correct, "truncated", verdict)
    if cfg.require_box and verdict.rule != "box":
        return RewardResult(cfg.invalid, False, "no_box", verdict)
    if cfg.max_waits is not None and count_wait_words(response) > cfg.max_waits:
        return RewardResult(cfg.invalid, verdict.correct, "too_many_waits", verdict)
    if not verdict.correct:
        return RewardResult(cfg.wrong, False, "wrong", verdict)
    if cfg.reflection_shaping:
        n = count_self_checks(response if self_check_text is None else self_check_text)
        if 1 <= n <= 2:
            return RewardResult(cfg.reflection_bonus, True, "reflection_bonus", verdict)
        if n >= 3:
            value = max(cfg.correct - cfg.reflection_penalty * n, cfg.invalid)
            return RewardResult(value, True, "reflection_penalty", verdict)
    return RewardResult(cfg.correct, True, "correct", verdict)
