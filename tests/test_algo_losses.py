"""Policy loss (PPO-clip, aggregations, accumulation), SFT auxiliary loss, helpers, KL estimators."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rethinker.algo.kl import kl_penalty
from rethinker.algo.losses import entropy_from_logits, masked_mean, policy_loss, sft_aux_loss

AGGS = ["token-mean", "sequence-mean", "sequence-sum-norm"]


@st.composite
def batch(draw):
    b = draw(st.integers(1, 4))
    t = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    mask = torch.rand(b, t, generator=g) < 0.7
    mask[:, 0] = True  # every response has at least one token
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    return lp, mask, adv


@settings(max_examples=40, deadline=None)
@given(batch(), st.sampled_from(AGGS))
def test_ratio_one_equals_unclipped_surrogate(data, agg):
    lp, mask, adv = data
    x = lp.clone().requires_grad_(True)
    loss, stats = policy_loss(x, lp, adv, mask, aggregation=agg, max_tokens=7)
    m = mask.double()
    per_token = -adv[:, None] * m  # -ratio * A with ratio = 1
    if agg == "token-mean":
        expected = per_token.sum() / m.sum()
    elif agg == "sequence-mean":
        expected = (per_token.sum(1) / m.sum(1)).mean()
    else:
        expected = (per_token.sum(1) / 7).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-12)
    # d(ratio * A)/d logp = ratio * A = A at ratio 1: the gradient is the plain policy gradient
    loss.backward()
    x2 = lp.clone().requires_grad_(True)
    ref = {
        "token-mean": lambda z: (-(torch.exp(z - lp) * adv[:, None]) * m).sum() / m.sum(),
        "sequence-mean": lambda z: ((-(torch.exp(z - lp) * adv[:, None]) * m).sum(1) / m.sum(1)).mean(),
        "sequence-sum-norm": lambda z: ((-(torch.exp(z - lp) * adv[:, None]) * m).sum(1) / 7).mean(),
    }[agg](x2)
    ref.backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-12)
    assert stats["ratio_min"] == stats["ratio_max"] == 1.0
    assert stats["clip_frac_low"] == stats["clip_frac_high"] == 0.0
    assert stats["approx_kl"] == 0.0


@settings(max_examples=60, deadline=None)
@given(st.floats(-3.0, 3.0, allow_nan=False), st.sampled_from([-1.0, -0.3, 0.4, 2.0]))
def test_gradient_zero_exactly_where_clipped(log_ratio, a):
    lo, hi = 0.2, 0.35
    ratio = math.exp(log_ratio)
    if min(abs(ratio - (1 - lo)), abs(ratio - (1 + hi))) < 1e-6:
        return  # at the boundary the subgradient is ambiguous
    old = torch.tensor([[-1.0]], dtype=torch.float64)
    x = (old + log_ratio).requires_grad_(True)
    loss, stats = policy_loss(
        x, old, torch.tensor([a], dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool), lo, hi
    )
    loss.backward()
    clipped = (a > 0 and ratio > 1 + hi) or (a < 0 and ratio < 1 - lo)
    if clipped:
        assert x.grad.item() == 0.0
        assert loss.item() == pytest.approx(-a * min(max(ratio, 1 - lo), 1 + hi))
        assert stats["clip_frac_high" if a > 0 else "clip_frac_low"] == 1.0
    else:
        # unclipped side: gradient of -ratio * A, i.e. -A * ratio (never zero)
        assert x.grad.item() == pytest.approx(-a * ratio, rel=1e-9)
        assert loss.item() == pytest.approx(-a * ratio)
        assert stats["clip_frac_high"] == stats["clip_frac_low"] == 0.0


def test_masked_non_finite_logprobs_do_not_poison():
    lp = torch.tensor([[-0.5, float("-inf"), float("nan")], [-1.0, -2.0, float("inf")]], requires_grad=True)
    old = torch.tensor([[-0.5, float("nan"), -3.0], [-1.0, -2.0, float("-inf")]])
    mask = torch.tensor([[True, False, False], [True, True, False]])
    for agg in AGGS:
        loss, stats = policy_loss(lp, old, torch.tensor([1.0, -2.0]), mask, aggregation=agg, max_tokens=4)
        assert torch.isfinite(loss)
        (g,) = torch.autograd.grad(loss, lp)
        assert torch.isfinite(g).all()
        assert (g[~mask] == 0).all()
        assert all(math.isfinite(v) for v in stats.values())
    aux, _ = sft_aux_loss(lp, mask, torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0]))
    (g,) = torch.autograd.grad(aux, lp)
    assert torch.isfinite(aux) and torch.isfinite(g).all()


def test_aggregation_values_by_hand():
    # ratio 1 everywhere; response 0 has 3 tokens with A=1, response 1 has 1 token with A=-2
    lp = torch.zeros(2, 3)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    adv = torch.tensor([1.0, -2.0])

    def val(agg, **kw):
        return policy_loss(lp, lp, adv, mask, aggregation=agg, **kw)[0].item()

    assert val("token-mean") == pytest.approx((-3 + 2) / 4)
    assert val("sequence-mean") == pytest.approx((-1 + 2) / 2)
    assert val("sequence-sum-norm", max_tokens=10) == pytest.approx((-3 / 10 + 2 / 10) / 2)
    with pytest.raises(ValueError, match="max_tokens"):
        val("sequence-sum-norm")
    with pytest.raises(ValueError, match="aggregation"):
        val("sum")


@settings(max_examples=25, deadline=None)
@given(batch(), st.sampled_from(AGGS), st.integers(1, 3))
def test_normalizer_makes_micro_batch_sum_equal_full_batch(data, agg, n_micro):
    lp, mask, adv = data
    old = lp + 0.3 * torch.sin(torch.arange(lp.numel(), dtype=torch.float64)).view_as(lp)
    full, _ = policy_loss(lp, old, adv, mask, aggregation=agg, max_tokens=5)
    normalizer = mask.sum().item() if agg == "token-mean" else lp.shape[0]
    total = 0.0
    for rows in torch.arange(lp.shape[0]).chunk(n_micro):
        part, _ = policy_loss(
            lp[rows], old[rows], adv[rows], mask[rows], aggregation=agg, max_tokens=5, normalizer=normalizer
        )
        total += part.item()
    assert total == pytest.approx(full.item(), abs=1e-10)


def test_stats_clip_fractions_and_ratio_range():
    old = torch.zeros(1, 4)
    lp = torch.log(torch.tensor([[0.5, 0.5, 1.5, 1.0]]))
    adv = torch.tensor([[-1.0, 1.0, 1.0, 1.0]])  # [B, T] advantages accepted too
    _, s = policy_loss(lp, old, adv, torch.ones(1, 4, dtype=torch.bool))
    assert s["clip_frac_low"] == 0.25  # ratio 0.5 with A < 0
    assert s["clip_frac_high"] == 0.25  # ratio 1.5 with A > 0
    assert s["ratio_min"] == pytest.approx(0.5) and s["ratio_max"] == pytest.approx(1.5)
    assert s["ratio_mean"] == pytest.approx(0.875)
    kl = (0.5 - 1 - math.log(0.5)) * 2 + (1.5 - 1 - math.log(1.5))
    assert s["approx_kl"] == pytest.approx(kl / 4)
    assert s["n_tokens"] == 4


def test_empty_mask_gives_zero_loss_with_grad():
    lp = torch.full((2, 2), float("nan"), requires_grad=True)
    loss, s = policy_loss(lp, torch.zeros(2, 2), torch.ones(2), torch.zeros(2, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and (lp.grad == 0).all()
    assert s["n_tokens"] == 0


def test_shape_errors():
    with pytest.raises(ValueError, match="share one shape"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="clip"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3), clip_low=1.5)


def test_sft_aux_loss_selects_correct_positive_responses():
    lp = torch.tensor([[-1.0, -3.0], [-2.0, -2.0], [-5.0, -5.0], [-7.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False], [True, True], [True, True]])
    rewards = torch.tensor([1.0, 1.1, 0.0, 1.0])
    adv = torch.tensor([0.5, 0.2, 1.0, -0.3])  # row 2 wrong, row 3 negative advantage
    loss, s = sft_aux_loss(lp, mask, rewards, adv)
    assert loss.item() == pytest.approx((1 + 3 + 2) / 3)
    assert s == {"n_sequences": 2.0, "n_tokens": 3.0}
    loss.backward()
    assert lp.grad[2:].abs().sum() == 0 and lp.grad[1, 1] == 0
    assert lp.grad[0, 0].item() == pytest.approx(-1 / 3)
    # [B, T] advantages are reduced per response; a global normalizer replaces the count
    loss2, _ = sft_aux_loss(lp, mask, rewards, adv[:, None].expand(4, 2), normalizer=6)
    assert loss2.item() == pytest.approx(6 / 6)


def test_sft_aux_loss_none_selected_is_graph_connected_zero():
    lp = torch.randn(2, 3, requires_grad=True)
    loss, s = sft_aux_loss(lp, torch.ones(2, 3), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
    assert loss.item() == 0.0 and s["n_sequences"] == 0
    loss.backward()
    assert (lp.grad == 0).all()


def test_entropy_and_masked_mean():
    logits = torch.randn(3, 5, 7)
    ref = torch.distributions.Categorical(logits=logits).entropy()
    assert torch.allclose(entropy_from_logits(logits), ref, atol=1e-5)
    assert entropy_from_logits(torch.zeros(4)).item() == pytest.approx(math.log(4))
    x = torch.tensor([[1.0, float("nan")], [3.0, 5.0]])
    m = torch.tensor([[True, False], [True, True]])
    assert masked_mean(x, m).item() == pytest.approx(3.0)
    assert torch.allclose(masked_mean(x, m, dim=1), torch.tensor([1.0, 4.0]))
    assert masked_mean(x, torch.zeros(2, 2)).item() == 0.0


# ---------------------------------------------------------------- KL estimators


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-30, 0, allow_nan=False), min_size=1, max_size=8), st.integers(0, 1000))
def test_k3_and_k2_nonnegative(lps, seed):
    lp = torch.tensor(lps, dtype=torch.float64)
    ref = lp + torch.randn(len(lps), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 10
    assert (kl_penalty(lp, ref, "k3") >= 0).all()
    assert (kl_penalty(lp, ref, "k2") >= 0).all()
    assert torch.allclose(kl_penalty(lp, ref, "k1"), lp - ref)


# statistical check: derandomize fixes the examples (and seeds), so a pass is reproducible
@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_k1_and_k3_means_match_true_kl_on_sampled_categoricals(seed, v):
    """Tokens drawn from pi: mean k1 and mean k3 estimate KL(pi || ref). Tolerance: 5 standard
    errors of the sample mean (false-failure rate below 1e-6 per check)."""
    g = torch.Generator().manual_seed(seed)
    logp = torch.log_softmax(torch.randn(v, generator=g, dtype=torch.float64), 0)
    logq = torch.log_softmax(torch.randn(v, generator=g, dtype=torch.float64), 0)
    true_kl = (logp.exp() * (logp - logq)).sum().item()
    n = 20_000
    x = torch.multinomial(logp.exp(), n, replacement=True, generator=g)
    for kind in ("k1", "k3"):
        est = kl_penalty(logp[x], logq[x], kind)
        se = est.std().item() / math.sqrt(n)
        assert abs(est.mean().item() - true_kl) <= 5 * se + 1e-9, kind


def test_kl_reference_optional_and_checked():
    lp = torch.randn(2, 3)
    assert (kl_penalty(lp, None, "k1") == 0).all()
    with pytest.raises(ValueError, match="kind"):
        kl_penalty(lp, lp, "k4")
    with pytest.raises(ValueError, match="shape"):
        kl_penalty(lp, torch.zeros(3), "k3")
    assert kl_penalty(torch.tensor([0.0]), torch.tensor([-1000.0]), "k3").isfinite().all()


def test_sequence_ratio_is_gspo():
    """ratio_level="sequence": every token carries s_i = exp(mean_t log rho_t); its
    gradient is s_i * A_i * grad logp_t / |y_i| under sequence-mean (GSPO-token), and
    clipping acts on whole sequences."""
    from rethinker.algo.losses import policy_loss

    old = torch.tensor([[-1.0, -2.0, -0.5, 0.0], [-1.0, -1.0, -1.0, -1.0]], dtype=torch.float64)
    delta = torch.tensor([[0.3, -0.1, 0.1, 0.0], [2.0, -2.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    lp = (old + delta).requires_grad_(True)
    loss, st = policy_loss(lp, old, adv, mask, 0.2, 0.35, "sequence-mean", ratio_level="sequence")
    s = torch.exp(torch.tensor([0.3 / 3, 0.0], dtype=torch.float64))  # mean log-ratio of each response
    expected = -(s[0] * 1.0 + s[1] * -1.0) / 2  # no clipping: s within [0.8, 1.35]
    torch.testing.assert_close(loss, expected)
    loss.backward()
    grad = torch.zeros_like(old)
    grad[0, :3] = -s[0] * 1.0 / 3 / 2
    grad[1, :] = -s[1] * -1.0 / 4 / 2
    torch.testing.assert_close(lp.grad, grad)
    # a token ratio of e^2 is clipped token by token, not when the sequence's mean is 1
    _, tok = policy_loss(old + delta, old, adv, mask, 0.2, 0.35, "sequence-mean")
    _, seq = policy_loss(old + delta, old, adv, mask, 0.2, 0.35, "sequence-mean", ratio_level="sequence")
    assert tok["clip_frac_low"] > 0 and seq["clip_frac_low"] == 0 and seq["ratio_max"] == pytest.approx(float(s[0]))
    with pytest.raises(ValueError, match="ratio_level"):
        policy_loss(lp, old, adv, mask, ratio_level="group")


def test_optimizer_step_logs_the_norm_of_the_parameter_change():
    """update/param_delta_norm: with plain SGD the change is lr x the gradient."""
    from rethinker.train.distributed import DistContext
    from rethinker.train.update import UpdateStats, _optimizer_step

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    model(torch.randn(4, 3)).pow(2).sum().backward()
    grad = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters())).item()
    stats = UpdateStats()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _optimizer_step(model, opt, None, 0.0, DistContext(), 1.0, stats, log_update_norm=True)
    assert stats.delta_norms == [pytest.approx(0.1 * grad, rel=1e-5)] and stats.grad_norms == [pytest.approx(grad)]
    _optimizer_step(model, opt, None, 0.0, DistContext(), float("nan"), stats, log_update_norm=True)
    assert len(stats.delta_norms) == 1 and stats.skipped == 1  # a skipped step changes nothing
