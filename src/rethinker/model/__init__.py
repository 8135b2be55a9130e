"""rethinker.model: loading a policy and asking it what it supports.

- ``load``: ``load_policy`` (model + processor from a local directory, optional LoRA,
  frozen vision tower, gradient checkpointing), ``load_processor``, device/dtype choice.
- ``introspect``: the model's forward arguments, vision tower, shared-vision support.
"""

from .introspect import forward_params, supports_shared_vision, vision_module
from .load import add_lora, is_adapter_dir, load_policy, load_processor, pick_device, pick_dtype

__all__ = [
    "add_lora",
    "forward_params",
    "is_adapter_dir",
    "load_policy",
    "load_processor",
    "pick_device",
    "pick_dtype",
    "supports_shared_vision",
    "vision_module",
]
