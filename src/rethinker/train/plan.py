"""A memory plan: what one training step holds per rank, from the config alone (no weights).

``plan(cfg, model_config, world)`` counts the model's parameters on the meta device and
prices each part of a step (``rethinker train --dry-run`` prints it):

- **weights**: parameters x dtype bytes; under FSDP2 (world > 1) each rank holds 1/world,
  and during a transformers-engine rollout (``distributed.gathered``) the whole model is
  unsharded on every rank (+ the full weights again); with vLLM it stays sharded. LoRA
  adds its adapters in fp32 (PEFT upcasts adapters of a bf16/fp16 model).
- **gradients**: trainable parameters (LoRA: adapters only; ``freeze_vision``: the vision
  tower excluded) x their dtype, / world. Freed after each update.
- **AdamW state**: 2 moments per trainable parameter in the parameter's own dtype (torch's
  AdamW: bf16 parameters keep bf16 moments; LoRA adapters fp32), / world. Persistent.
- **activations per micro-batch** (the update; ``micro_batch_size`` = B rows of T = P + C
  tokens, P the prompt with its visual tokens, C = max_new_tokens): per text layer and
  token, autograd keeps a_layer elements of the compute dtype (b bytes), counted with
  ``saved_tensors_hooks`` on Qwen2.5-VL decoder layers (transformers 5.2x, sdpa; checked by
  ``tests/test_memory_plan.py``):

      full fine-tuning   b = 2: 10 h + 2 kv + 4 I     b = 4: 8 h + 2 kv + 4 I
      LoRA (fp32 adapters on a bf16 base): 18 h + kv + 5 I      fp32 base: 6 h + kv + 4 I

  (h hidden, kv = KV heads x head_dim, I the MLP width). With gradient checkpointing only
  each layer's input is kept (h per layer and token), and the update runs the full
  sequence (``score``); without it, each distinct prompt runs once (``score_grouped``):
  a_layer x layers x (U x P + B x C) with U <= min(B, queries_per_step) distinct queries,
  plus the prompt's key/value cache repeated for the B rows. Either way the backward pass
  adds one layer's working set, ~2 x a_layer per token (its saved or recomputed tensors
  and their gradients). The vision
  tower adds the same per patch (kv = its hidden) when it trains, nothing when frozen.
  **logits**: B x (C + 1) x vocab x (b + 12) bytes (the logits, their fp32 copy and the
  log-sum-exp / entropy temporaries; the update computes logits only from the first
  completion-predicting position).
- **visual tokens per image**: Qwen2.5-VL resizes an image so that its sides are
  multiples of patch x merge (28 px) and its area lies within [min_pixels, max_pixels]
  (``smart_resize``); one token per 28 x 28 pixels: at most max_pixels / 784, at least
  min_pixels / 784.
- **rollout KV cache**: 2 x layers x kv x b x (P + max_new_tokens) x rows, rows = the
  queries of one generation chunk (``max_batch_queries``, at most this rank's share of
  ``queries_per_step``) x G; plus the prefill's transient working set (one layer's
  4 h + 3 I per prompt token, the vision tower's 4 h + 3 I per patch), where Forced
  Rethinking's continuations count as prompts of their own (prompt + first answer +
  trigger, one per continued response, up to ``max_batch_queries`` at once).
- **vLLM** (``rollout.engine vllm``): the engine's weights / T, its KV pool, working set,
  what it keeps asleep and the host memory sleep level 1 takes; ``plan_vllm.py`` says how
  each is priced. The transformers engine's KV cache and prefill rows are left out.
- **runtime**: on a CPU, the process itself (Python, torch, transformers) holds memory
  before any model exists: measured in the calling process (``runtime_bytes``); on a GPU
  it is not device memory and is left out (the CUDA context, ~0.5 GiB, is not counted).

Peak per rank = weights + AdamW state + reference model + max(rollout: gathered weights +
KV cache + prefill working set, update: gradients + activations + logits) + runtime; with
vLLM: max(rollout: the engine awake (the policy stays sharded), update: gradients + activations +
logits + the engine asleep, weight sync: the engine's weights + one full parameter).
These are live-tensor estimates: allocator caching and fragmentation come on top. On a
CPU, glibc's malloc raises its mmap threshold as large blocks are freed, after which
freed activations stay in the heap and the RSS grows layer by layer through the update,
so a measured peak RSS lies above the plan (``benchmarks/real_shape.py`` compares them;
the README's results give the figures).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..model.pixels import resolve_pixel_limits
from .host import proc_status_bytes
from .plan_host import HostMemory, TensorCounts, host_memory, host_table, tensor_counts
from .plan_vllm import EngineMemory, engine_memory, engine_problems, engine_rows

GIB = 2**30
#: the longest toy puzzle prompt's text tokens (chat template + question + suffix)
TOY_PROMPT_TEXT_TOKENS = 66


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 14 * 14 * 4 * 1280
) -> tuple[int, int]:
    """Qwen2-VL / 2.5-VL's resize rule: sides rounded to multiples of ``factor``, area
    brought within [min_pixels, max_pixels] keeping the aspect ratio."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def visual_tokens(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28) -> int:
    """Visual tokens of one image (one per factor x factor pixels after ``smart_resize``)."""
    h, w = smart_resize(height, width, factor, min_pixels, max_pixels)
    return (h // factor) * (w // factor)


@dataclass
class ModelCounts:
    """Parameter counts of a model built from its config on the meta device."""

    total: int
    vision: int
    lora: int  # adapter parameters LoRA would add (0 without LoRA)
    layers: int
    hidden: int
    kv_dim: int
    intermediate: int
    vocab: int
    largest_layer: int  # parameters of the largest decoder layer / vision block (FSDP2 all-gathers one at a time)
    kv_heads: int = 1
    max_positions: int = 0  # the text model's max_position_embeddings (vLLM's default max_model_len)
    vision_depth: int = 0
    vision_hidden: int = 0
    vision_intermediate: int = 0
    patch: int = 14
    merge: int = 2
    temporal_patch: int = 2
    checkpoint: TensorCounts | None = None  # what a checkpoint holds (``plan_host``)


def _text_config(config):
    return getattr(config, "text_config", None) or config


def count_parameters(config, lora_rank: int = 0, lora_targets: str | None = None) -> ModelCounts:
    """Count the parameters of the model ``config`` describes (built on the meta device:
    no memory, no weights), and the adapters LoRA of ``lora_rank`` on ``lora_targets``
    (regex over module names, PEFT's full-match rule) would add."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        try:
            model = AutoModelForImageTextToText.from_config(config)
        except ValueError:  # a text-only config
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_config(config)
    params = dict(model.named_parameters())  # shared (tied) weights once
    total = sum(p.numel() for p in params.values())
    vision = sum(p.numel() for n, p in params.items() if ".visual." in f".{n}" or "vision" in n)
    lora, adapters = 0, []
    if lora_rank > 0 and lora_targets:
        rx = re.compile(lora_targets)
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and rx.fullmatch(name):
                lora += lora_rank * (mod.in_features + mod.out_features)
                adapters += [lora_rank * mod.in_features, lora_rank * mod.out_features]
    largest = 0
    for mod in model.modules():
        if type(mod).__name__.endswith(("DecoderLayer", "VisionBlock")):
            largest = max(largest, sum(p.numel() for p in mod.parameters()))
    tc = _text_config(config)
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    vc = getattr(config, "vision_config", None)
    kv_heads = getattr(tc, "num_key_value_heads", None) or tc.num_attention_heads
    counts = ModelCounts(
        total=total,
        vision=vision,
        lora=lora,
        layers=tc.num_hidden_layers,
        hidden=tc.hidden_size,
        kv_dim=kv_heads * head_dim,
        intermediate=tc.intermediate_size,
        vocab=tc.vocab_size,
        largest_layer=largest,
        kv_heads=kv_heads,
        max_positions=getattr(tc, "max_position_embeddings", 0) or 0,
        checkpoint=tensor_counts(model, params, adapters),
    )
    if vc is not None:
        counts.vision_depth = getattr(vc, "depth", 0) or getattr(vc, "num_hidden_layers", 0)
        counts.vision_hidden = vc.hidden_size
        counts.vision_intermediate = getattr(vc, "intermediate_size", 4 * vc.hidden_size)
        counts.patch = getattr(vc, "patch_size", 14)
        counts.merge = getattr(vc, "spatial_merge_size", 2)
        counts.temporal_patch = getattr(vc, "temporal_patch_size", 2)
    return counts


def layer_activation_elements(h: int, kv: int, inter: int, dtype_bytes: int, lora_rank: int = 0) -> float:
    """Elements (of the compute dtype) autograd keeps per token in one decoder layer (see
    the module docstring for where the coefficients come from)."""
    if lora_rank > 0:
        if dtype_bytes < 4:
            return 18 * h + kv + 5 * inter + 34 * lora_rank
        return 6 * h + kv + 4 * inter + 24 * lora_rank
    if dtype_bytes < 4:
        return 10 * h + 2 * kv + 4 * inter
    return 8 * h + 2 * kv + 4 * inter


@dataclass
class Workload:
    """What the config does not say: the prompts' shape. Images are priced at max_pixels
    (the worst case) unless ``image_hw`` gives their size; ``prompt_text_tokens`` None:
    ``TOY_PROMPT_TEXT_TOKENS`` for the toy preset, 256 otherwise."""

    images_per_query: int = 1
    prompt_text_tokens: int | None = None
    image_hw: tuple[int, int] | None = None
    visual_tokens: int | None = None  # the query's visual tokens (all its images), when known exactly


@dataclass
class Row:
    name: str
    bytes: float
    note: str = ""


@dataclass
class MemoryPlan:
    world: int
    device: str
    dtype: str
    counts: ModelCounts
    trainable: int
    visual_tokens_min: int | None
    visual_tokens_max: int | None
    prompt_tokens: int
    rows: list[Row] = field(default_factory=list)
    rollout_peak: float = 0.0
    update_peak: float = 0.0
    sync_peak: float = 0.0  # vLLM: the weight push after the update
    peak: float = 0.0
    warnings: list[str] = field(default_factory=list)
    gathered: float = 0.0  # the policy unsharded on every rank (rollouts and log-prob passes)
    engine: EngineMemory | None = None
    gpu_bytes: float | None = None  # the GPU's memory the engine's share is taken of
    problems: list[str] = field(default_factory=list)  # why it cannot run, whatever the peak
    source: str = ""  # where the model's shape came from, when not its config.json
    host: HostMemory | None = None  # a checkpoint's host memory and size on disk (``plan_host``)

    @property
    def fits(self) -> bool:
        return self.gpu_bytes is not None and self.peak <= self.gpu_bytes and not self.problems

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def table(self) -> str:
        c = self.counts
        lines = [
            f"memory plan: {self.world} rank(s), {self.device}, {self.dtype}"
            + (f", vLLM tensor-parallel {self.engine.tp}" if self.engine else ""),
            *([self.source] if self.source else []),
            f"parameters: {_count(c.total)} ({_count(c.vision)} vision), trainable "
            f"{_count(self.trainable)}" + (" (LoRA adapters)" if c.lora else ""),
            f"visual tokens per image: {self.visual_tokens_min} at min_pixels, {self.visual_tokens_max} at "
            f"max_pixels; prompt {self.prompt_tokens} tokens",
            "",
            "| part | per rank | note |",
            "|---|---|---|",
        ]
        for r in self.rows:
            lines.append(f"| {r.name} | {_fmt(r.bytes)} | {r.note} |")
        lines += [
            f"| **peak, rollout phase** | {_fmt(self.rollout_peak)} | |",
            f"| **peak, update phase** | {_fmt(self.update_peak)} | |",
            *([f"| **peak, weight sync** | {_fmt(self.sync_peak)} | |"] if self.engine else []),
            f"| **peak per rank** | **{_fmt(self.peak)}** | estimate; allocator overhead on top |",
        ]
        if self.host is not None:
            lines += host_table(self.host, _fmt)
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "world": self.world,
            "device": self.device,
            "dtype": self.dtype,
            "parameters": self.counts.total,
            "trainable": self.trainable,
            "visual_tokens_min": self.visual_tokens_min,
            "visual_tokens_max": self.visual_tokens_max,
            "prompt_tokens": self.prompt_tokens,
            "rows": {r.name: r.bytes for r in self.rows},
            "rollout_peak": self.rollout_peak,
            "update_peak": self.update_peak,
            "sync_peak": self.sync_peak,
            "peak": self.peak,
            "fits": self.fits,
            "problems": list(self.problems),
            "host": self.host.as_dict() if self.host is not None else None,
        }


def _count(n: float) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def _fmt(n: float) -> str:
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    return f"{n / 2**20:.1f} MiB"


def runtime_bytes() -> float:
    """This process's resident memory now: called after torch and transformers are
    imported, it is the CPU runtime's baseline."""
    return proc_status_bytes("VmRSS")


#: Bytes per element of each ``model.dtype`` name.
DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}


