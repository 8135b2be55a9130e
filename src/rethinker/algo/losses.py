"""Policy-gradient losses: PPO-clip with asymmetric ranges, the auxiliary SFT loss, helpers.

PPO-clip surrogate per response token t of response i (ratio against the behaviour policy
that generated the sample, "old"):

    rho_t  = exp(logp_t - logp_old_t)
    L_t    = -min(rho_t * A_i, clip(rho_t, 1 - eps_low, 1 + eps_high) * A_i)

(released code: eps_low = 0.2, eps_high = 0.35, "clip-higher" as in DAPO). Aggregation over
the masked tokens of a batch of B responses (M_it = mask):

    token-mean        : sum_it M_it L_it / sum_it M_it
    sequence-mean     : 1/B sum_i ( sum_t M_it L_it / sum_t M_it )
    sequence-sum-norm : 1/B sum_i ( sum_t M_it L_it / max_tokens )      (Dr.GRPO)

Sequence-level ratios (GSPO, arXiv 2507.18071; ``ratio_level="sequence"``): every token
of response i uses the response's length-normalised ratio

    s_i    = exp( 1/|y_i| sum_t (logp_t - logp_old_t) )

in the same clipped surrogate, written per token as s_t = sg[s_i] * exp(logp_t -
sg[logp_t]) so that its value is s_i and its gradient s_i * grad logp_t (GSPO-token);
with ``sequence-mean`` aggregation this is GSPO's objective. Sequence ratios stay much
closer to 1 than token ratios: GSPO clips at 3e-4 / 4e-4.

Gradient accumulation: a loss averaged per micro-batch and then averaged over micro-batches
is not the token-mean of the whole batch when micro-batches hold different token counts.
Pass ``normalizer`` = the denominator for the WHOLE batch (token-mean: total number of
masked-in tokens over all micro-batches; sequence-mean / sequence-sum-norm: total number
of sequences) and SUM the returned micro-batch losses (do not divide by the number of
micro-batches): the sum equals the full-batch loss exactly.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Aggregation = Literal["token-mean", "sequence-mean", "sequence-sum-norm"]
AGGREGATIONS: tuple[str, ...] = ("token-mean", "sequence-mean", "sequence-sum-norm")
RATIO_LEVELS: tuple[str, ...] = ("token", "sequence")


def check_aggregation(aggregation: str, name: str = "aggregation") -> None:
    """Raise ``ValueError`` unless ``aggregation`` is one of ``AGGREGATIONS`` (``name``: what
    the message calls it; the training config passes its key)."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"{name} must be one of {'|'.join(AGGREGATIONS)}, got {aggregation!r}")


def check_ratio_level(ratio_level: str, name: str = "ratio_level") -> None:
    """Raise ``ValueError`` unless ``ratio_level`` is one of ``RATIO_LEVELS``."""
    if ratio_level not in RATIO_LEVELS:
        raise ValueError(f"{name} must be one of {'|'.join(RATIO_LEVELS)}, got {ratio_level!r}")


