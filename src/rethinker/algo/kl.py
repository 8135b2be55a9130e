"""Per-token KL estimators between the policy and a reference policy (Schulman, "Approximating
KL divergence"). Tokens are sampled from the policy pi; with log r = logp_ref - logp:

    k1 = -log r            = logp - logp_ref            (unbiased for KL(pi || ref), can be < 0)
    k2 = (log r)^2 / 2                                  (biased, low variance, >= 0)
    k3 = exp(log r) - log r - 1                          (unbiased, >= 0 since e^x >= 1 + x)

The method trains without a KL term (docs/method.md); the estimators are here for the option
and for monitoring. With ``ref_logprobs=None`` (no reference model) the penalty is 0.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

KLKind = Literal["k1", "k2", "k3"]


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor | None, kind: KLKind = "k3") -> Tensor:
    """Per-token KL estimate (same shape as logprobs); zeros when ``ref_logprobs`` is None.

    k1 = lp - ref; k2 = (ref - lp)^2 / 2; k3 = exp(ref - lp) - (ref - lp) - 1.
    Callers mask and average (e.g. ``losses.masked_mean``). k3's log-ratio is clamped to
    [-20, 20] so that exp() stays finite.
    """
    if kind not in ("k1", "k2", "k3"):
        raise ValueError(f"kind must be 'k1', 'k2' or 'k3', got {kind!r}")
    if ref_logprobs is None:
        return torch.zeros_like(logprobs)
    if ref_logprobs.shape != logprobs.shape:
        raise ValueError(f"ref_logprobs shape {tuple(ref_logprobs.shape)} != logprobs shape {tuple(logprobs.shape)}")
    log_r = ref_logprobs.to(logprobs.dtype) - logprobs
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r.square()
    log_r = log_r.clamp(-20.0, 20.0)
    return (torch.exp(log_r) - log_r - 1.0).clamp(min=0.0)