def _dtype_bytes(dtype: str, device: str) -> int:
    """The compute dtype's bytes (``auto``: bfloat16 on CUDA, float32 elsewhere)."""
    name = dtype if dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
    return DTYPE_BYTES[name]


def _per_rank(world: int, sep: str = "") -> str:
    return f" / {world}{sep}" if world > 1 else ""


class _Tokens(NamedTuple):
    """One query's shape as the plan prices it."""

    prompt: int  # P: text + visual tokens + a vision start/end pair per image
    completion: int  # C: max_new_tokens
    patches: int  # the vision tower's patches (before the merge)


def _config_warnings(cfg, world: int) -> list[str]:
    """What the plan's figures do not cover for this config."""
    warnings = []
    return warnings


def _query_tokens(out: MemoryPlan, cfg, wl: Workload, model_dir: str | None) -> _Tokens:
    """The prompt's tokens: text + visual tokens (+ vision start/end per image); records
    the visual tokens per image at min/max pixels and the prompt length on ``out``."""
    c = out.counts
    factor = c.patch * c.merge
    lo, hi = resolve_pixel_limits(model_dir, cfg.model.min_pixels, cfg.model.max_pixels)
    per_image = 0
    if c.vision_depth and wl.images_per_query:
        if lo:
            out.visual_tokens_min = visual_tokens(factor, factor, lo, hi or 10**12, factor)  # a small image, upscaled
        if hi:
            out.visual_tokens_max = hi // factor**2
        if wl.image_hw is not None:
            per_image = visual_tokens(*wl.image_hw, lo or factor**2, hi or 10**12, factor)
        else:
            per_image = out.visual_tokens_max or 1280
    vis_query = wl.visual_tokens if wl.visual_tokens is not None else wl.images_per_query * per_image
    text_tokens = wl.prompt_text_tokens
    if text_tokens is None:
        text_tokens = TOY_PROMPT_TEXT_TOKENS if cfg.preset == "toy" else 256
    out.prompt_tokens = text_tokens + vis_query + 2 * wl.images_per_query
    return _Tokens(out.prompt_tokens, cfg.rollout.max_new_tokens, vis_query * c.merge**2)


