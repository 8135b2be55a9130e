"""Loading the policy (and a frozen reference) with ``transformers``."""

from __future__ import annotations

from pathlib import Path

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r} (float32, bfloat16, float16, auto)") from None


def resolve_model_path(path: str | None) -> str:
    if path:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"--model {path}: not a local model directory (no downloads here)")
        return str(path)
    from ..toyworld.model import toy_model_path

    return str(toy_model_path())


def vision_module(model) -> torch.nn.Module | None:
    inner = getattr(model, "model", model)
    for name in ("visual", "vision_tower", "vision_model"):
        mod = getattr(inner, name, None) or getattr(model, name, None)
        if mod is not None:
            return mod
    return None


def load_policy(path: str, *, device: torch.device, dtype: torch.dtype, attn_implementation: str = "sdpa",
                gradient_checkpointing: bool = False, freeze_vision: bool = False, trainable: bool = True):
    """Model and processor from a local directory (``AutoModelForImageTextToText``)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
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
