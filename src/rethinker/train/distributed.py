"""Multi-process training on PyTorch's own stack: ``torchrun`` + FSDP2 (``fully_shard``).

    torchrun --nproc_per_node N -m rethinker train ...          # one machine
    torchrun --nnodes M --node_rank R --nproc_per_node N \\
             --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m rethinker train ...

At start-up (``load_sharded_policy``) rank 0 alone reads the policy's weights; the other
ranks build it on the ``meta`` device, every rank shards it and rank 0's weights are
broadcast into the shards, so no other rank ever holds the whole model (a resume from a
DCP checkpoint of full weights reads the base on no rank).

How the loop uses it (``train/loop.py``):
- every rank draws the same global query batch and generates for its share
  (``records[rank::world]``); each GRPO group stays whole on one rank;
- rollouts and evaluation with the transformers engine run with the parameters gathered
  (``gathered``), so ranks generate different lengths without collectives; a vLLM engine
  holds its own weights and the policy stays sharded (``rollout_weights``);
- log-prob passes outside the update (behaviour log-probs) run on the shards in lockstep:
  every rank runs as many forwards as the rank with the most (zero-weight fillers), so
  FSDP2 gathers one unit at a time;
- samples are gathered to every rank and SSR draws from the global pool with the same
  seed everywhere (identical selection); each rank trains on its share of every
  mini-batch, in lockstep (the same number of forward/backward passes on every rank);
- the loss denominator is the global token count divided by the world size, because
  FSDP averages gradients over ranks: the update equals the single-process one;
- checkpoints hold full (unsharded) weights and optimizer state, so a run resumes at
  any world size.
On CPU the backend is gloo, on GPU nccl.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from .. import metric_names as M
from ..model.load import load_policy


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives (no-ops in one process) ----------------------------------------
    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def _reduce(self, value: float, op) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=op)
        return float(t.item())

    def max_float(self, value: float) -> float:
        return self._reduce(value, dist.ReduceOp.MAX)

    def sum_float(self, value: float) -> float:
        return self._reduce(value, dist.ReduceOp.SUM)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed() -> DistContext:
    """Join the process group that ``torchrun`` describes (WORLD_SIZE > 1), else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank=rank, world=world, local_rank=local_rank)


def shard_model(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """FSDP2: each decoder layer, the vision tower (its blocks, then the tower) and the
    root are sharding units. The root is initialised at once so that the vision tower can
    be called on its own (pre-computed image features). A PEFT model (LoRA) is sharded the
    same way: its frozen base weights and its adapters live in the same units.

    A model built on the ``meta`` device (``load_policy(..., weights=False)``) is
    materialised here, each rank allocating only its shards (``to_empty``); its values are
    to be loaded afterwards (``broadcast_weights`` or a DCP checkpoint), and its
    non-persistent buffers (rotary ``inv_freq``) are computed again as ``from_pretrained`` does."""
    mesh = init_device_mesh(device.type, (ctx.world,))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT's wrapper removed
    inner = getattr(base, "model", base)
    visual = getattr(inner, "visual", None)
    lm = getattr(inner, "language_model", inner)
    if visual is not None:
        for block in getattr(visual, "blocks", []):
            fully_shard(block, mesh=mesh)
        fully_shard(visual, mesh=mesh)
    for layer in getattr(lm, "layers", []):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model.to_empty(device=device)
        _init_non_persistent_buffers(base)
    model._get_fsdp_state()._lazy_init()
    return model


def _init_non_persistent_buffers(model: torch.nn.Module) -> None:
    """The buffers no state dict holds (Qwen2.5-VL: the text and vision rotary embeddings'
    ``inv_freq`` and ``original_inv_freq``), computed by the model's own ``_init_weights``
    on the modules that own them, as ``transformers``' ``from_pretrained`` does. Only modules
    without parameters of their own are touched (``_init_weights`` would draw new weights)."""
    for module in model.modules():
        if not getattr(module, "_non_persistent_buffers_set", None):
            continue
        if any(True for _ in module.parameters(recurse=False)):
            raise ValueError(f"{type(module).__name__}: non-persistent buffers beside parameters, cannot rebuild them")
        model._init_weights(module)


def load_sharded_policy(path: str, ctx: DistContext, device: torch.device, *, from_files: bool = True, **kw):
    """``load_policy(path, **kw)`` as this rank needs it: in one process as it is; with
    several, sharded (``shard_model``) without any rank but rank 0 holding the whole model:
    rank 0 reads the weights on the CPU, the others build the model on the ``meta`` device,
    and rank 0's weights are broadcast into every rank's shards. ``from_files=False``: no
    rank reads weights (they come from a DCP checkpoint next)."""
    reads = not ctx.enabled or (ctx.is_main and from_files)
    model, processor = load_policy(path, device=torch.device("cpu") if ctx.enabled else device, weights=reads, **kw)
    if ctx.enabled:
        full = model.state_dict() if reads else None  # references to rank 0's whole weights, held until broadcast
        shard_model(model, ctx, device)  # FSDP2 moves each unit to ``device`` as it shards it
        if from_files:
            broadcast_weights(model, full)
        del full
    return model, processor


def broadcast_weights(model: torch.nn.Module, full_state: dict[str, torch.Tensor] | None) -> None:
    """Rank 0's full weights (``full_state``, taken before sharding; None on the other
    ranks) into every rank's shards: one tensor at a time is broadcast and each rank keeps
    its own shard of it (``set_model_state_dict(..., broadcast_from_rank0=True)``)."""
    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, full_state if full_state is not None else {}, options=opts)