def _state_rows(out: MemoryPlan, cfg, b: int, train_bytes: int) -> tuple[float, float, float, float, float]:
    """Rows for the persistent state and the gradients; returns
    ``(weights, adapters, gradients, adam, reference)`` in bytes."""
    c, world, trainable, m = out.counts, out.world, out.trainable, cfg.model
    weights = c.total * b / world
    adapters = c.lora * 4 / world
    grads = trainable * train_bytes / world
    adam = 2 * trainable * train_bytes / world
    ref = c.total * b / world if cfg.algo.kl_coef > 0 and not m.lora_rank else 0.0  # LoRA: its adapters off
    out.rows.append(Row("weights", weights, f"{_count(c.total)} x {b} B" + _per_rank(world, " (FSDP2)")))
    if adapters:
        out.rows.append(
            Row("LoRA adapters", adapters, f"{_count(c.lora)} x 4 B (fp32), rank {m.lora_rank}" + _per_rank(world))
        )
    out.rows.append(
        Row("gradients", grads, f"{_count(trainable)} trainable x {train_bytes} B" + _per_rank(world) + "; update only")
    )
    out.rows.append(Row("AdamW state", adam, f"2 moments x {train_bytes} B" + _per_rank(world)))
    if ref:
        out.rows.append(Row("reference model", ref, "kl_coef > 0: a frozen copy" + _per_rank(world, " (FSDP2)")))
    return weights, adapters, grads, adam, ref


