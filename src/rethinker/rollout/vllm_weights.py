"""The policy's weights as vLLM's Qwen2.5-VL loads them. Pure functions, no vLLM import:

- the name tables copied from vLLM (tests/with_vllm checks them against the installed
  release): ``QWEN2_5_VL_PREFIX_MAP``, ``LM_STACKED``, ``VISION_STACKED``;
- ``policy_weight_name`` / ``vllm_param_name`` / ``to_vllm_weight_names``: a policy
  parameter's checkpoint name (what ``load_weights`` accepts; its ``hf_to_vllm_mapper`` is
  applied inside vLLM), and the vLLM parameter it lands in (for checks);
- ``iter_sync_weights``: the tensors a weight sync sends (LoRA merged out of place, FSDP
  shards gathered), and ``reprocess_shared_weights``, run inside vLLM after a reload.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

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
    (scale * B @ A, fan-in/fan-out handled). FSDP2-sharded factors are gathered first
    (a collective) and combined by the same rule."""
    with torch.no_grad():
        total = 0
        for a in (a for a in layer.active_adapters if a in layer.lora_A):
            lo, hi = layer.lora_A[a].weight, layer.lora_B[a].weight
            if hasattr(lo, "full_tensor"):
                delta = hi.full_tensor() @ lo.full_tensor()
                total = total + (delta.T if layer.fan_in_fan_out else delta) * layer.scaling[a]
            else:
                total = total + layer.get_delta_weight(a)
        return total


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


def reprocess_shared_weights(vmodel: torch.nn.Module) -> int:
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
