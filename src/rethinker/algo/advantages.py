"""Group-relative advantages (GRPO) and group statistics.

For a prompt q with G sampled responses and rewards r_1..r_G (one group):

    scale="std"  (the paper's GRPO):   A_i = (r_i - mean(r)) / (std(r) + eps)
    scale="none" (the released code):  A_i =  r_i - mean(r)

``std`` is the sample (unbiased, G-1) standard deviation, ``torch.std``'s default, as TRL
and verl use. A group whose rewards are all equal (including G = 1) gets exactly 0.0 for
every member, not a rounding residue, so that selection code can test ``A == 0``.
The advantage of response i is shared by all its tokens (the loss broadcasts it).

Rewards are laid out group after group: ``rewards[g * G : (g + 1) * G]`` is group g.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

AdvantageScale = Literal["std", "none"]
ADVANTAGE_SCALES: tuple[str, ...] = ("std", "none")


def check_advantage_scale(scale: str, name: str = "scale") -> None:
    """Raise ``ValueError`` unless ``scale`` is one of ``ADVANTAGE_SCALES`` (``name``: what
    the message calls it; the training config passes its key)."""
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"{name} must be one of {'|'.join(ADVANTAGE_SCALES)}, got {scale!r}")


def _grouped(rewards: Tensor, group_size: int) -> Tensor:
    """Validate ``rewards`` ([N], N divisible by ``group_size``) and view it as [N/G, G]."""
    if not isinstance(rewards, Tensor):
        rewards = torch.as_tensor(rewards)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if rewards.numel() % group_size != 0:
        raise ValueError(f"rewards has {rewards.numel()} entries, not a multiple of group_size={group_size}")
    if not torch.isfinite(rewards.double()).all():
        raise ValueError("rewards contain NaN or inf")
    return rewards.double().view(-1, group_size)


def group_advantages(
    rewards: Tensor,
    group_size: int,
    scale: AdvantageScale = "std",
    eps: float = 1e-6,
) -> Tensor:
    """Per-response advantages A [N] from rewards [N] laid out group by group.

    A_i = (r_i - mean_g(r)) / (std_g(r) + eps) for ``scale="std"``; A_i = r_i - mean_g(r)
    for ``scale="none"``; std is the unbiased sample std of the group. Groups whose rewards
    are identical give exactly 0.0. Computed in float64, returned in the rewards' floating
    dtype (float32 for integer input).
    """
    check_advantage_scale(scale)
    out_dtype = rewards.dtype if torch.is_tensor(rewards) and rewards.is_floating_point() else torch.float32
    device = rewards.device if torch.is_tensor(rewards) else None
    r = _grouped(rewards, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "std":
        if group_size > 1:
            std = r.std(dim=1, keepdim=True)  # unbiased (G - 1)
            adv = centred / (std + eps)
        else:
            adv = torch.zeros_like(r)
    else:
        adv = centred
    all_equal = r.max(dim=1, keepdim=True).values == r.min(dim=1, keepdim=True).values
    adv = torch.where(all_equal, torch.zeros_like(adv), adv)
    return adv.reshape(-1).to(dtype=out_dtype, device=device)


def advantages_by_group(
    rewards: Tensor, group_ids: Sequence[int], scale: AdvantageScale = "std", eps: float = 1e-6
) -> Tensor:
    """``group_advantages`` for groups of any size: ``group_ids[i]`` names response i's
    group (a group may hold G first-pass responses plus kept rethinks). The same formula
    per group; returned in the rewards' floating dtype (float32 for integer input)."""
    check_advantage_scale(scale)
    r_all = torch.as_tensor(rewards)
    if r_all.dim() != 1 or r_all.numel() != len(group_ids):
        raise ValueError(
            f"rewards [N] and group_ids must have the same length, got {tuple(r_all.shape)}, {len(group_ids)}"
        )
    if not torch.isfinite(r_all.double()).all():
        raise ValueError("rewards contain NaN or inf")
    out_dtype = r_all.dtype if r_all.is_floating_point() else torch.float32
    members: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids):
        members.setdefault(int(g), []).append(i)
    adv = torch.zeros(len(group_ids), dtype=torch.float64)
    for idx in members.values():
        r = r_all.double()[idx]
        if len(idx) < 2 or r.max() == r.min():
            continue  # one response, or all equal: exactly 0
        centred = r - r.mean()
        adv[idx] = centred / (r.std() + eps) if scale == "std" else centred
    return adv.to(dtype=out_dtype, device=r_all.device)


@dataclass(frozen=True)
class GroupStats:
    """Shares of groups that give no learning signal, plus the reward mean: ``groups``
    (count), ``zero_adv_share`` (all rewards equal: every advantage is 0),
    ``all_correct_share`` (every r_i >= correct_threshold), ``all_wrong_share`` (every
    r_i < correct_threshold), ``reward_mean``, ``correct_share`` (share of responses with
    r_i >= correct_threshold)."""

    groups: float
    zero_adv_share: float
    all_correct_share: float
    all_wrong_share: float
    reward_mean: float
    correct_share: float


def group_stats(rewards: Tensor, group_size: int, correct_threshold: float = 1.0) -> GroupStats:
    """``GroupStats`` of rewards [N] laid out group by group."""
    r = _grouped(rewards, group_size)
    correct = r >= correct_threshold
    equal = r.max(dim=1).values == r.min(dim=1).values
    return GroupStats(
        groups=float(r.shape[0]),
        zero_adv_share=float(equal.double().mean()) if r.numel() else 0.0,
        all_correct_share=float(correct.all(dim=1).double().mean()) if r.numel() else 0.0,
        all_wrong_share=float((~correct).all(dim=1).double().mean()) if r.numel() else 0.0,
        reward_mean=float(r.mean()) if r.numel() else 0.0,
        correct_share=float(correct.double().mean()) if r.numel() else 0.0,
    )