def _activation_bytes(out: MemoryPlan, cfg, b: int, tok: _Tokens) -> tuple[float, float, str]:
    """One micro-batch's activations: ``(text layers, vision tower, note)`` in bytes. The
    backward pass works on one layer at a time: its saved tensors (recomputed, when
    checkpointed) and their gradients, ~2 x a_layer per token."""
    c, m = out.counts, cfg.model
    L, h, B, P, C = c.layers, c.hidden, cfg.optim.micro_batch_size, tok.prompt, tok.completion
    T = P + C
    a_layer = layer_activation_elements(h, c.kv_dim, c.intermediate, b, m.lora_rank)
    U = min(B, cfg.rollout.queries_per_step)  # distinct queries in a micro-batch, worst case
    if m.gradient_checkpointing:
        act = (L * B * T * h + 2 * B * T * a_layer) * b
        note = f"checkpointed: {L} layers x {B} x {T} tokens x h + 2 x one layer's {a_layer:.0f}/token"
    else:
        tokens = U * P + B * C
        act = (a_layer * (L + 1) * tokens + 2 * L * c.kv_dim * P * B) * b
        note = (
            f"{a_layer:.0f} elements/token/layer x ({L} layers + 1 in backward) x ({U}x{P} prompt + "
            f"{B}x{C} completion) + the prompt KV for {B} rows"
        )
    vis_act = 0.0
    vision_trains = m.lora_rank <= 0 and not m.freeze_vision and c.vision_depth > 0
    if vision_trains and tok.patches:
        patches = U * tok.patches
        va = layer_activation_elements(c.vision_hidden, c.vision_hidden, c.vision_intermediate, b)
        vis_act = (
            (c.vision_depth * patches * c.vision_hidden + patches * va) * b
            if m.gradient_checkpointing
            else c.vision_depth * patches * va * b
        )
    return act, vis_act, note


