"""GRPO group advantages: properties and exact values."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rethinker.algo.advantages import group_advantages, group_stats

REWARD = st.sampled_from([-0.1, 0.0, 1.0, 1.1, 0.5])


@st.composite
def grouped_rewards(draw):
    g = draw(st.integers(1, 8))
    n_groups = draw(st.integers(1, 6))
    vals = draw(st.lists(REWARD, min_size=g * n_groups, max_size=g * n_groups))
    return torch.tensor(vals, dtype=torch.float32), g


@settings(max_examples=60, deadline=None)
@given(grouped_rewards(), st.sampled_from(["std", "none"]))
def test_zero_sum_per_group(data, scale):
    r, g = data
    a = group_advantages(r, g, scale=scale).view(-1, g)
    assert torch.allclose(a.double().sum(dim=1), torch.zeros(a.shape[0], dtype=torch.float64), atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 5), REWARD, st.sampled_from(["std", "none"]))
def test_equal_rewards_give_exact_zero(g, n_groups, value, scale):
    r = torch.full((g * n_groups,), value, dtype=torch.float32)
    a = group_advantages(r, g, scale=scale)
    assert (a == 0.0).all()  # exact, not approximately


@settings(max_examples=60, deadline=None)
@given(grouped_rewards(), st.floats(-5, 5, allow_nan=False), st.sampled_from(["std", "none"]))
def test_invariant_to_adding_constant(data, c, scale):
    r, g = data
    a = group_advantages(r.double(), g, scale=scale)
    b = group_advantages(r.double() + c, g, scale=scale)
    assert torch.allclose(a, b, atol=1e-6)
    # groups that were all-equal stay exactly zero after the shift
    eq = r.view(-1, g).max(1).values == r.view(-1, g).min(1).values
    assert (b.view(-1, g)[eq] == 0).all()


def test_known_values_std_uses_unbiased_std():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    a = group_advantages(r, 4, scale="std", eps=0.0)
    # mean 0.25, unbiased std = sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    assert torch.allclose(a, torch.tensor([1.5, -0.5, -0.5, -0.5]))
    assert torch.allclose(group_advantages(r, 4, scale="none"), torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_groups_are_independent_and_dtype_kept():
    r = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    a = group_advantages(r, 2)
    assert a.dtype == torch.float64
    assert a[2:].tolist() == [0.0, 0.0]
    assert a[0] == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-6), rel=1e-6)
    assert group_advantages(torch.tensor([1, 0]), 2).dtype == torch.float32


@pytest.mark.parametrize(
    "rewards, g, match",
    [
        (torch.zeros(5), 2, "multiple"),
        (torch.zeros(2, 2), 2, "1-D"),
        (torch.tensor([1.0, float("nan")]), 2, "NaN"),
        (torch.zeros(4), 0, "group_size"),
    ],
)
def test_bad_input_is_rejected(rewards, g, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, g)


def test_bad_scale_rejected():
    with pytest.raises(ValueError, match="scale"):
        group_advantages(torch.zeros(2), 2, scale="max")


def test_group_stats():
    r = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0, -0.1, -0.1])
    s = group_stats(r, 2)
    assert s.groups == 4
    assert s.zero_adv_share == 0.75
    assert s.all_correct_share == 0.25
    assert s.all_wrong_share == 0.5
    assert s.correct_share == pytest.approx(3 / 8)
    assert s.reward_mean == pytest.approx((3 - 0.2) / 8)


@pytest.mark.parametrize("scale", ["std", "none"])
def test_advantages_by_group_match_fixed_groups_and_take_any_size(scale):
    from rethinker.algo.advantages import advantages_by_group

    torch.manual_seed(0)
    r = torch.randint(0, 3, (24,)).double() / 2
    fixed = group_advantages(r, 4, scale)
    assert torch.allclose(advantages_by_group(r, [i // 4 for i in range(24)], scale), fixed, atol=1e-12)
    # a group of 5 (4 slots + 1 appended rethink), a group of 1, an all-equal group of 3
    r = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    adv = advantages_by_group(r, [0, 0, 0, 0, 0, 1, 2, 2, 2], scale)
    assert torch.allclose(adv[:5], group_advantages(r[:5], 5, scale), atol=1e-12)
    assert adv[5:].tolist() == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="same length"):
        advantages_by_group(r, [0, 1], scale)
    with pytest.raises(ValueError, match="NaN"):
        advantages_by_group(torch.tensor([float("nan"), 1.0]), [0, 0], scale)
