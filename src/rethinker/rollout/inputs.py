"""Model inputs: the one place where prompts are encoded and batches are padded.

A query is encoded once (``encode_query``): its chat-template text, token ids, the token
type of every id (text 0, image 1, video 2: Qwen2.5-VL needs them to build its M-RoPE
positions) and its processed pixels. Generation batches (prompt only, left-padded) and
training batches (prompt + completion, either side) are collated from these encodings,
so the trainer, the evaluator and every rollout engine share one padding/masking code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..model.introspect import forward_params
from ..prompt import SUFFIX, build_messages
from ..records import Record, RecordError, load_image
from .tokens import end_token_ids

#: Token names that belong to the vision side of a Qwen-style VLM; completions must never
#: contain them (a generated ``<|image_pad|>`` breaks the next forward).
VISION_TOKEN_NAMES = (
    "<|image_pad|>",
    "<|video_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<image>",
    "<video>",
)


@dataclass
class QueryInputs:
    """One encoded prompt. ``pixel_values`` rows belong to this query's images only."""

    input_ids: torch.Tensor  # [L] long
    mm_token_type_ids: torch.Tensor  # [L] int (0 text, 1 image, 2 video)
    pixel_values: torch.Tensor | None = None  # [patches, dim]
    image_grid_thw: torch.Tensor | None = None  # [n_images, 3]
    text: str = ""
    #: the decoded images (PIL, before the processor's resize), kept only when the encoder
    #: was built with ``keep_images=True`` (engines such as vLLM run their own processor)
    images: list | None = None

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class ModelBatch:
    """Padded tensors ready for ``model(**batch.model_kwargs())``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    #: for prompt+completion batches: [B, L-1] mask of the positions whose NEXT token is a
    #: completion token (where per-token log-probs are read), and the index of each
    #: sample's query in ``queries`` (for sharing vision features).
    target_mask: torch.Tensor | None = None
    query_index: list[int] = field(default_factory=list)

    def model_kwargs(self, model=None) -> dict[str, Any]:
        """Forward arguments. With ``model``, the modality-type ids are passed only to a
        model whose forward names them (Qwen-VL's M-RoPE needs them; others may not take them)."""
        kw: dict[str, Any] = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if model is None or "mm_token_type_ids" in forward_params(model):
            kw["mm_token_type_ids"] = self.mm_token_type_ids
        if self.pixel_values is not None:
            kw["pixel_values"] = self.pixel_values
            if self.image_grid_thw is not None:
                kw["image_grid_thw"] = self.image_grid_thw
        return kw

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ModelBatch:
        def mv(t: torch.Tensor | None, floating: bool = False) -> torch.Tensor | None:
            if t is None:
                return None
            return t.to(device=device, dtype=dtype) if (floating and dtype is not None) else t.to(device)

        return ModelBatch(
            input_ids=mv(self.input_ids),
            attention_mask=mv(self.attention_mask),
            mm_token_type_ids=mv(self.mm_token_type_ids),
            pixel_values=mv(self.pixel_values, True),
            image_grid_thw=mv(self.image_grid_thw),
            target_mask=mv(self.target_mask),
            query_index=self.query_index,
        )


def special_ids(processor) -> dict[str, int]:
    """Ids of the special tokens the rollout needs (image/video, vision, pad, eos)."""
    tok = getattr(processor, "tokenizer", processor)
    vocab = tok.get_vocab()
    ids = {name: vocab[name] for name in VISION_TOKEN_NAMES if name in vocab}
    return ids


def vision_token_ids(processor) -> list[int]:
    return sorted(set(special_ids(processor).values()))


def mm_token_types(input_ids: torch.Tensor, image_token_id: int | None, video_token_id: int | None) -> torch.Tensor:
    """Text 0, image 1, video 2, from the ids themselves (works whatever the processor
    version returns)."""
    types = torch.zeros_like(input_ids, dtype=torch.int32)
    if image_token_id is not None:
        types[input_ids == image_token_id] = 1
    if video_token_id is not None:
        types[input_ids == video_token_id] = 2
    return types


class PromptEncoder:
    """Turns records into ``QueryInputs`` with a processor; images are decoded (with the
    record's checks: unreadable, empty, decompression bombs) and resized within the
    processor's pixel limits. Results are cached per record (a query is encoded once
    for its G samples, and a held-out set once per run) within ``cache_bytes`` of
    tensors and image bytes, the oldest dropped first, so the cache never grows with the
    data set (one real-sized image's pixels take ~24 MB)."""

    def __init__(
        self,
        processor,
        *,
        suffix: str = SUFFIX,
        base_dir: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        cache_bytes: int = 256 << 20,
        keep_images: bool = False,
        max_prompt_tokens: int | None = None,
    ):
        self.processor = processor
        #: a longer prompt is refused (``RecordError``), never truncated: a cut could fall
        #: inside a run of image tokens and break the vision features' alignment
        self.max_prompt_tokens = max_prompt_tokens
        self.keep_images = keep_images
        self.suffix = suffix
        self.base_dir = base_dir
        self.images_kwargs: dict[str, Any] = {}
        if min_pixels is not None:
            self.images_kwargs["min_pixels"] = min_pixels
        if max_pixels is not None:
            self.images_kwargs["max_pixels"] = max_pixels
        tok = processor.tokenizer
        vocab = tok.get_vocab()
        # the processor names its placeholder tokens (Qwen: <|image_pad|>, LLaVA-style: <image>)
        self.image_token_id = vocab.get(getattr(processor, "image_token", None) or "<|image_pad|>")
        self.video_token_id = vocab.get(getattr(processor, "video_token", None) or "<|video_pad|>")
        #: the tokenizer's pad, else its end-of-sequence id (no generation config here)
        self.pad_token_id = end_token_ids(tok)[1]
        self._cache: dict[tuple[str, str], tuple[Record, QueryInputs, int]] = {}
        self._cache_bytes = cache_bytes
        self._cached = 0

    def chat_text(self, record: Record) -> str:
        return self.processor.apply_chat_template(
            build_messages(record, self.suffix), tokenize=False, add_generation_prompt=True
        )

    def encode(self, record: Record) -> QueryInputs:
        """Encode one record (raises ``RecordError`` naming it on a bad image or a prompt
        over ``max_prompt_tokens``)."""
        key = (record.id, record.question)
        hit = self._cache.get(key)
        if hit is not None and (hit[0] is record or hit[0] == record):
            return hit[1]
        images = [load_image(ref, self.base_dir, record_id=record.id) for ref in record.images]
        text = self.chat_text(record)
        kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
            if self.images_kwargs:
                kwargs["images_kwargs"] = dict(self.images_kwargs)
        out = self.processor(**kwargs)
        ids = out["input_ids"][0]
        if self.max_prompt_tokens is not None and ids.shape[0] > self.max_prompt_tokens:
            raise RecordError(
                f"record {record.id!r}: prompt of {int(ids.shape[0])} tokens exceeds the limit of "
                f"{self.max_prompt_tokens} (skipped, not truncated)"
            )
        q = QueryInputs(
            input_ids=ids,
            mm_token_type_ids=mm_token_types(ids, self.image_token_id, self.video_token_id),
            pixel_values=out.get("pixel_values") if images else None,
            image_grid_thw=out.get("image_grid_thw") if images else None,
            text=text,
            images=list(images) if self.keep_images else None,
        )
        size = _nbytes(q) + sum(len(ref.bytes or b"") for ref in record.images)
        if hit is not None:
            self._cached -= self._cache.pop(key)[2]
        while self._cache and self._cached + size > self._cache_bytes:  # oldest first
            self._cached -= self._cache.pop(next(iter(self._cache)))[2]
        if size <= self._cache_bytes:
            self._cache[key] = (record, q, size)
            self._cached += size
        return q


def _nbytes(q: QueryInputs) -> int:
    tensors = (q.input_ids, q.mm_token_type_ids, q.pixel_values, q.image_grid_thw)
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def concat_images(queries: Sequence[QueryInputs]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The queries' pixels and image grids, stacked in query order (None, None: no images)."""
    pv = [q.pixel_values for q in queries if q.pixel_values is not None]
    grid = [q.image_grid_thw for q in queries if q.image_grid_thw is not None]
    if not pv:
        return None, None
    return torch.cat(pv, dim=0), torch.cat(grid, dim=0)


def collate_prompts(queries: Sequence[QueryInputs], pad_token_id: int) -> ModelBatch:
    """Left-padded prompt batch for generation."""
    width = max(q.length for q in queries)
    n = len(queries)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.int32)
    for i, q in enumerate(queries):
        input_ids[i, width - q.length :] = q.input_ids
        attention_mask[i, width - q.length :] = 1
        types[i, width - q.length :] = q.mm_token_type_ids
    pv, grid = concat_images(queries)
    return ModelBatch(input_ids, attention_mask, types, pv, grid, query_index=list(range(n)))


def collate_sequences(
    queries: Sequence[QueryInputs],
    completions: Sequence[Sequence[int]],
    query_index: Sequence[int],
    pad_token_id: int,
    padding_side: str = "right",
) -> ModelBatch:
    """Prompt + completion batch for scoring/training. Sample i is
    ``queries[query_index[i]]`` followed by ``completions[i]``. ``target_mask[i, t]`` is 1
    where position t predicts a completion token (so log-probs read at ``[:, :-1]``
    line up with ``input_ids[:, 1:]``)."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    lengths = [queries[qi].length + len(c) for qi, c in zip(query_index, completions)]
    width = max(lengths)
    n = len(completions)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.int32)
    target = torch.zeros((n, width - 1), dtype=torch.bool)
    for i, (qi, comp) in enumerate(zip(query_index, completions)):
        q = queries[qi]
        start = 0 if padding_side == "right" else width - lengths[i]
        p_end = start + q.length
        end = p_end + len(comp)
        input_ids[i, start:p_end] = q.input_ids
        input_ids[i, p_end:end] = torch.as_tensor(list(comp), dtype=torch.long)
        attention_mask[i, start:end] = 1
        types[i, start:p_end] = q.mm_token_type_ids
        target[i, p_end - 1 : end - 1] = True
    pv, grid = concat_images([queries[qi] for qi in query_index])
    return ModelBatch(input_ids, attention_mask, types, pv, grid, target, list(query_index))
