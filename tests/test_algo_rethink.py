"""Forced Rethinking: cut points, trigger rule frequencies, planning, acceptance filter, masks."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rethinker.algo.rethink import (
    RethinkConfig,
    RethinkPlan,
    accept,
    choose_trigger,
    cut_before_final_answer,
    eligible,
    join_tokens,
    plan_rethinks,
    reflection_rate,
)

CFG = RethinkConfig()
GENERIC_A, GENERIC_B = "\n\nWait", "\n\nWait, does it seem right?"
CHECK, MISTAKE = "\n\nWait, let's double check", "\n\nWait, there might be a mistake"


def within_binomial_bounds(count, p, n, z=5.0):
    return abs(count - n * p) <= z * np.sqrt(n * p * (1 - p)) + 1


# ------------------------------------------------------------------ cutting


@pytest.mark.parametrize(
    "text, expected",
    [
        # last \boxed, then first "answer", then last blank line
        ("Step 1.\n\nStep 2 gives x=3.\n\nSo the answer is \\boxed{3}.", "Step 1.\n\nStep 2 gives x=3."),
        # before the last "Wait" first (a native self-check and its answer go)
        ("A.\n\nB gives \\boxed{2}.\n\nWait, check: \\boxed{3}", "A."),
        # "answer" is found case-insensitively
        ("Reasoning.\n\nAnswer: 5", "Reasoning."),
        # no marker at all: kept whole
        ("no markers here", "no markers here"),
        # only a blank line: cut there, trailing whitespace stripped
        ("first part  \n\nsecond", "first part"),
        # the FIRST "answer" counts (released behaviour), even early in the text
        ("The answer depends on x.\n\nx=2 so \\boxed{2}", "The "),
        # an earlier \boxed survives: only the last one is cut
        ("\\boxed{1} is wrong, so \\boxed{2}", "\\boxed{1} is wrong, so "),
        ("", ""),
    ],
)
def test_cut_points(text, expected):
    assert cut_before_final_answer(text) == expected


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from(["Wait", "\\boxed{7}", "answer", "Answer", "\n\n", " x ", "a", "\n", "  "]), max_size=12)
)
def test_cut_is_a_prefix_before_the_final_answer(parts):
    text = "".join(parts)
    out = cut_before_final_answer(text)
    assert text.startswith(out)
    if "\\boxed" in text:
        assert len(out) <= text.rfind("\\boxed")
    if "Wait" in text:
        assert len(out) <= text.rfind("Wait")
    if not any(m in text.lower() for m in ("wait", "\\boxed", "answer", "\n\n")):
        assert out == text


# ------------------------------------------------------------------ triggers


@pytest.mark.parametrize("correct", [True, False])
def test_trigger_rule_frequencies(correct):
    rng = np.random.default_rng(0)
    n = 20_000
    draws = [choose_trigger(correct, rng, CFG) for _ in range(n)]
    specific, other = (CHECK, MISTAKE) if correct else (MISTAKE, CHECK)
    expected = {GENERIC_A: 0.5 * 0.4, GENERIC_B: 0.5 * 0.6, specific: 0.5}
    for trig, p in expected.items():
        assert within_binomial_bounds(draws.count(trig), p, n), trig
    assert draws.count(other) == 0
    assert set(draws) == set(expected)


def test_trigger_list_is_configurable():
    cfg = RethinkConfig(generic_prob=1.0, generic_triggers=("\n\nHmm",), generic_weights=(1.0,))
    assert choose_trigger(False, np.random.default_rng(1), cfg) == "\n\nHmm"
    only_specific = RethinkConfig(generic_prob=0.0)
    assert choose_trigger(True, np.random.default_rng(1), only_specific) == CHECK
    assert choose_trigger(False, np.random.default_rng(1), only_specific) == MISTAKE


# ------------------------------------------------------------------ eligibility and planning


def test_eligibility_boundary():
    assert eligible(True, 1024, CFG) and not eligible(True, 1025, CFG)
    assert not eligible(False, 10, CFG)
    small = CFG.scaled(64)  # toy preset: 64-token responses
    assert small.headroom_tokens == 32 and eligible(True, 32, small) and not eligible(True, 33, small)


def test_scaled_thresholds():
    assert CFG.scaled(2048) == CFG
    s = CFG.scaled(256)
    assert (s.max_response_tokens, s.headroom_tokens, s.min_continuation, s.max_continuation) == (256, 128, 4, 128)
    tiny = CFG.scaled(8)
    assert tiny.min_continuation >= 1 and tiny.max_continuation > tiny.min_continuation and tiny.headroom_tokens >= 1
    with pytest.raises(ValueError):
        CFG.scaled(0)


def test_plan_skips_unfinished_long_and_wrong_in_easy_groups():
    cfg = RethinkConfig(skip_prob=0.0, cut_prob=0.0)
    # group 0 (accuracy 0.75 > 0.7): wrong ones skipped; group 1 (accuracy 0.5): all eligible
    texts = [f"r{i} \\boxed{{1}}" for i in range(8)]
    finished = [True, True, True, True, True, False, True, True]
    lengths = [10, 10, 10, 10, 10, 10, 2000, 10]
    correct = [True, True, True, False, True, True, False, False]
    plans = plan_rethinks(texts, finished, lengths, correct, 4, np.random.default_rng(0), cfg)
    assert [p.index for p in plans] == [0, 1, 2, 4, 7]  # 3 wrong in easy group; 5 unfinished; 6 too long
    assert [p.group for p in plans] == [0, 0, 0, 1, 1]
    for p in plans:
        assert not p.cut and p.first_text == texts[p.index]
        assert p.prefix_text == texts[p.index] + p.trigger
        assert p.first_correct == correct[p.index]
        assert p.trigger in (GENERIC_A, GENERIC_B, CHECK if p.first_correct else MISTAKE)


def test_only_correct_forces_the_trigger_after_right_answers_only():
    texts, correct = ["x \\boxed{1}"] * 8, [True, False, True, False, False, False, True, True]
    base = RethinkConfig(skip_prob=0.0, cut_prob=0.0)
    every = plan_rethinks(texts, [True] * 8, [5] * 8, correct, 4, np.random.default_rng(0), base)
    assert [p.index for p in every] == list(range(8))  # accuracy 0.5 in both groups: all eligible
    only = RethinkConfig(skip_prob=0.0, cut_prob=0.0, only_correct=True)
    plans = plan_rethinks(texts, [True] * 8, [5] * 8, correct, 4, np.random.default_rng(0), only)
    assert [p.index for p in plans] == [0, 2, 6, 7] and all(p.first_correct for p in plans)
    with pytest.raises(ValueError, match="first_pass_loss"):
        RethinkConfig(first_pass_loss="drop")


def test_high_accuracy_threshold_is_strict():
    cfg = RethinkConfig(skip_prob=0.0)
    correct = [True] * 7 + [False] * 3  # accuracy exactly 0.7: not "above 0.7"
    plans = plan_rethinks(["x"] * 10, [True] * 10, [1] * 10, correct, 10, np.random.default_rng(0), cfg)
    assert len(plans) == 10
    correct = [True] * 8 + [False] * 2
    plans = plan_rethinks(["x"] * 10, [True] * 10, [1] * 10, correct, 10, np.random.default_rng(0), cfg)
    assert [p.index for p in plans] == list(range(8))


def test_skip_and_cut_frequencies():
    rng = np.random.default_rng(42)
    texts = ["Think.\n\nSo the answer is \\boxed{4}"] * 8
    n_eligible = n_planned = n_cut = 0
    for _ in range(1000):
        plans = plan_rethinks(texts, [True] * 8, [5] * 8, [True, False] * 4, 8, rng, CFG)
        n_eligible += 8
        n_planned += len(plans)
        n_cut += sum(p.cut for p in plans)
        for p in plans:
            assert p.first_text == ("Think." if p.cut else texts[0])
    assert within_binomial_bounds(n_planned, 1 - 0.35, n_eligible)
    assert within_binomial_bounds(n_cut, 0.5, n_planned)


def test_plan_is_deterministic_under_seed():
    args = (["a\n\nb \\boxed{1}"] * 6, [True] * 6, [3] * 6, [True, False, True, False, False, True], 3)
    p1 = plan_rethinks(*args, np.random.default_rng(9), CFG)
    p2 = plan_rethinks(*args, np.random.default_rng(9), CFG)
    assert p1 == p2


def test_plan_bad_input():
    with pytest.raises(ValueError, match="same length"):
        plan_rethinks(["a"], [True, True], [1], [True], 1, np.random.default_rng(0), CFG)
    with pytest.raises(ValueError, match="groups"):
        plan_rethinks(["a"] * 3, [True] * 3, [1] * 3, [True] * 3, 2, np.random.default_rng(0), CFG)
    with pytest.raises(ValueError):
        RethinkConfig(skip_prob=1.5)
    with pytest.raises(ValueError):
        RethinkConfig(generic_weights=(1.0,))


# ------------------------------------------------------------------ acceptance


def _plan(i, group):
    return RethinkPlan(index=i, group=group, first_correct=True, cut=False, first_text="t", trigger=GENERIC_A)


def test_accept_length_and_correctness():
    plans = [_plan(i, i) for i in range(6)]
    lengths = [30, 31, 1023, 1024, 500, 500]
    correct = [True, True, True, True, False, True]
    v = accept(plans, ["fine"] * 6, lengths, correct, CFG)
    assert v.reasons == ["length", "kept", "kept", "length", "incorrect", "kept"]
    assert v.kept == [False, True, True, False, False, True]
    assert v.counts == {"kept": 3, "length": 2, "incorrect": 1, "too_many_self_checks": 0, "query_cap": 0}


def test_accept_self_checks_and_per_query_cap():
    three = "Wait, x. Alternatively y. wait a moment."  # 3 self-checks + the trigger = 4: allowed
    four = three + " Wait, again."  # 4 + 1 = 5 > 4
    plans = [_plan(i, 0) for i in range(4)] + [_plan(4, 1)]
    texts = [four, three, "ok", "ok", "ok"]
    v = accept(plans, texts, [100] * 5, [True] * 5, CFG)
    # the self-check reject does not take one of group 0's two slots
    assert v.reasons == ["too_many_self_checks", "kept", "kept", "query_cap", "kept"]


def test_accept_bad_input():
    with pytest.raises(ValueError, match="length"):
        accept([_plan(0, 0)], [], [1], [True], CFG)


def test_reflection_rate():
    assert reflection_rate([]) == 0.0
    assert reflection_rate(["WAIT, no.", "fine", "alternatively, 3", "waiting"]) == 0.5


# ------------------------------------------------------------------ tokens and replacement


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 50_000), max_size=20),
    st.lists(st.integers(0, 50_000), max_size=6),
    st.lists(st.integers(0, 50_000), max_size=20),
    st.booleans(),
)
def test_join_tokens_masks_line_up(first, trigger, cont, train_on_trigger):
    ids, mask = join_tokens(first, trigger, cont, train_on_trigger)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.tolist() == first + trigger + cont
    assert mask.shape == ids.shape
    span = range(len(first), len(first) + len(trigger))
    for i, m in enumerate(mask.tolist()):
        assert m == (train_on_trigger or i not in span)
    _, masked = join_tokens(first, trigger, cont, train_on_trigger, train_on_first=False)
    assert masked.tolist() == [False] * len(first) + mask.tolist()[len(first) :]


def test_join_tokens_accepts_tensors():
    ids, mask = join_tokens(torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4, 5]), train_on_trigger=False)
    assert ids.tolist() == [1, 2, 3, 4, 5] and mask.tolist() == [True, True, False, True, True]


def test_count_self_checks_is_the_judges_single_definition():
    from rethinker.algo import rethink
    from rethinker.judge.selfcheck import count_self_checks

    assert rethink.count_self_checks is count_self_checks
    assert rethink.count_self_checks("Wait, x. WAIT A sec. Alternatively. waiting") == 3


def test_reflection_counts_every_trigger_form_and_all_the_released_counter_counts():
    from rethinker.algo.rethink import reflects
    from rethinker.judge.selfcheck import count_self_checks

    bare = "The answer is 3.\n\nWait\nLet me recount. \\boxed{3}"
    assert reflects(bare) and count_self_checks(bare) == 0  # the released counter misses the bare trigger
    assert reflection_rate([bare], released=True) == 0.0 and reflection_rate([bare]) == 1.0
    for text in ("findWait, let's double check", "x. Wait a moment", "ALTERNATIVELY, 5", "7Wait, does it seem right?"):
        assert count_self_checks(text) > 0 and reflects(text), text
    assert not reflects("waiting for the bus") and not reflects("no checks here")