def _update_rows(out: MemoryPlan, cfg, b: int, tok: _Tokens) -> tuple[float, float, float, float]:
    """Rows for one micro-batch of the update; returns ``(activations, vision
    activations, logits, FSDP2 all-gather buffers)`` in bytes."""
    c, B, C = out.counts, cfg.optim.micro_batch_size, tok.completion
    act, vis_act, act_note = _activation_bytes(out, cfg, b, tok)
    logits = B * (C + 1) * c.vocab * (b + 12)
    out.rows.append(
        Row("activations / micro-batch", act + vis_act, act_note + (f"; vision {_fmt(vis_act)}" if vis_act else ""))
    )
    out.rows.append(Row("logits / micro-batch", logits, f"{B} x {C + 1} x {c.vocab} x {b + 12} B"))
    fsdp_gather = 2 * c.largest_layer * b if out.world > 1 else 0.0
    if fsdp_gather:
        out.rows.append(Row("FSDP2 all-gather buffers", fsdp_gather, "two unsharded layers in flight"))
    return act, vis_act, logits, fsdp_gather


def _gathered_row(out: MemoryPlan, b: int) -> float:
    """The rest of the policy, unsharded on every rank: the loop gathers it around the
    transformers engine's rollouts (which run the policy module itself; a vLLM engine
    holds its own weights and the policy stays sharded; log-prob passes run sharded)."""
    c, world = out.counts, out.world
    out.gathered = c.total * b * (1 - 1 / world) if world > 1 else 0.0
    if out.gathered:
        out.rows.append(Row("rollout: gathered weights", out.gathered, "the rest of the model, unsharded for sampling"))
    return out.gathered


