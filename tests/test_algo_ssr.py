"""Selective Sample Replay: draw frequencies, zero-advantage exclusion, buffer, determinism."""

import io
import json
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rethinker import metric_names as M
from rethinker.algo.sample import Sample
from rethinker.algo.ssr import SSR_MODES, SampleSelector, ssr_probabilities


def make(advs, rewards=None, step=0):
    rewards = rewards if rewards is not None else [1.0 if a > 0 else 0.0 for a in advs]
    return [
        Sample(
            advantage=float(a),
            reward=float(r),
            group=i // 4,
            step=step,
            behaviour_logprobs=torch.full((3,), -float(i)),
            completion_ids=[i],  # a tag: which sample it is
        )
        for i, (a, r) in enumerate(zip(advs, rewards))
    ]


def within_binomial_bounds(counts, p, n, z=5.0):
    """Every cell's count within z binomial standard deviations of n * p (+1 for discreteness).
    With z = 5 a correct sampler fails a cell with probability < 6e-7."""
    sd = np.sqrt(n * p * (1 - p))
    return np.all(np.abs(counts - n * p) <= z * sd + 1)


ADV = st.sampled_from([0.0, 0.0, 0.1, -0.3, 0.75, -1.2, 2.0])


# statistical check: derandomize fixes the examples (and seeds), so a pass is reproducible
@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    st.lists(ADV, min_size=1, max_size=10).filter(lambda a: any(x != 0 for x in a)),
    st.sampled_from([0.5, 1.0, 2.0]),
    st.integers(0, 2**31),
)
def test_paper_draw_frequencies_match_abs_advantage_power(advs, alpha, seed):
    n = 6000
    sel = SampleSelector("paper", alpha=alpha, batch_size=n, seed=seed).select(make(advs))
    counts = np.bincount(sel.indices, minlength=len(advs))
    a = np.abs(np.array(advs))
    p = np.where(a > 0, a**alpha, 0) / np.where(a > 0, a**alpha, 0).sum()
    assert within_binomial_bounds(counts, p, n)
    assert counts[a == 0].sum() == 0  # never a zero-advantage sample
    assert sel.stats[M.EFFECTIVE_AFTER_SSR] == 1.0
    assert sel.stats[M.EFFECTIVE_BEFORE_SSR] == pytest.approx(np.mean(a > 0))


def test_paper_chi_square_fixed_seed():
    advs = [0.0, 0.5, -1.5, 0.0, 2.0, 0.1, -0.9, 0.0]
    n = 20_000
    sel = SampleSelector("paper", batch_size=n, seed=1234).select(make(advs))
    counts = np.bincount(sel.indices, minlength=len(advs))
    a = np.abs(np.array(advs))
    nz = a > 0
    expected = n * a[nz] / a[nz].sum()
    chi2 = ((counts[nz] - expected) ** 2 / expected).sum()
    k = nz.sum() - 1  # degrees of freedom = 5
    # Wilson-Hilferty upper 1e-6 quantile of chi-square(k): z = 4.753
    crit = k * (1 - 2 / (9 * k) + 4.753 * math.sqrt(2 / (9 * k))) ** 3
    assert chi2 < crit
    assert counts[~nz].sum() == 0


def test_paper_defaults_and_skip():
    s = make([0, 1, -1, 0])
    sel = SampleSelector("paper", seed=0).select(s)
    assert len(sel.samples) == 4  # batch = the step's sample count
    assert all(x.advantage != 0 for x in sel.samples)
    assert [s[i] is x for i, x in zip(sel.indices, sel.samples)] == [True] * 4
    empty = SampleSelector("paper").select(make([0.0] * 8))
    assert empty.skipped_update and empty.samples == [] and empty.stats["skipped_update"] == 1.0
    assert empty.stats[M.EFFECTIVE_BEFORE_SSR] == 0.0


def test_off_is_every_sample_once_in_order():
    s = make([0, 1, 0, -1, 0.5])
    sel = SampleSelector("off", batch_size=99).select(s)
    assert sel.indices == [0, 1, 2, 3, 4] and all(a is b for a, b in zip(sel.samples, s))
    assert sel.stats[M.EFFECTIVE_BEFORE_SSR] == sel.stats[M.EFFECTIVE_AFTER_SSR] == 0.6
    assert not sel.skipped_update


