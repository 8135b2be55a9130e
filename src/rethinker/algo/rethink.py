"""Forced Rethinking (released code, ``_generate_vllm``): teach the policy to re-check itself.

After the first rollout is graded, for a batch laid out group by group (G responses each):

1. Eligible: the response ended with EOS and has at most ``max_response_tokens -
   headroom_tokens`` tokens (1024 of headroom at 2048). In a group whose accuracy is
   above ``high_acc_threshold`` (0.7) the wrong responses are skipped; every other
   eligible response is skipped with probability ``skip_prob`` (0.35).
2. With probability ``cut_prob`` (0.5) the response is cut back before its final answer
   (``cut_before_final_answer``); otherwise it is kept whole.
3. A trigger is appended (``choose_trigger``): with probability 0.5 a generic one,
   "\\n\\nWait" (40%) or "\\n\\nWait, does it seem right?" (60%); otherwise
   "\\n\\nWait, let's double check" if the first answer was right, "\\n\\nWait, there might
   be a mistake" if it was wrong.
4. The policy continues from first pass + trigger (temperature 0.9).
5. ``accept``: a continuation is kept only if min_continuation < its length < max_continuation tokens
   (released: 30 < n < 1024, strict), the joined response's final answer is correct, it
   holds at most ``max_self_checks`` self-checks counting the trigger as one (released:
   1 + count(continuation) <= 4), and its query has fewer than ``max_per_query`` (2) kept
   rethinkings. A kept one replaces the original response in its group (same slot, so
   groups keep their size and order); all of it, trigger included, is trained on by default
   (``join_tokens``).

The length thresholds fit 2048-token responses; ``RethinkConfig.scaled(n)`` rescales them
for a response limit of n tokens (``for_responses(n)``: scaled or not, as configured).
Texts given to this module are response texts only (no prompt) without the EOS token.

Deliberate difference from the released code: there, a continuation that passes the
length and correctness checks takes one of its query's two slots even when the
self-check filter then drops it; here only kept continuations count toward the cap,
as docs/method.md states the rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

# the one definition lives with the judge; re-exported here for the reflection statistic
from rethinker.judge.selfcheck import count_self_checks

__all__ = [
    "Acceptance",
    "RethinkConfig",
    "RethinkPlan",
    "accept",
    "choose_trigger",
    "count_self_checks",
    "cut_before_final_answer",
    "eligible",
    "join_tokens",
    "plan_rethinks",
    "reflection_rate",
    "reflects",
]


FIRST_PASS_LOSSES: tuple[str, ...] = ("train", "mask-wrong")
PLACEMENTS: tuple[str, ...] = ("replace", "append")
#: The trigger of test-time rethinking (the released code's most frequent generic one):
#: appended after a greedy answer to measure whether the policy corrects itself.
TEST_TRIGGER = "\n\nWait, does it seem right?"


@dataclass(frozen=True)
class RethinkConfig:
    """Forced Rethinking settings; defaults are the released code's (2048-token responses).

    It is also the ``rethink`` section of the training config: every field but
    ``max_response_tokens`` (the rollout's response limit, set by ``for_responses``) is
    a ``--rethink.FIELD`` flag."""

    enabled: bool = True
    skip_prob: float = 0.35
    high_acc_threshold: float = 0.7
    cut_prob: float = 0.5
    max_response_tokens: int = field(default=2048, metadata={"derived_from": "rollout.max_new_tokens"})
    headroom_tokens: int = 1024
    min_continuation: int = 30
    max_continuation: int = 1024
    max_self_checks: int = 4
    max_per_query: int = 2
    generic_prob: float = 0.5
    generic_triggers: tuple[str, ...] = ("\n\nWait", "\n\nWait, does it seem right?")
    generic_weights: tuple[float, ...] = (0.4, 0.6)
    correct_trigger: str = "\n\nWait, let's double check"
    wrong_trigger: str = "\n\nWait, there might be a mistake"
    train_on_trigger: bool = True
    #: what a kept rethink's first pass is trained on: ``train`` (all of it, as released)
    #: or ``mask-wrong`` (a first pass judged wrong gets no gradient; trigger and
    #: continuation still do)
    first_pass_loss: str = "train"
    #: force the trigger only after first answers judged right (self-verification only)
    only_correct: bool = False
    #: where a kept rethink goes: ``replace`` its original in the group (as released), or
    #: ``append`` it to the group beside the original (each with its own reward and advantage)
    placement: str = "replace"
    temperature: float = 0.9
    #: scale the token thresholds (set for 2048-token responses) to the response limit
    scale_to_response_limit: bool = True

    def __post_init__(self) -> None:
        for name in ("skip_prob", "cut_prob", "generic_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if len(self.generic_triggers) != len(self.generic_weights) or not self.generic_triggers:
            raise ValueError("generic_triggers and generic_weights must be non-empty and of equal length")
        if any(w < 0 for w in self.generic_weights) or sum(self.generic_weights) <= 0:
            raise ValueError("generic_weights must be >= 0 with a positive sum")
        if self.min_continuation < 0 or self.max_continuation <= self.min_continuation:
            raise ValueError(
                f"need 0 <= min_continuation < max_continuation, got {self.min_continuation}, {self.max_continuation}"
            )
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {'|'.join(PLACEMENTS)}, got {self.placement!r}")
        if self.first_pass_loss not in FIRST_PASS_LOSSES:
            raise ValueError(
                f"first_pass_loss must be one of {'|'.join(FIRST_PASS_LOSSES)}, got {self.first_pass_loss!r}"
            )
        if self.max_response_tokens < 1 or self.headroom_tokens < 0:
            raise ValueError("max_response_tokens must be >= 1 and headroom_tokens >= 0")

    def scaled(self, max_response_tokens: int, reference_tokens: int = 2048) -> RethinkConfig:
        """Same config for a response limit of ``max_response_tokens``: headroom,
        min_continuation and max_continuation scaled by max_response_tokens /
        reference_tokens (rounded; at least 1, max_continuation at least
        min_continuation + 1)."""
        if max_response_tokens < 1:
            raise ValueError(f"max_response_tokens must be >= 1, got {max_response_tokens}")
        f = max_response_tokens / reference_tokens
        min_cont = max(1, round(self.min_continuation * f))
        return replace(
            self,
            max_response_tokens=max_response_tokens,
            headroom_tokens=max(1, round(self.headroom_tokens * f)),
            min_continuation=min_cont,
            max_continuation=max(min_cont + 1, round(self.max_continuation * f)),
        )

    def for_responses(self, max_response_tokens: int) -> RethinkConfig:
        """This config for responses of up to ``max_response_tokens`` tokens: thresholds
        scaled (``scaled``) when ``scale_to_response_limit``, else only the limit set."""
        if self.scale_to_response_limit:
            return self.scaled(max_response_tokens)
        return replace(self, max_response_tokens=max_response_tokens)


@dataclass(frozen=True)
class RethinkPlan:
    """One response chosen for a continuation.

    ``index``: position in the flat batch; ``group``: index // group_size;
    ``first_text``: the first pass, cut back when ``cut``; ``prefix_text``: first_text +
    trigger, the text the policy continues from (after the prompt).
    """

    index: int
    group: int
    first_correct: bool
    cut: bool
    first_text: str
    trigger: str

    @property
    def prefix_text(self) -> str:
        return self.first_text + self.trigger


def eligible(finished: bool, length: int, config: RethinkConfig = RethinkConfig()) -> bool:
    """Ended with EOS and length <= max_response_tokens - headroom_tokens (length counts
    the response's tokens, EOS included, as the released code does)."""
    return bool(finished) and length <= config.max_response_tokens - config.headroom_tokens


def cut_before_final_answer(text: str) -> str:
    """Cut a response back before its final answer, in the released code's order:
    before the last "Wait"; then before the last "\\boxed"; then before the first
    "answer" (case-insensitive); then before the last blank line ("\\n\\n"), stripping
    trailing whitespace. Each step applies only when its marker is present."""
    i = text.rfind("Wait")
    if i > -1:
        text = text[:i]
    i = text.rfind("\\boxed")
    if i > -1:
        text = text[:i]
    i = text.lower().find("answer")
    if i > -1:
        text = text[:i]
    i = text.rfind("\n\n")
    if i > -1:
        text = text[:i].rstrip()
    return text


def choose_trigger(correct: bool, rng: np.random.Generator, config: RethinkConfig = RethinkConfig()) -> str:
    """With prob. generic_prob a generic trigger drawn by generic_weights, otherwise the
    correctness-specific one (correct_trigger / wrong_trigger)."""
    if rng.random() < config.generic_prob:
        w = np.asarray(config.generic_weights, dtype=np.float64)
        return config.generic_triggers[int(rng.choice(len(w), p=w / w.sum()))]
    return config.correct_trigger if correct else config.wrong_trigger


def plan_rethinks(
    texts: Sequence[str],
    finished: Sequence[bool],
    lengths: Sequence[int],
    correct: Sequence[bool],
    group_size: int,
    rng: np.random.Generator,
    config: RethinkConfig = RethinkConfig(),
) -> list[RethinkPlan]:
    """Choose which responses get a continuation and build their prefixes (steps 1-3)."""
    n = len(texts)
    if not (len(finished) == len(lengths) == len(correct) == n):
        raise ValueError("texts, finished, lengths and correct must have the same length")
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} responses do not split into groups of {group_size}")
    chosen: list[int] = []
    for g in range(n // group_size):
        idx = range(g * group_size, (g + 1) * group_size)
        accuracy = float(np.mean([bool(correct[i]) for i in idx]))
        for i in idx:
            if not eligible(finished[i], lengths[i], config):
                continue
            if accuracy > config.high_acc_threshold and not correct[i]:
                continue
            if config.only_correct and not correct[i]:
                continue
            if rng.random() < config.skip_prob:
                continue
            chosen.append(i)
    plans = []
    for i in chosen:
        cut = bool(rng.random() < config.cut_prob)
        first = cut_before_final_answer(texts[i]) if cut else texts[i]
        trigger = choose_trigger(bool(correct[i]), rng, config)
        plans.append(RethinkPlan(i, i // group_size, bool(correct[i]), cut, first, trigger))
    return plans


@dataclass(frozen=True)
class Acceptance:
    """Verdict per plan: ``kept[k]`` and ``reasons[k]`` (``kept``, ``length``,
    ``incorrect``, ``too_many_self_checks``, ``query_cap``); ``counts``: reason -> count."""

    kept: list[bool]
    reasons: list[str]
    counts: dict[str, int]


def accept(
    plans: Sequence[RethinkPlan],
    continuation_texts: Sequence[str],
    continuation_lengths: Sequence[int],
    final_correct: Sequence[bool],
    config: RethinkConfig = RethinkConfig(),
) -> Acceptance:
    """The acceptance filter (step 5), in plan order; the per-query cap counts kept ones.

    ``final_correct[k]``: the joined response (first pass + trigger + continuation) graded
    by its final answer; ``continuation_lengths[k]``: generated tokens (EOS included).
    """
    if not (len(plans) == len(continuation_texts) == len(continuation_lengths) == len(final_correct)):
        raise ValueError("plans, continuation_texts, continuation_lengths and final_correct differ in length")
    kept_per_group: dict[int, int] = {}
    kept, reasons = [], []
    for plan, text, length, ok in zip(plans, continuation_texts, continuation_lengths, final_correct):
        if not config.min_continuation < length < config.max_continuation:
            reason = "length"
        elif not ok:
            reason = "incorrect"
        elif 1 + count_self_checks(text) > config.max_self_checks:
            reason = "too_many_self_checks"
        elif kept_per_group.get(plan.group, 0) >= config.max_per_query:
            reason = "query_cap"
        else:
            reason = "kept"
            kept_per_group[plan.group] = kept_per_group.get(plan.group, 0) + 1
        kept.append(reason == "kept")
        reasons.append(reason)
    counts = {r: reasons.count(r) for r in ("kept", "length", "incorrect", "too_many_self_checks", "query_cap")}
    return Acceptance(kept, reasons, counts)


def join_tokens(
    first_ids: Sequence[int] | Tensor,
    trigger_ids: Sequence[int] | Tensor,
    cont_ids: Sequence[int] | Tensor,
    train_on_trigger: bool = True,
    train_on_first: bool = True,
) -> tuple[Tensor, Tensor]:
    """ids = first + trigger + continuation; mask (bool, same length) is True on tokens the
    loss trains on: all of them, except the trigger's when ``train_on_trigger`` is False
    and the first pass's when ``train_on_first`` is False.

    Use the same ``first_ids + trigger_ids`` as the continuation's input (the prefix) so
    that the trained tokens are the ones the policy conditioned on; ``first_ids`` must not
    end with EOS (the first pass continues), ``cont_ids`` normally does.
    """
    parts = [torch.as_tensor(x, dtype=torch.long).reshape(-1) for x in (first_ids, trigger_ids, cont_ids)]
    ids = torch.cat(parts)
    mask = torch.ones(ids.shape[0], dtype=torch.bool)
    start = parts[0].shape[0]
    if not train_on_trigger:
        mask[start : start + parts[1].shape[0]] = False
    if not train_on_first:
        mask[:start] = False
    return ids, mask


#: A reflection: a self-check phrase of the released counter ("wait,", "wait a",
#: "alternatively") or any trigger form, the bare "Wait" included: "wait" not followed by
#: a letter ("waiting" is not one), whatever precedes it (a small tokenizer glues words:
#: "findWait, ..."), so every text the released counter counts is counted here too.
_REFLECTION = re.compile(r"wait(?![a-z])|alternatively", re.IGNORECASE)


def reflects(text: str) -> bool:
    """The text holds a self-check or a rethinking trigger in any of its forms."""
    return bool(_REFLECTION.search(text))


def reflection_rate(texts: Sequence[str], *, released: bool = False) -> float:
    """Share of texts that reflect (``reflects``; 0.0 for no texts). ``released``: the
    released code's narrower counter (``count_self_checks > 0``), which misses a bare
    "Wait" followed by a line break."""
    if not texts:
        return 0.0
    hit = (lambda t: count_self_checks(t) > 0) if released else reflects
    return sum(bool(hit(t)) for t in texts) / len(texts)


def rethink_effect(verdicts: Sequence[tuple[bool, bool]]) -> dict[str, float] | None:
    """Test-time rethinking's effect from (correct before, correct after the trigger) per
    answer: accuracy before and after, answers turned wrong -> right and right -> wrong
    (None for no answers)."""
    if not verdicts:
        return None
    n = len(verdicts)
    return {
        "n": float(n),
        "accuracy_before": sum(b for b, _ in verdicts) / n,
        "accuracy_after": sum(a for _, a in verdicts) / n,
        "wrong_to_right": float(sum(a and not b for b, a in verdicts)),
        "right_to_wrong": float(sum(b and not a for b, a in verdicts)),
    }