def _rollout_rows(out: MemoryPlan, cfg, b: int, tok: _Tokens) -> tuple[float, float]:
    """Rows for the transformers engine's KV cache and prefill working set; returns
    ``(KV cache, prefill)`` in bytes."""
    c, world, G, P = out.counts, out.world, cfg.rollout.group_size, tok.prompt
    L, h, kv, inter, T = c.layers, c.hidden, c.kv_dim, c.intermediate, tok.prompt + tok.completion
    q_rank = math.ceil(cfg.rollout.queries_per_step / world)
    U_roll = min(cfg.rollout.max_batch_queries, q_rank)
    rows = U_roll * G
    kv_cache = 2 * L * kv * b * T * rows
    # the prefill: one row per query; Forced Rethinking's continuations are prompts of their
    # own (prompt + first answer + trigger, images again), up to max_batch_queries at once
    n_pre, p_pre = U_roll, P
    rc = cfg.rethink_for_rollout()
    if rc is not None:
        n_pre = max(n_pre, min(cfg.rollout.max_batch_queries, rows))
        p_pre = P + max(rc.max_response_tokens - rc.headroom_tokens, 0) + 16  # 16: the trigger's tokens, at most
    prefill = max(
        n_pre * p_pre * (4 * h + 3 * inter), n_pre * tok.patches * (4 * c.vision_hidden + 3 * c.vision_intermediate)
    )
    prefill = prefill * b + rows * c.vocab * 4 * 3
    out.rows.append(
        Row(
            "rollout KV cache",
            kv_cache,
            f"2 x {L} x {kv} x {b} B x {T} tokens x {rows} rows ({U_roll} queries x G={G})",
        )
    )
    out.rows.append(
        Row(
            "rollout prefill working set",
            prefill,
            f"{n_pre} prompts of {p_pre} tokens, one layer"
            + (" (Forced Rethinking's continuations)" if n_pre > U_roll or p_pre > P else ""),
        )
    )
    return kv_cache, prefill


def _vllm_phases(out: MemoryPlan, cfg, b: int, tok: _Tokens, resident: float, start: float, update: float) -> None:
    """The rollout, update and weight-sync peaks with the vLLM engine (``plan_vllm.py``):
    ``resident`` the training state through the step, ``start`` what the trainer holds when
    the engine starts, ``update`` the update phase without the engine."""
    gpu = out.gpu_bytes if out.gpu_bytes is not None else 80 * GIB
    e = engine_memory(cfg, out.counts, b, gpu, out.world, tok.prompt + tok.completion)
    out.engine = e
    out.rows += [Row(*r) for r in engine_rows(e, cfg)]
    out.problems += engine_problems(e, cfg, gpu, start)
    in_flight = out.counts.vocab * out.counts.hidden * b  # the embedding, gathered whole for the push
    out.rollout_peak = resident + e.awake
    out.update_peak = update + e.asleep
    out.sync_peak = resident + in_flight + (e.awake if cfg.rollout.vllm_sleep_level == 0 else e.weights + e.asleep)