# exp(20) ~ 4.9e8: far outside any clip range, so clamping the log-ratio there changes no
# loss value that matters and keeps exp() from overflowing to inf (inf * 0 = NaN in backward).
_MAX_LOG_RATIO = 20.0


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """sum(x * m) / sum(m) over ``dim`` (all elements when None); 0 where sum(m) == 0.

    Positions with m == 0 are replaced by 0 before summing, so NaN/inf there do not leak.
    """
    m = mask.to(torch.bool)
    xs = torch.where(m, x, torch.zeros_like(x))
    if dim is None:
        return xs.sum() / m.sum().clamp(min=1)
    return xs.sum(dim=dim) / m.sum(dim=dim).clamp(min=1)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of softmax(logits) over the last dim: H = logsumexp(l) - sum_v p_v l_v."""
    logits = logits.float()
    p = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(dim=-1)


def _check(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor) -> Tensor:
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be [B, T], got shape {tuple(logprobs.shape)}")
    if old_logprobs.shape != logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError(
            "logprobs, old_logprobs and mask must share one shape, got "
            f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(mask.shape)}"
        )
    return mask.to(torch.bool)


def _token_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    a = advantages.to(like.dtype)
    if a.dim() == 1:
        if a.shape[0] != like.shape[0]:
            raise ValueError(f"advantages [B] has B={a.shape[0]}, logprobs has B={like.shape[0]}")
        return a[:, None].expand_as(like)
    if a.shape != like.shape:
        raise ValueError(f"advantages must be [B] or [B, T], got shape {tuple(a.shape)}")
    return a


def _aggregate(
    per_token: Tensor,
    mask: Tensor,
    aggregation: str,
    max_tokens: int | None,
    normalizer: float | None,
) -> Tensor:
    check_aggregation(aggregation)
    summed_per_seq = per_token.sum(dim=1)  # masked positions are already 0
    if aggregation == "token-mean":
        denom = float(normalizer) if normalizer is not None else mask.sum().clamp(min=1)
        return summed_per_seq.sum() / denom
    n_seq = float(normalizer) if normalizer is not None else max(per_token.shape[0], 1)
    if aggregation == "sequence-mean":
        return (summed_per_seq / mask.sum(dim=1).clamp(min=1)).sum() / n_seq
    if max_tokens is None or max_tokens <= 0:  # sequence-sum-norm
        raise ValueError("aggregation 'sequence-sum-norm' needs max_tokens > 0 (Dr.GRPO constant)")
    return (summed_per_seq / float(max_tokens)).sum() / n_seq


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.35,
    aggregation: Aggregation = "token-mean",
    max_tokens: int | None = None,
    normalizer: float | None = None,
    ratio_level: str = "token",
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip loss with asymmetric clipping; returns (loss, stats).

    ``ratio_level="sequence"``: GSPO's sequence ratio instead of the token ratio (module
    docstring); the clip fractions then count the tokens of clipped sequences.

    L_t = -min(rho_t A, clip(rho_t, 1 - clip_low, 1 + clip_high) A), rho_t = exp(lp_t - old_t),
    aggregated as the module docstring says (``normalizer``: whole-batch denominator for
    gradient accumulation). logprobs/old_logprobs/mask: [B, T]; advantages: [B] (shared
    by every token of a response) or [B, T]. Non-finite log-probs at masked-out positions
    are replaced by 0 before the ratio; the log-ratio is clamped to +-20 before exp.

    stats (floats, over masked-in tokens): ``clip_frac_low`` (share with rho < 1 - clip_low
    and A < 0: the clipped branch is active, zero gradient), ``clip_frac_high`` (rho >
    1 + clip_high and A > 0), ``approx_kl`` (k3 estimate of KL(old || new): mean of
    rho - 1 - log rho), ``ratio_min``, ``ratio_max``, ``ratio_mean``, ``n_tokens``.
    """
    if clip_low < 0 or clip_low >= 1 or clip_high < 0:
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")
    m = _check(logprobs, old_logprobs, mask)
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    lp = torch.where(m, logprobs, zero)
    old = torch.where(m, old_logprobs.detach().to(logprobs.dtype), zero)
    adv = torch.where(m, _token_advantages(advantages.detach(), lp), zero)

    check_ratio_level(ratio_level)
    log_ratio = (lp - old).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    if ratio_level == "sequence":
        seq = (log_ratio * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # mean log-ratio per response
        log_ratio = torch.where(m, seq.detach()[:, None] + lp - lp.detach(), zero)
    ratio = torch.exp(log_ratio)
    surr_unclipped = ratio * adv
    surr_clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * adv
    per_token = -torch.minimum(surr_unclipped, surr_clipped)
    per_token = torch.where(m, per_token, zero)
    loss = _aggregate(per_token, m, aggregation, max_tokens, normalizer)

    return loss, _ratio_stats(ratio, log_ratio, adv, m, clip_low, clip_high)


@torch.no_grad()
def _ratio_stats(
    ratio: Tensor, log_ratio: Tensor, adv: Tensor, m: Tensor, clip_low: float, clip_high: float
) -> dict[str, float]:
    """``policy_loss``'s statistics over the masked-in tokens (neutral values when none)."""
    n = int(m.sum())
    if n == 0:
        return {"clip_frac_low": 0.0, "clip_frac_high": 0.0, "approx_kl": 0.0, "ratio_min": 1.0, "ratio_max": 1.0,
                "ratio_mean": 1.0, "n_tokens": 0.0}  # fmt: skip
    r, lr, a = ratio[m].double(), log_ratio[m].double(), adv[m]
    return {
        "clip_frac_low": float(((r < 1.0 - clip_low) & (a < 0)).double().mean()),
        "clip_frac_high": float(((r > 1.0 + clip_high) & (a > 0)).double().mean()),
        "approx_kl": float((r - 1.0 - lr).mean()),
        "ratio_min": float(r.min()),
        "ratio_max": float(r.max()),
        "ratio_mean": float(r.mean()),
        "n_tokens": float(n),
    }


def sft_aux_loss(
    logprobs: Tensor,
    mask: Tensor,
    rewards: Tensor,
    advantages: Tensor,
    correct_threshold: float = 1.0,
    normalizer: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Auxiliary NLL on correct, positive-advantage responses (released ``group_sft``).

    S = {i : r_i >= correct_threshold and A_i > 0};
    loss = -sum_{i in S} sum_t M_it logp_it / sum_{i in S} sum_t M_it
    (``normalizer``: that token count over the whole batch, for gradient accumulation).
    When S is empty the loss is a graph-connected 0.0 (zero gradient, no NaN).
    The released code uses reward > 0.99, i.e. the same set for rewards in {-0.1, 0, 1, 1.1}.
    advantages: [B] or [B, T] (then the per-response value is its masked mean).
    stats: ``n_sequences``, ``n_tokens`` (in S).
    """
    if logprobs.dim() != 2 or mask.shape != logprobs.shape:
        raise ValueError("logprobs and mask must both be [B, T]")
    m = mask.to(torch.bool)
    b = logprobs.shape[0]
    rewards = torch.as_tensor(rewards, device=logprobs.device).reshape(-1)
    if rewards.shape[0] != b:
        raise ValueError(f"rewards has {rewards.shape[0]} entries for B={b}")
    adv = torch.as_tensor(advantages, device=logprobs.device).detach().double()
    if adv.dim() == 2:
        adv = masked_mean(adv, m, dim=1)
    adv = adv.reshape(-1)
    if adv.shape[0] != b:
        raise ValueError(f"advantages has {adv.shape[0]} entries for B={b}")
    chosen = (rewards.double() >= correct_threshold) & (adv > 0)
    token_mask = m & chosen[:, None]
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    lp = torch.where(token_mask, logprobs, zero)
    n_tok = int(token_mask.sum())
    stats = {"n_sequences": float(chosen.sum()), "n_tokens": float(n_tok)}
    if n_tok == 0:
        return lp.sum() * 0.0, stats
    denom = float(normalizer) if normalizer is not None else float(n_tok)
    return -lp.sum() / denom, stats