# statistical check: derandomize fixes the examples (and seeds), so a pass is reproducible
@settings(max_examples=20, deadline=None, derandomize=True)
@given(st.lists(ADV, min_size=1, max_size=12), st.integers(1, 40), st.integers(0, 1000))
def test_filter_nonzero_only_whole_copies_then_uniform(advs, batch, seed):
    sel = SampleSelector("filter", batch_size=batch, seed=seed).select(make(advs))
    nonzero = [i for i, a in enumerate(advs) if a != 0]
    if not nonzero:
        assert sel.skipped_update
        return
    assert len(sel.indices) == batch
    assert set(sel.indices) <= set(nonzero)
    counts = np.bincount(sel.indices, minlength=len(advs))[nonzero]
    assert counts.min() >= math.ceil(batch / len(nonzero)) - 1


def test_filter_remainder_is_uniform():
    advs = [0.1, 0, 3.0, -0.2, 0]
    n = 9000  # batch 2 < 3 non-zero samples: every draw is a uniform one; 4500 steps
    counts = np.zeros(5)
    sel = SampleSelector("filter", batch_size=2, seed=7)
    for _ in range(n // 2):
        counts += np.bincount(sel.select(make(advs)).indices, minlength=5)
    p = np.array([1, 0, 1, 1, 0]) / 3
    assert within_binomial_bounds(counts, p, n)


def test_released_composition_and_buffer_fill():
    # 16 samples, 4 non-zero; target = 16 // 2 = 8; current candidates = 4 non-zero
    # (+ int(0.1 * 4) = 0 positives) -> 4 drawn from the step, 4 from the buffer.
    advs = [0.0] * 16
    for i, a in zip([1, 5, 9, 13], [1.0, -0.5, 0.25, 2.0]):
        advs[i] = a
    rewards = [1.0 if i in (0, 2, 4) else 0.0 for i in range(16)]  # a few "positive" zero-A samples
    s = make(advs, rewards)
    sel = SampleSelector("released", seed=3)
    out = sel.select(s)
    assert len(out.samples) == 8
    assert out.from_buffer == [False] * 4 + [True] * 4
    assert sel.buffer.maxlen == 8 and len(sel.buffer) == 4
    # buffer phase needs 4 = buffer size: "not more than its size" -> a draw with replacement
    assert all(x.advantage != 0 for x in out.samples)
    assert out.stats[M.SSR_REPLAYED] == 4 and out.stats["n_from_earlier_steps"] == 0
    assert out.indices[4:] == [s.index(x) for x in out.samples[4:]]  # this step's, found by identity


def test_released_positive_samples_only_when_configured():
    advs = [0.0] * 20
    for i in range(10):
        advs[i] = 0.5 + i
    rewards = [1.0] * 20  # samples 10..19 are positive zero-advantage samples
    never = SampleSelector("released", seed=0, batch_size=10)
    for _ in range(30):
        assert all(x.advantage != 0 for x in never.select(make(advs, rewards)).samples)
    sometimes = SampleSelector("released", seed=0, batch_size=11, positive_weight=5.0)
    drawn = []
    for _ in range(30):
        o = sometimes.select(make(advs, rewards))
        drawn += [x for x, b in zip(o.samples, o.from_buffer) if not b]
    assert any(x.advantage == 0 for x in drawn)  # int(0.1 * 10) = 1 positive candidate, weight 5


def test_released_buffer_capacity_and_fifo_across_steps():
    sel = SampleSelector("released", seed=0, buffer_capacity=5)
    arrived = []
    for step in range(6):
        advs = [0.0, (step + 1) * 0.1, 0.0, -(step + 1) * 0.2, 0.0, 0.0]
        s = make(advs, step=step)
        arrived += [x for x in s if x.advantage != 0]
        out = sel.select(s)
        assert len(sel.buffer) == min(5, len(arrived))
        assert list(sel.buffer) == arrived[-5:]  # oldest dropped first, arrival order kept
        assert len(out.samples) == 3
        assert all(x in sel.buffer for x, b in zip(out.samples, out.from_buffer) if b)
    assert out.stats["buffer_size"] == 5


def test_released_replays_earlier_steps_with_their_behaviour_logprobs():
    sel = SampleSelector("released", seed=11)
    first = make([1.0, -1.0, 0.5, -0.5] + [0.0] * 4, step=0)
    sel.select(first)  # capacity = 4
    later = make([0.0] * 8, step=1)  # nothing informative now: all from the buffer
    out = sel.select(later)
    assert len(out.samples) == 4 and all(out.from_buffer) and out.indices == [-1] * 4
    assert out.stats["n_from_earlier_steps"] == 4
    assert all(
        x.step == 0 and x.behaviour_logprobs is first[x.completion_ids[0]].behaviour_logprobs for x in out.samples
    )
    assert out.stats[M.EFFECTIVE_BEFORE_SSR] == 0.0 and out.stats[M.EFFECTIVE_AFTER_SSR] == 1.0
    # whole copies when more is missing than the buffer holds
    big = SampleSelector("released", seed=0, batch_size=9, buffer_capacity=4)
    o = big.select(make([1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert o.stats[M.SSR_REPLAYED] == 8 and len(o.samples) == 9


def test_released_nothing_anywhere_skips_instead_of_spinning():
    out = SampleSelector("released").select(make([0.0] * 8))
    assert out.skipped_update and out.samples == []


@pytest.mark.parametrize("mode", SSR_MODES)
def test_deterministic_and_state_round_trip(mode):
    steps = [make(list(np.random.default_rng(k).choice([0, 0, 0.5, -1, 2], 12)), step=k) for k in range(4)]
    a = SampleSelector(mode, seed=5)
    b = SampleSelector(mode, seed=5)
    for s in steps[:2]:
        assert a.select(s).indices == b.select(s).indices
    state = a.state_dict()
    # the rng state survives JSON, the whole state survives pickle and torch.save
    json.dumps(state["rng"])
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    restored = SampleSelector(mode, seed=999)
    restored.load_state_dict(pickle.loads(pickle.dumps(torch.load(buf, weights_only=False))))
    for s in steps[2:]:
        x, y = a.select(s), restored.select(s)
        assert x.indices == y.indices and x.from_buffer == y.from_buffer
        assert [t.advantage for t in x.samples] == [t.advantage for t in y.samples]
    assert len(restored.buffer) == len(a.buffer)


def test_bad_input():
    with pytest.raises(ValueError, match="mode"):
        SampleSelector("greedy")
    with pytest.raises(ValueError, match="non-finite"):
        SampleSelector("paper").select(make([1.0, float("nan")]))
    with pytest.raises(ValueError, match="mode"):
        SampleSelector("paper").load_state_dict(SampleSelector("filter").state_dict())
    with pytest.raises(ValueError, match="non-zero"):
        ssr_probabilities([0.0, 0.0])
    assert ssr_probabilities([0.0, 1.0, -3.0]).tolist() == [0.0, 0.25, 0.75]
    assert ssr_probabilities([0.0, 1.0, -3.0], alpha=2).tolist() == [0.0, 0.1, 0.9]


def test_released_staleness_cap_drops_samples_older_than_max_age():
    """max_age=1: at step 3 the buffer replays only samples of steps 2 and 3; without a
    cap the step-1 samples are still drawn."""
    from rethinker.algo.ssr import SSRConfig

    def run(max_age):
        sel = SampleSelector.from_config(SSRConfig(mode="released", max_age=max_age, batch_size=16), seed=5)
        sel.buffer_capacity = 64
        for step in (1, 2):
            sel.select(make([1.0, -1.0, 0.5, -0.5] + [0.0] * 4, step=step))
        return sel, sel.select(make([0.0] * 8, step=3))  # nothing informative now: all replayed

    capped_sel, capped = run(1)
    assert {x.step for x in capped_sel.buffer} == {2} and {x.step for x in capped.samples} == {2}
    assert capped.stats[M.SSR_REPLAY_AGE_MAX] == 1.0 and len(capped.samples) == 16
    free_sel, free = run(None)
    assert {x.step for x in free_sel.buffer} == {1, 2} and {x.step for x in free.samples} == {1, 2}
    assert free.stats[M.SSR_REPLAY_AGE_MAX] == 2.0
    with pytest.raises(ValueError, match="max_age"):
        SSRConfig(mode="released", max_age=-1)