def _fsdp_modules(model: torch.nn.Module) -> list:
    return [m for m in model.modules() if hasattr(m, "unshard") and hasattr(m, "set_reshard_after_forward")]


@contextmanager
def gathered(model: torch.nn.Module, ctx: DistContext) -> Iterator[None]:
    """Hold every FSDP unit's full parameters for the duration (inference only): forwards
    then need no collectives, so ranks may run different numbers of them (generation)."""
    mods = _fsdp_modules(model) if ctx.enabled else []
    if not mods:
        yield
        return
    for m in mods:
        m.unshard()
        m.set_reshard_after_forward(False)
    try:
        yield
    finally:
        for m in mods:
            m.reshard()
            m.set_reshard_after_forward(True)


@contextmanager
def rollout_weights(engine, model: torch.nn.Module, ctx: DistContext) -> Iterator[None]:
    """The policy's parameters as ``engine`` needs them for a rollout: gathered when it runs
    the policy module itself (the transformers engine), left sharded when it holds weights
    of its own (vLLM), so no rank ever holds the whole policy for a vLLM rollout."""
    if getattr(engine, "holds_own_weights", False):
        yield
        return
    with gathered(model, ctx):
        yield


def full_model_state(model: torch.nn.Module, ctx: DistContext) -> dict[str, torch.Tensor] | None:
    """The full (unsharded) state dict on CPU, on the main rank (None elsewhere)."""
    if not ctx.enabled:
        return None
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return sd if ctx.is_main else None


def full_optimizer_state(model, optimizer, ctx: DistContext) -> dict | None:
    if not ctx.enabled:
        return get_optimizer_state_dict(model, optimizer)
    sd = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return sd if ctx.is_main else None


def load_optimizer_state(model, optimizer, state: dict, ctx: DistContext) -> None:
    opts = StateDictOptions(full_state_dict=True) if ctx.enabled else None
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=opts)


def merge_metrics(rows: list[dict[str, Any]], weights: list[float]) -> dict[str, Any]:
    """Combine per-rank (or per-round) metric dicts as each metric's schema entry says
    (``metric_names``): counts summed, times and maxima the maximum, everything else a
    mean weighted by ``weights``; the rates of two sums are recomputed from them."""
    if len(rows) == 1:
        return dict(rows[0])
    out: dict[str, Any] = {}
    keys = {k for r in rows for k in r}
    total_w = sum(weights) or 1.0
    for k in keys:
        vals = [(r[k], w) for r, w in zip(rows, weights) if r.get(k) is not None]
        if not vals:
            continue
        kind = M.merge_kind(k)
        if kind == "sum":
            out[k] = sum(v for v, _ in vals)
        elif kind == "max":
            out[k] = max(v for v, _ in vals)
        else:
            out[k] = sum(v * w for v, w in vals) / (sum(w for _, w in vals) or total_w)
    if M.ROLLOUT_TOKENS in out and out.get(M.TIME_ROLLOUT):
        out[M.ROLLOUT_TOKENS_PER_S] = out[M.ROLLOUT_TOKENS] / out[M.TIME_ROLLOUT]
    if out.get(M.RETHINK_ATTEMPTS):
        out[M.RETHINK_ACCEPTANCE] = out.get(M.RETHINK_ACCEPTED, 0) / out[M.RETHINK_ATTEMPTS]
    return out
