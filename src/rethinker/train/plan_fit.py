"""Does the memory plan fit the GPUs, and if not, the smallest change that would.

``dry_run`` is what ``rethinker train --dry-run`` prints: the plan's table, then
``fits: peak X GiB of G GiB per GPU`` or ``does not fit: ...`` and, when it does not fit,
the first of these changes that fits, as the flag to pass:

1. a larger vLLM tensor-parallel size T (powers of two that divide the ranks and fit in a
   node; vLLM engine only);
2. fewer ``rollout.max_batch_queries`` (halved down to 1; the transformers engine's
   generation chunk: vLLM schedules its own batch);
3. LoRA adapters (``--lora-rank 64``);
4. more ranks (doubled up to ``MAX_RANKS``; full fine-tuning only).

The figures are estimates (``plan.py``): allocator caching and fragmentation come on top.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from .plan import GIB, MemoryPlan, Workload, count_parameters, model_config_for, plan, plan_device

MAX_RANKS = 1024
LORA_RANK = 64
PlanOf = Callable[[Any, int], MemoryPlan]


def _with(cfg, section: str, **values):
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **values)})


def _changes(cfg, world: int, gpus_per_node: int) -> Iterator[tuple[str, Any, int]]:
    """``(flag, config, ranks)`` of each change to try, in order."""
    r = cfg.rollout
    if r.engine == "vllm":
        t = r.vllm_tensor_parallel_size * 2
        while t <= min(gpus_per_node, world):
            if world % t == 0:
                changed = _with(cfg, "rollout", vllm_tensor_parallel_size=t)
                yield f"--rollout.vllm-tensor-parallel-size {t}", changed, world
            t *= 2
    else:
        m = r.max_batch_queries // 2
        while m >= 1:
            yield f"--rollout.max-batch-queries {m}", _with(cfg, "rollout", max_batch_queries=m), world
            m //= 2
    if cfg.model.lora_rank == 0:  # in one process or sharded alike
        yield f"--lora-rank {LORA_RANK}", _with(cfg, "model", lora_rank=LORA_RANK), world
    w = world * 2
    while w <= MAX_RANKS:
        yield f"--world-size {w}", cfg, w
        w *= 2


def smallest_change(cfg, world: int, gpus_per_node: int, plan_of: PlanOf) -> tuple[str, MemoryPlan] | None:
    """The first change (``_changes``' order) whose plan fits, with that plan; None: none."""
    for flag, changed, w in _changes(cfg, world, gpus_per_node):
        p = plan_of(changed, w)
        if p.fits:
            return flag, p
    return None


def verdict(p: MemoryPlan) -> list[str]:
    """``fits: ...`` or ``does not fit: ...`` and what stops it."""
    g = p.gpu_bytes or 0.0
    unit = "per GPU" if p.device == "cuda" else "per rank"
    if p.fits:
        return [f"fits: peak {p.peak / GIB:.1f} GiB of {g / GIB:.0f} GiB {unit}"]
    if p.peak > g:
        lines = [f"does not fit: peak {p.peak / GIB:.1f} GiB > {g / GIB:.0f} GiB {unit}"]
    else:
        lines = [f"does not fit: peak {p.peak / GIB:.1f} GiB of {g / GIB:.0f} GiB {unit}, but vLLM would not start"]
    lines += [f"  {problem}" for problem in p.problems]
    if p.gathered > g:
        rest = max(p.rollout_peak - p.gathered, p.update_peak, p.sync_peak)
        lines.append(
            f"  the policy gathered whole on every rank ({p.gathered / GIB:.1f} GiB more: the transformers engine "
            f"samples from the unsharded policy) exceeds the GPU by itself; without it the peak would be "
            f"{rest / GIB:.1f} GiB (--rollout.engine vllm keeps the policy sharded)"
        )
    return lines


def planner(cfg, *, device: str, workload: Workload | None, runtime: float | None, gpu_gib: float) -> PlanOf:
    """``plan_of(cfg, world)``: plans of ``cfg`` and its variants from one model config,
    the parameter counts kept per LoRA setting (a 72B model is built once, on meta)."""
    mc, model_dir, source = model_config_for(cfg)
    counts: dict[tuple[int, str | None], Any] = {}

    def plan_of(c, world: int) -> MemoryPlan:
        key = (c.model.lora_rank, c.model.lora_targets)
        if key not in counts:
            counts[key] = count_parameters(mc, *key)
        p = plan(
            c,
            mc,
            world,
            device=device,
            workload=workload,
            model_dir=model_dir,
            runtime=runtime,
            counts=counts[key],
            gpu_gib=gpu_gib,
        )
        p.source = source
        return p

    return plan_of


def dry_run(
    cfg,
    world: int,
    *,
    gpu_gib: float,
    gpus_per_node: int = 8,
    workload: Workload | None = None,
    device: str | None = None,
    runtime: float | None = None,
) -> tuple[MemoryPlan, str]:
    """The plan of ``cfg`` on ``world`` ranks of ``gpu_gib`` GiB and the text ``rethinker
    train --dry-run`` prints: the table, the verdict and, when it does not fit, the
    smallest change that fits."""
    device = device or plan_device(cfg)
    if runtime is None and device == "cpu":
        from .plan import runtime_bytes

        runtime = runtime_bytes()
    plan_of = planner(cfg, device=device, workload=workload, runtime=runtime, gpu_gib=gpu_gib)
    p = plan_of(cfg, world)
    lines = [p.table(), "", *verdict(p)]
    if not p.fits:
        found = smallest_change(cfg, world, gpus_per_node, plan_of)
        if found is not None:
            flag, q = found
            lines.append(f"smallest change that fits: {flag} (peak {q.peak / GIB:.1f} GiB)")
        else:
            lines.append(
                "none of these fits: a larger vLLM tensor-parallel size, fewer rollout.max_batch_queries, "
                f"LoRA, more ranks (up to {MAX_RANKS})"
            )
    lines.append("(an estimate from the config: live tensors; allocator caching and fragmentation come on top)")
    return p, "\n".join(lines)
