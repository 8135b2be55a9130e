"""Shared-prompt forwards: a query's prompt runs once, its G samples continue from it.

The G samples of a query share their prompt (image tokens included), which is most of
every sequence (toy world: ~65 prompt tokens, ~20 completion tokens). Both the rollout
and the update run the prompt once per query and repeat its key/value cache:

- ``prefill`` runs left-padded prompts (one row per query) with a cache and returns the
  logits at the last prompt position, the cache, and each row's next position id.
- ``select_rows`` repeats/reorders the cache rows (``Cache.batch_select_indices``;
  differentiable, so gradients of every sample reach the shared prompt).
- ``continue_forward`` runs new tokens of any rows on top of that cache.

Position ids are explicit: Qwen-VL's M-RoPE positions come from the model's own
``get_rope_index`` for the prompt; every token after the prompt is text, so its position
is the prompt's last position + 1 + offset on all three axes. Models without
``get_rope_index`` use 1-D positions (the count of real tokens before each one).
``supported(model)`` says when the path applies (the caller falls back to the plain
full-sequence forward / ``generate`` otherwise).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from ..model.introspect import forward_params
from .inputs import ModelBatch


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _rope_owner(model):
    """The module with ``get_rope_index`` (Qwen2-VL / 2.5-VL / 3-VL), or None."""
    base = _base(model)
    for m in (base, getattr(base, "model", None)):
        if m is not None and hasattr(m, "get_rope_index"):
            return m
    return None


def cache_kwarg(model) -> str | None:
    """The name the model's forward takes its key/value cache by (``cache`` in recent
    transformers, ``past_key_values`` before), or None when it takes neither."""
    params = forward_params(model)
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def supported(model) -> bool:
    """The model takes explicit position ids and a cache, and its positions are either
    1-D or Qwen-VL's M-RoPE (whose prompt positions we can compute); gradient
    checkpointing turns the cache off in training, so it rules the path out."""
    params = forward_params(model)
    if cache_kwarg(model) is None or "position_ids" not in params:
        return False
    base = _base(model)
    checkpointing = getattr(base, "is_activation_checkpointing", None)  # transformers >= 5.2x
    if checkpointing is None:
        checkpointing = getattr(base, "is_gradient_checkpointing", False)
    if checkpointing and model.training:
        return False
    text_cfg = getattr(getattr(base, "config", None), "text_config", None)
    rope = getattr(text_cfg, "rope_parameters", None) or getattr(text_cfg, "rope_scaling", None) or {}
    uses_mrope = isinstance(rope, dict) and "mrope_section" in rope
    return _rope_owner(model) is not None or not uses_mrope


def prompt_positions(model, batch: ModelBatch) -> torch.Tensor:
    """Position ids of a left-padded prompt batch: ``[3, B, P]`` for M-RoPE models, else
    ``[B, P]``."""
    mask = batch.attention_mask
    linear = (mask.long().cumsum(-1) - 1).clamp(min=0)
    owner = _rope_owner(model)
    if owner is None:
        return linear
    if batch.image_grid_thw is None:  # text only: M-RoPE positions are the 1-D ones on each axis
        return linear.unsqueeze(0).expand(3, -1, -1)
    params = inspect.signature(owner.get_rope_index).parameters
    kw: dict[str, Any] = {"image_grid_thw": batch.image_grid_thw, "attention_mask": mask}
    if "mm_token_type_ids" in params:
        kw["mm_token_type_ids"] = batch.mm_token_type_ids
    pos, _ = owner.get_rope_index(batch.input_ids, **kw)
    return pos.to(mask.device)


@dataclass
class Prefill:
    last_logits: torch.Tensor  # [U, V] logits at the last prompt position (predicts token 0)
    cache: Any  # the model's key/value cache, one row per prompt
    next_pos: torch.Tensor  # [3, U, 1] or [U, 1]: the position of the first new token
    attention_mask: torch.Tensor  # [U, P]


def _cache_of(out) -> Any:
    for name in ("cache", "past_key_values"):
        c = getattr(out, name, None)
        if c is not None:
            return c
    raise RuntimeError("the model returned no key/value cache (use_cache=True)")


def prefill(model, batch: ModelBatch) -> Prefill:
    """Run left-padded prompts once with a cache."""
    if batch.attention_mask.shape[1] and not bool(batch.attention_mask[:, -1].all()):
        raise ValueError("prefill needs left-padded prompts (every row's last position real)")
    kw = batch.model_kwargs(model)
    if batch.pixel_values is not None:
        kw["pixel_values"] = batch.pixel_values.to(next(model.parameters()).dtype)
    pos = prompt_positions(model, batch)
    if "logits_to_keep" in forward_params(model):
        kw["logits_to_keep"] = 1
    out = model(**kw, position_ids=pos, use_cache=True)
    return Prefill(out.logits[:, -1], _cache_of(out), pos[..., -1:] + 1, batch.attention_mask)


def select_rows(pre: Prefill, rows: torch.Tensor) -> Prefill:
    """The prefill of ``rows`` (indices into its prompts, repeats allowed), as a new
    batch. The cache is changed in place (it is the caller's; a prefill is used once)."""
    rows = rows.to(pre.last_logits.device)
    pre.cache.batch_select_indices(rows)
    return Prefill(pre.last_logits[rows], pre.cache, pre.next_pos[..., rows, :], pre.attention_mask[rows])


def continue_forward(
    model,
    cache,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    first_pos: torch.Tensor,
    cache_name: str | None = None,
):
    """Forward ``input_ids`` ([B, T], text) after the cached tokens. ``attention_mask`` covers
    cache + new tokens; ``first_pos`` ([3, B, 1] or [B, 1]) is the position of the first new
    token; ``cache_name`` is ``cache_kwarg(model)`` (pass it in a loop: it reads the
    forward's signature). Returns the model output (logits [B, T, V]); the cache grows by T."""
    steps = torch.arange(input_ids.shape[1], device=input_ids.device)
    pos = first_pos + steps
    return model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=pos,
        use_cache=True,
        **{cache_name or cache_kwarg(model): cache},
    )
