"""The memory plan's rows for the colocated vLLM engine (``rollout.engine vllm``).

T = ``rollout.vllm_tensor_parallel_size`` ranks share one engine, so per GPU it holds:

- **engine weights**: every parameter (the vision tower too) x the engine's dtype bytes
  (the policy's) / T.
- **engine working set**: what vLLM measures in its profiling run and keeps besides
  weights and KV: one layer's working set for ``VLLM_BATCHED_TOKENS`` tokens
  (4 h + 3 I / T elements per token, as the transformers prefill) or the sampler's fp32
  logits and probabilities for ``VLLM_MAX_SEQS`` rows, whichever is larger, plus
  ``VLLM_RUNTIME_BYTES`` for CUDA graphs, NCCL and cuBLAS (half with ``enforce_eager``).
- **KV pool**: ``vllm_kv_cache_gb`` when set; else vLLM's rule: the engine may use
  ``vllm_gpu_memory_utilization`` x the GPU's memory in all (weights + working set + KV),
  so the pool is that share less the weights and the working set. Per token it costs
  2 x layers x max(1, KV heads / T) x head_dim x bytes. The engine is started without
  ``max_model_len``, so vLLM takes the model's ``max_position_embeddings`` and refuses
  to start unless the pool holds one sequence that long.
- **sleep** (between rollouts, ``vllm_sleep_level``): level 1 frees the KV pool and
  offloads the weights to host memory (a host row: the engine weights per GPU); level 2
  discards both (re-pushed from the policy before the next rollout); level 0 keeps
  everything. Asleep the engine keeps its CUDA graphs and runtime buffers only.

The phases (``plan.py`` adds the training rows): the rollout holds the training state
(sharded weights, AdamW state, reference model; the policy is not gathered: vLLM holds
its own weights and log-prob passes run on the shards) and the awake engine;
the update holds the training state, gradients and activations and the engine asleep;
the weight sync after the update holds the training state, the engine's weights and one
full parameter in flight (the largest: the embedding, vocab x h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GIB = 2**30
#: vLLM's default ``max_num_batched_tokens`` and ``max_num_seqs`` for the offline ``LLM``
#: class on a GPU of 70 GiB or more: the profiling run's batch
VLLM_BATCHED_TOKENS = 16384
VLLM_MAX_SEQS = 1024
#: CUDA graphs, NCCL and cuBLAS workspaces (an estimate; half of it with enforce_eager)
VLLM_RUNTIME_BYTES = 1.0 * GIB


@dataclass
class EngineMemory:
    """One GPU's share of a vLLM engine, in bytes."""

    tp: int
    weights: float
    working: float
    kv_pool: float
    kv_per_token: float
    max_model_len: int
    asleep: float  # what stays on the GPU between rollouts
    host: float  # host memory per GPU while asleep (sleep level 1: the offloaded weights)
    rows: int  # this engine's rollout rows (its data-parallel group's queries x G)
    sequence_tokens: int  # one rollout sequence: prompt + response (+ a rethinking continuation)

    @property
    def awake(self) -> float:
        return self.weights + self.working + max(self.kv_pool, 0.0)

    @property
    def sequences(self) -> int:
        """Rollout sequences the KV pool holds at once."""
        return int(max(self.kv_pool, 0.0) // (self.kv_per_token * self.sequence_tokens))


def engine_memory(cfg, counts, b: int, gpu_bytes: float, world: int, sequence_tokens: int) -> EngineMemory:
    """The engine's per-GPU memory for ``cfg`` on GPUs of ``gpu_bytes``."""
    r, c = cfg.rollout, counts
    tp = r.vllm_tensor_parallel_size
    weights = c.total * b / tp
    runtime = VLLM_RUNTIME_BYTES / (2 if r.vllm_enforce_eager else 1)
    layer = VLLM_BATCHED_TOKENS * (4 * c.hidden + 3 * c.intermediate / tp) * b
    sampler = VLLM_MAX_SEQS * c.vocab * 4 * 2
    working = max(layer, sampler) + runtime
    head_dim = c.kv_dim // max(c.kv_heads, 1)
    kv_per_token = 2 * c.layers * max(1, math.ceil(c.kv_heads / tp)) * head_dim * b
    if r.vllm_kv_cache_gb is not None:
        kv_pool = r.vllm_kv_cache_gb * GIB
    else:
        kv_pool = r.vllm_gpu_memory_utilization * gpu_bytes - weights - working
    level = r.vllm_sleep_level
    asleep = weights + working + max(kv_pool, 0.0) if level == 0 else runtime
    groups = max(world // tp, 1)
    return EngineMemory(
        tp=tp,
        weights=weights,
        working=working,
        kv_pool=kv_pool,
        kv_per_token=kv_per_token,
        max_model_len=c.max_positions,
        asleep=asleep,
        host=weights if level == 1 else 0.0,
        rows=math.ceil(r.queries_per_step / groups) * r.group_size,
        sequence_tokens=sequence_tokens,
    )


def engine_problems(e: EngineMemory, cfg, gpu_bytes: float, resident_at_start: float) -> list[str]:
    """Why vLLM would refuse to start: no room for a KV pool, a pool short of one
    ``max_model_len`` sequence, or less free memory at start-up than its utilization share."""
    r, out = cfg.rollout, []
    if e.kv_pool <= 0:
        out.append(
            f"vLLM has no memory left for its KV pool: {r.vllm_gpu_memory_utilization:.0%} of {gpu_bytes / GIB:.0f} "
            f"GiB less {e.weights / GIB:.2f} GiB weights and {e.working / GIB:.2f} GiB working set"
        )
    elif e.kv_pool < e.kv_per_token * e.max_model_len:
        out.append(
            f"vLLM's KV pool ({e.kv_pool / GIB:.2f} GiB) holds {int(e.kv_pool // e.kv_per_token)} tokens, fewer than "
            f"one sequence of max_model_len {e.max_model_len} ({e.kv_per_token * e.max_model_len / GIB:.2f} GiB); "
            "vLLM refuses to start"
        )
    if r.vllm_kv_cache_gb is None and resident_at_start + r.vllm_gpu_memory_utilization * gpu_bytes > gpu_bytes:
        out.append(
            f"at start-up the trainer holds {resident_at_start / GIB:.2f} GiB, leaving less than vLLM's "
            f"{r.vllm_gpu_memory_utilization:.0%} share free; vLLM refuses to start"
        )
    return out


def engine_rows(e: EngineMemory, cfg) -> list[tuple[str, float, str]]:
    """``(name, bytes, note)`` of the engine's rows."""
    r, tp = cfg.rollout, e.tp
    per_tp = f" / T={tp}" if tp > 1 else ""
    if r.vllm_kv_cache_gb is not None:
        kv_note = f"vllm_kv_cache_gb {r.vllm_kv_cache_gb:g}"
    else:
        kv_note = f"{r.vllm_gpu_memory_utilization:.0%} of the GPU less weights and working set"
    kv_note += (
        f"; {e.kv_per_token / 1024:.0f} KiB/token: {e.sequences} sequences of {e.sequence_tokens} tokens at once "
        f"(the engine's rollout: {e.rows} rows)"
    )
    level = r.vllm_sleep_level
    sleep_note = {
        0: "sleep level 0: weights, KV pool and working set stay",
        1: "sleep level 1: KV pool freed, weights offloaded to host; CUDA graphs and buffers stay",
        2: "sleep level 2: KV pool and weights discarded; CUDA graphs and buffers stay",
    }[level]
    rows = [
        ("vLLM engine weights", e.weights, "all parameters x the policy's dtype" + per_tp),
        ("vLLM KV pool", max(e.kv_pool, 0.0), kv_note),
        (
            "vLLM working set",
            e.working,
            f"profiling run ({VLLM_BATCHED_TOKENS} tokens through one layer, or {VLLM_MAX_SEQS} rows of "
            "fp32 logits) + CUDA graphs and buffers",
        ),
        ("vLLM asleep (update phase)", e.asleep, sleep_note),
    ]
    if e.host:
        rows.append(("host memory: vLLM weights asleep", e.host, "pinned host memory per GPU (x GPUs per node)"))
    return rows
