"""Model shapes without checkpoints: Qwen2.5-VL configurations to build random-weight models.

``SHAPES["3b"]`` is Qwen/Qwen2.5-VL-3B-Instruct's published ``config.json`` (text:
hidden 2048, 36 layers, 16 heads / 2 KV heads, MLP 11008, vocab 151936, tied embeddings,
rope_theta 1e6, M-RoPE sections [16, 24, 24]; vision: 32 blocks of 1280, MLP 3420, 16
heads, patch 14, spatial merge 2, temporal patch 2, window 112, full attention in blocks
7/15/23/31, out 2048). ``"7b"`` and ``"72b"`` are Qwen2.5-VL-7B-Instruct's and
Qwen2.5-VL-72B-Instruct's (7B: hidden 3584, 28 layers, 28 heads / 4 KV heads, MLP 18944;
72B: hidden 8192, 80 layers, 64 heads / 8 KV heads, MLP 29568; both vocab 152064, untied
embeddings, the same vision tower with out 3584 / 8192). ``"tiny"`` is the same
architecture at a size that runs in seconds.
The benchmarks (``gpu_step.py``, ``real_shape.py``) and the memory plan's tests build
their models from here (no download: random weights), and ``rethinker train --dry-run``
plans a published model whose checkpoint is not on disk from its shape (``shape_for``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: the text side's settings every published Qwen2.5-VL size shares
_TEXT = dict(rope_theta=1e6, rms_norm_eps=1e-6)
#: the vision tower of the published sizes (one tower; ``out_hidden_size`` = the text's hidden)
_VISION = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    fullatt_block_indexes=[7, 15, 23, 31],
    window_size=112,
    tokens_per_second=2,
)


def _published(hidden: int, inter: int, layers: int, heads: int, kv_heads: int, vocab: int, **extra) -> dict:
    text = dict(
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=vocab,
        **_TEXT,
    )
    return dict(text=text, vision=dict(_VISION, out_hidden_size=hidden), **extra)


SHAPES: dict[str, dict[str, Any]] = {
    "3b": _published(2048, 11008, 36, 16, 2, 151936),
    "7b": _published(3584, 18944, 28, 28, 4, 152064, tie_word_embeddings=False),
    "72b": _published(8192, 29568, 80, 64, 8, 152064, tie_word_embeddings=False),
    "tiny": dict(
        text=dict(
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=1024,
            rope_theta=1e6,
            rms_norm_eps=1e-6,
        ),
        vision=dict(
            depth=2,
            hidden_size=64,
            intermediate_size=128,
            num_heads=4,
            out_hidden_size=128,
            fullatt_block_indexes=[1],
            window_size=112,
            tokens_per_second=2,
        ),
    ),
}

#: published model ids -> their shape (``shape_for``)
PUBLISHED = {
    "Qwen2.5-VL-3B-Instruct": "3b",
    "Qwen2.5-VL-7B-Instruct": "7b",
    "Qwen2.5-VL-72B-Instruct": "72b",
}


def shape_for(name_or_path: str | None) -> str | None:
    """The shape of a published model named by ``name_or_path`` (its last component, e.g.
    ``Qwen/Qwen2.5-VL-72B-Instruct`` or ``/models/Qwen2.5-VL-72B-Instruct``, any case),
    else None."""
    if not name_or_path:
        return None
    name = Path(str(name_or_path).rstrip("/")).name.lower()
    return next((shape for model_id, shape in PUBLISHED.items() if model_id.lower() == name), None)


#: Qwen2.5-VL's special token ids (its published config and tokenizer)
QWEN_TOKEN_IDS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}
QWEN_EOS, QWEN_BOS, QWEN_PAD = 151645, 151643, 151643
#: the toy tokenizer's ids (Qwen's special tokens at the lowest ids): defaults of small vocabularies
TOY_TOKEN_IDS = {"image_token_id": 12, "video_token_id": 13, "vision_start_token_id": 9, "vision_end_token_id": 10}
TOY_EOS, TOY_PAD = 2, 0


def mrope_section(head_dim: int) -> list[int]:
    """Qwen's split of the rotary half-dimension over (time, height, width): [16, 24, 24]
    for head_dim 128, scaled for smaller heads."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def qwen25vl_config(
    shape: str = "3b",
    *,
    token_ids: dict[str, int] | None = None,
    eos: int | None = None,
    pad: int | None = None,
    attn_implementation: str = "sdpa",
):
    """A ``Qwen2_5_VLConfig`` of ``shape``. ``token_ids`` (image/video/vision start/end),
    ``eos`` and ``pad`` default to Qwen's own (the toy tokenizer's for a small vocabulary);
    pass a smaller tokenizer's to pair the shape with it (the vocabulary size stays the
    shape's)."""
    from transformers import Qwen2_5_VLConfig

    s = SHAPES[shape]
    text = {k: v for k, v in s["text"].items() if k != "rope_theta"}
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    text.update(
        max_position_embeddings=32768 if shape == "tiny" else 128000,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": s["text"]["rope_theta"],
            "mrope_section": mrope_section(head_dim),
        },
    )
    small = s["text"]["vocab_size"] <= QWEN_EOS
    eos = (TOY_EOS if small else QWEN_EOS) if eos is None else eos
    pad = (TOY_PAD if small else QWEN_PAD) if pad is None else pad
    token_ids = token_ids or (TOY_TOKEN_IDS if small else QWEN_TOKEN_IDS)
    tie = s.get("tie_word_embeddings", True)
    cfg = Qwen2_5_VLConfig(
        text_config=dict(text, eos_token_id=eos, bos_token_id=None, pad_token_id=pad, tie_word_embeddings=tie),
        vision_config=dict(s["vision"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        tie_word_embeddings=tie,
        **token_ids,
    )
    cfg._attn_implementation = attn_implementation
    return cfg


def build_random(shape: str, device, dtype, processor=None):
    """A ``Qwen2_5_VLForConditionalGeneration`` of ``shape`` with random weights; with
    ``processor``, its tokenizer's special ids (the vocabulary size stays the shape's)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    kw: dict[str, Any] = {}
    if processor is not None:
        tok = processor.tokenizer
        kw = dict(
            token_ids={
                k: tok.convert_tokens_to_ids(v)
                for k, v in (
                    ("image_token_id", "<|image_pad|>"),
                    ("video_token_id", "<|video_pad|>"),
                    ("vision_start_token_id", "<|vision_start|>"),
                    ("vision_end_token_id", "<|vision_end|>"),
                )
            },
            eos=tok.convert_tokens_to_ids("<|im_end|>"),
            pad=tok.pad_token_id,
        )
    cfg = qwen25vl_config(shape, **kw)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype)
    model.generation_config.eos_token_id = cfg.text_config.eos_token_id
    model.generation_config.pad_token_id = cfg.text_config.pad_token_id
    return model


def save_config(shape: str, directory: str | Path) -> Path:
    """Write ``config.json`` of ``shape`` (Qwen's token ids) to ``directory``: enough for
    ``rethinker train --dry-run --model DIRECTORY`` (no weights)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cfg = qwen25vl_config(shape)
    (d / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))
    return d
