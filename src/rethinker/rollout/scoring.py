"""Per-token log-probabilities of completions under a policy (the update's forward).

``score(model, queries, batch)`` runs one forward over a prompt+completion batch
(``collate_sequences``) and returns log p(token) at every completion position, aligned
with ``batch.target_mask``. When the model accepts pre-computed vision features
(``mm_encoder_outputs``, transformers >= 5.2x), each distinct query's images go through
the vision tower once per micro-batch, however many of its G samples the batch holds;
otherwise the pixels of every sample are passed (the older API).

``score_grouped(model, queries, completions, query_index)`` gives the same numbers with
the prompt run once per distinct query (``prefix.py``): a prompt forward with a cache,
the cache rows repeated for the samples, then one forward of the completions. The update
then processes ~U*P + N*C tokens instead of N*(P+C) (toy world: ~4x fewer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..algo.losses import entropy_from_logits
from ..model.introspect import forward_params, supports_shared_vision
from . import prefix
from .inputs import ModelBatch, QueryInputs, collate_prompts, concat_images


@dataclass
class Scores:
    logprobs: torch.Tensor  # [B, L-1], 0 outside target_mask
    entropy: torch.Tensor | None  # [B, L-1] or None


def _shared_vision_kwargs(model, queries: list[QueryInputs], batch: ModelBatch) -> dict | None:
    """``mm_encoder_outputs`` for the batch, encoding each distinct query's images once."""
    uniq = sorted(set(batch.query_index))
    with_images = [qi for qi in uniq if queries[qi].pixel_values is not None]
    if not with_images:
        return None
    pv, grid = concat_images([queries[qi] for qi in with_images])
    device = batch.input_ids.device
    dtype = next(model.parameters()).dtype
    feats = model.get_image_features(pv.to(device=device, dtype=dtype), grid.to(device))
    pooled = feats.pooler_output if hasattr(feats, "pooler_output") else feats
    per_query: dict[int, list[torch.Tensor]] = {}
    k = 0
    for qi in with_images:
        n_img = int(queries[qi].image_grid_thw.shape[0])
        per_query[qi] = list(pooled[k : k + n_img])
        k += n_img
    ordered = tuple(t for qi in batch.query_index for t in per_query.get(qi, []))
    return {"mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=ordered)}}


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / T)[target], computed in fp32 without materialising the full
    log-softmax: ``logit[target] - logsumexp(logits)``."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def score(
    model,
    queries: list[QueryInputs],
    batch: ModelBatch,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = False,
    share_vision: bool | None = None,
) -> Scores:
    """Forward ``batch`` (already on the model's device) and read the completion tokens'
    log-probs. Gradients flow unless the caller wraps this in ``torch.no_grad``; the
    entropy (``with_entropy``) carries gradients only with ``entropy_grad`` (a bonus)."""
    if batch.target_mask is None:
        raise ValueError("score() needs a prompt+completion batch (collate_sequences)")
    kwargs = batch.model_kwargs(model)
    if share_vision is None:
        share_vision = supports_shared_vision(model)
    if share_vision and batch.pixel_values is not None:
        shared = _shared_vision_kwargs(model, queries, batch)
        if shared is not None:
            kwargs.pop("pixel_values")
            kwargs.update(shared)
    elif batch.pixel_values is not None:
        kwargs["pixel_values"] = batch.pixel_values.to(next(model.parameters()).dtype)
    # logits only from the first position that predicts a completion token: the prompt's
    # positions would cost B x P x vocab floats (Qwen: 152k per token) and are never read
    first = _first_target(batch.target_mask)
    if first > 0 and "logits_to_keep" in forward_params(model):
        kwargs["logits_to_keep"] = batch.input_ids.shape[1] - first
    else:
        first = 0
    out = model(**kwargs, use_cache=False)
    scores = _read(
        out.logits[:, :-1],
        batch.input_ids[:, first + 1 :],
        batch.target_mask[:, first:],
        temperature,
        with_entropy,
        entropy_grad,
    )
    if first == 0:
        return scores
    pad = lambda t: None if t is None else torch.nn.functional.pad(t, (first, 0))  # noqa: E731
    return Scores(pad(scores.logprobs), pad(scores.entropy))


def _first_target(target_mask: torch.Tensor) -> int:
    cols = target_mask.any(0).nonzero()
    return int(cols[0]) if cols.numel() else 0


def _read(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    with_entropy: bool,
    entropy_grad: bool,
) -> Scores:
    lp = token_logprobs(logits, targets, temperature)
    lp = torch.where(mask, lp, torch.zeros_like(lp))
    ent = None
    if with_entropy or entropy_grad:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            src = logits if entropy_grad else logits.detach()
            ent = torch.where(mask, entropy_from_logits(src.float() / temperature), torch.zeros_like(lp))
    return Scores(lp, ent)


@dataclass
class GroupedBatch:
    """The layout ``score_grouped`` reads into: row i holds sample i's completion tokens,
    left-aligned; ``target_mask[i, j]`` is True for its j-th completion token."""

    target_mask: torch.Tensor  # [N, C] bool


def score_grouped(
    model,
    queries: list[QueryInputs],
    completions: list[list[int]],
    query_index: list[int],
    pad_id: int,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[GroupedBatch, Scores]:
    """``score`` with each distinct query's prompt run once (see the module docstring).
    Always two forwards (prompt, then completions), so ranks of a sharded model stay in
    lockstep. Needs ``prefix.supported(model)``."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    prompts = collate_prompts(queries, pad_id).to(device, dtype)  # one row (and one image pass) per query
    pre = prefix.prefill(model, prompts)
    pre = prefix.select_rows(pre, torch.as_tensor(query_index, dtype=torch.long))
    n, width = len(completions), max(len(c) for c in completions)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.bool)
    for i, c in enumerate(completions):
        ids[i, : len(c)] = torch.as_tensor(list(c), dtype=torch.long)
        mask[i, : len(c)] = True
    ids, mask = ids.to(device), mask.to(device)
    attn = torch.cat([pre.attention_mask, mask.long()], dim=1)
    out = prefix.continue_forward(model, pre.cache, ids, attn, pre.next_pos)
    # token j is predicted by the prompt's last position (j = 0) or by completion token j-1
    logits = torch.cat([pre.last_logits[:, None], out.logits[:, :-1]], dim=1)
    return GroupedBatch(mask), _read(logits, ids, mask, temperature, with_entropy, entropy_grad)