def plan(
    cfg,
    model_config,
    world: int = 1,
    *,
    device: str = "cpu",
    dtype_bytes: int | None = None,
    workload: Workload | None = None,
    model_dir: str | None = None,
    runtime: float | None = None,
    counts: ModelCounts | None = None,
    gpu_gib: float | None = None,
) -> MemoryPlan:
    """The memory plan of ``cfg`` (a resolved ``TrainConfig``) for the model ``model_config``
    (a transformers config) on ``world`` ranks of ``device``. ``runtime``: the CPU runtime's
    baseline bytes (default: this process's RSS now, on a CPU; 0 on a GPU). ``gpu_gib``: each
    GPU's memory, which ``fits`` compares with and the vLLM engine takes its share of
    (None: 80 GiB for that share, and no verdict)."""
    m = cfg.model
    b = _dtype_bytes(m.dtype, device) if dtype_bytes is None else dtype_bytes
    c = counts or count_parameters(model_config, m.lora_rank, m.lora_targets)
    if m.lora_rank > 0:
        trainable, train_bytes = c.lora, 4
    else:
        trainable, train_bytes = c.total - (c.vision if m.freeze_vision else 0), b
    out = MemoryPlan(
        world=world,
        device=device,
        dtype={4: "float32", 2: "bfloat16"}.get(b, f"{b} bytes"),
        counts=c,
        trainable=trainable,
        visual_tokens_min=None,
        visual_tokens_max=None,
        prompt_tokens=0,
        gpu_bytes=None if gpu_gib is None else gpu_gib * GIB,
    )
    out.warnings += _config_warnings(cfg, world)
    tok = _query_tokens(out, cfg, workload or Workload(), model_dir)
    weights, adapters, grads, adam, ref = _state_rows(out, cfg, b, train_bytes)
    act, vis_act, logits, fsdp_gather = _update_rows(out, cfg, b, tok)
    gathered = _gathered_row(out, b) if cfg.rollout.engine != "vllm" else 0.0  # vLLM: the policy stays sharded
    kv_cache, prefill = _rollout_rows(out, cfg, b, tok) if cfg.rollout.engine != "vllm" else (0.0, 0.0)
    rt = runtime if runtime is not None else (runtime_bytes() if device == "cpu" else 0.0)
    if rt:
        out.rows.append(Row("runtime (CPU process)", rt, "Python + torch + transformers, measured"))
    base = weights + adapters + adam + ref + rt
    out.update_peak = base + grads + act + vis_act + logits + fsdp_gather
    if cfg.rollout.engine == "vllm":
        _vllm_phases(out, cfg, b, tok, base, weights + adapters + ref + rt, out.update_peak)
    else:
        out.rollout_peak = base + gathered + kv_cache + prefill
    out.peak = max(out.rollout_peak, out.update_peak, out.sync_peak)
    if c.checkpoint is not None:
        out.host = host_memory(
            c, b=b, train_bytes=train_bytes, trainable=trainable, freeze_vision=m.freeze_vision,
            lora=m.lora_rank > 0, world=world, device=device, model_dir=model_dir,
        )  # fmt: skip
    return out


def model_config_for(cfg) -> tuple[Any, str | None, str]:
    """``(transformers config, model directory or None, a note on where it came from)``
    for ``cfg.model.path``: its ``config.json``, the toy policy's when none, or a published
    model's shape (``model/shapes.py``) when the path is not on disk but names one."""
    from pathlib import Path

    from transformers import AutoConfig

    from ..model.shapes import PUBLISHED, qwen25vl_config, shape_for
    from ..toyworld.model import resolve_model_path

    path = cfg.model.path
    if path and not Path(path).is_dir() and (shape := shape_for(path)) is not None:
        model_id = next(k for k, v in PUBLISHED.items() if v == shape)
        return qwen25vl_config(shape), None, f"model: the published shape of {model_id} ({path} is not on disk)"
    path = resolve_model_path(path)
    return AutoConfig.from_pretrained(path), path, ""


def plan_device(cfg) -> str:
    """The device a run of ``cfg`` would use (``auto``: CUDA when visible, else the CPU)."""
    device = cfg.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device.split(":")[0]


def plan_for(
    cfg,
    world: int = 1,
    *,
    workload: Workload | None = None,
    device: str | None = None,
    runtime: float | None = None,
    gpu_gib: float | None = None,
) -> MemoryPlan:
    """``plan`` for a resolved config: the model from ``model_config_for`` (no weights), the
    device from ``cfg.device``."""
    mc, model_dir, source = model_config_for(cfg)
    p = plan(
        cfg,
        mc,
        world,
        device=device or plan_device(cfg),
        workload=workload,
        model_dir=model_dir,
        runtime=runtime,
        gpu_gib=gpu_gib,
    )
    p.source = source
    return p
