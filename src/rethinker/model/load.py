"""Loading a policy (and a frozen reference) and its processor with ``transformers``."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor

from .introspect import vision_module


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {
            "float32": torch.float32,
            "fp32": torch.float32,
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
            "float16": torch.float16,
            "fp16": torch.float16,
        }[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r} (float32, bfloat16, float16, auto)") from None


def load_processor(path):
    """``AutoProcessor.from_pretrained(path)`` with the image processor's PIL backend
    where this transformers has one: the same pixels as the default torchvision backend
    (to ~3e-7) and far faster on a CPU for small batches (0.04 s vs 1.5 s for 32 toy
    images). The image processor is swapped in afterwards: passing ``image_processor=``
    to ``AutoProcessor`` leaves a processor that cannot be saved again."""
    processor = AutoProcessor.from_pretrained(path)
    if getattr(processor, "image_processor", None) is not None:
        try:
            processor.image_processor = AutoImageProcessor.from_pretrained(path, backend="pil")
        except (TypeError, ValueError, ImportError):  # an older transformers, or no PIL backend for this model
            pass
    return processor


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def add_lora(
    model, rank: int, alpha: int | None, dropout: float, targets: str, adapter_dir: str | None = None, *,
    weights: bool = True,
):  # fmt: skip
    """Wrap ``model`` with PEFT LoRA adapters on the language model's linear layers (the
    vision tower and the LM head stay frozen); ``adapter_dir`` resumes saved adapters
    (``weights=False``: the same adapters, not read: their values come from elsewhere).
    On a meta-device model PEFT builds each adapter on the CPU (drawing from the same random
    stream as on real weights) and then moves it to the meta device beside its base layer."""
    try:
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError:
        raise ImportError("LoRA needs PEFT: pip install 'rethinker[peft]'") from None
    if adapter_dir is not None and weights:
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    if adapter_dir is not None:
        saved = LoraConfig.from_pretrained(adapter_dir)
        saved.inference_mode = False  # as ``PeftModel.from_pretrained(..., is_trainable=True)`` sets it
        return get_peft_model(model, saved)
    cfg = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=dropout, target_modules=targets, bias="none")
    peft_model = get_peft_model(model, cfg)
    if not any(p.requires_grad for p in peft_model.parameters()):
        raise ValueError(f"LoRA: no module of this model matches {targets!r}")
    return peft_model


def load_policy(
    path: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    attn_implementation: str = "sdpa",
    gradient_checkpointing: bool = False,
    freeze_vision: bool = False,
    trainable: bool = True,
    lora: dict | None = None,
    weights: bool = True,
):
    """Model and processor from a local directory (``AutoModelForImageTextToText``).
    ``lora``: ``add_lora`` keyword arguments; when ``path`` holds saved adapters (a LoRA
    checkpoint), the base model comes from ``lora["base"]``. ``weights=False``: the same
    model on the ``meta`` device, no weight read (built from the config), for FSDP2 to
    shard and materialise (``shard_model``) and its weights then to be loaded into the shards."""
    processor = load_processor(path)
    adapter_dir = None
    if lora and is_adapter_dir(path):
        adapter_dir, path = path, lora["base"]
    kw = {"dtype": dtype, "attn_implementation": attn_implementation}
    if weights:
        model = AutoModelForImageTextToText.from_pretrained(path, **kw)
    else:
        with torch.device("meta"):
            model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(path), **kw)
    if lora and trainable:
        model = add_lora(
            model, lora["rank"], lora.get("alpha"), lora.get("dropout", 0.0), lora["targets"], adapter_dir=adapter_dir,
            weights=weights,
        )  # fmt: skip
    if weights:
        model.to(device)
    if not trainable:
        model.eval().requires_grad_(False)
        return model, processor
    if freeze_vision:
        vis = vision_module(model)
        if vis is None:
            raise ValueError("--model.freeze-vision: this model has no vision tower attribute we know")
        vis.requires_grad_(False)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.train()
    return model, processor
