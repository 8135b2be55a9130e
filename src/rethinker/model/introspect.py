"""What a loaded model can do, read from the model itself: the arguments its forward
takes, its vision tower, whether it accepts pre-computed vision features. Every other
module asks here instead of probing the model its own way."""

from __future__ import annotations

import inspect

import torch


def forward_params(model) -> set[str]:
    """Names of the model's forward arguments, looking through PEFT wrappers."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(base.forward).parameters)


def vision_module(model) -> torch.nn.Module | None:
    inner = getattr(model, "model", model)
    for name in ("visual", "vision_tower", "vision_model"):
        mod = getattr(inner, name, None) or getattr(model, name, None)
        if mod is not None:
            return mod
    return None


def supports_shared_vision(model) -> bool:
    """The model takes pre-computed vision features (and is not wrapped by PEFT, whose
    forward would not pass them on by name)."""
    fwd = getattr(model, "forward", None)
    return (
        fwd is not None
        and not hasattr(model, "get_base_model")
        and "mm_encoder_outputs" in inspect.signature(fwd).parameters
    )
