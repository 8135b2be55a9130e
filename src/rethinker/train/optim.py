"""The optimizer and its learning-rate schedule."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, sharded: bool) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters. Fused (one kernel for all parameters, faster
    than the default on a CPU too) unless FSDP2's DTensor parameters need the default."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = not sharded and all(p.device.type in ("cpu", "cuda") for p in trainable)
    return torch.optim.AdamW(
        trainable,
        lr=cfg.optim.lr,
        betas=tuple(cfg.optim.betas),
        weight_decay=cfg.optim.weight_decay,
        fused=fused or None,
    )


def updates_per_step(cfg: TrainConfig) -> int:
    """Optimizer steps per rollout step: the SSR batch split into mini-batches."""
    n_samples = cfg.rollout.queries_per_step * cfg.rollout.group_size
    return max(math.ceil((cfg.ssr.batch_size or n_samples) / (cfg.optim.mini_batch_size or n_samples)), 1)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``optim.warmup_steps`` optimizer steps, then constant or cosine
    decay to ``optim.min_lr_ratio`` of the peak at the run's last optimizer step."""
    warm, kind, floor = cfg.optim.warmup_steps, cfg.optim.scheduler, cfg.optim.min_lr_ratio
    total = cfg.max_steps * updates_per_step(cfg)

    def factor(i: int) -> float:
        if warm and i < warm:
            return (i + 1) / warm
        if kind == "cosine":
            t = (i - warm) / max(total - warm, 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
