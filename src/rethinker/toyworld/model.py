"""The toy world's tiny Qwen2.5-VL: tokenizer, processor and model, all made locally.

Nothing is downloaded. The pieces are the standard ``transformers`` classes, so the saved
directory loads like a hub checkpoint::

    AutoProcessor.from_pretrained(path)                 # Qwen2_5_VLProcessor
    AutoModelForImageTextToText.from_pretrained(path)   # Qwen2_5_VLForConditionalGeneration

- Tokenizer: byte-level BPE (Qwen2's pre-tokenizer regex, NFC, byte-level decoder) trained
  with ``tokenizers`` on puzzle texts; Qwen's special tokens sit at the lowest ids.
- Chat template: Qwen2.5-VL-Instruct's own (an image renders as
  ``<|vision_start|><|image_pad|><|vision_end|>``; default system turn).
- Image processor: ``Qwen2VLImageProcessor`` with min/max pixels 56*56 .. 112*112, so a
  112x112 image becomes (112/14)^2 = 64 patches -> 64 / 2^2 = 16 visual tokens.
- Model: 4-layer text decoder (hidden 192, head_dim 48, M-RoPE sections [6, 9, 9]) and a
  2-block vision tower (hidden 128, patch 14, spatial merge 2).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModelForImageTextToText,
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

from ..model.load import load_processor

#: Qwen2.5-VL's special tokens, in Qwen's order; they take ids 0..len-1 here.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]

#: Tokens a completion must never contain (a generated image pad breaks the next forward).
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

#: Qwen2.5-VL-Instruct's chat template (its ``chat_template.json``), verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Pixel limits of the toy image processor: 56x56 (4 tokens) .. 112x112 (16 tokens).
MIN_PIXELS = 56 * 56
MAX_PIXELS = 112 * 112

#: Largest BPE vocabulary (special tokens + 256 bytes + merges); training stops earlier when
#: no pair occurs twice.
VOCAB_SIZE = 1024

#: The tiny model's shape (see ``docs/toyworld.md``: learnable on a CPU in minutes).
TEXT_CONFIG = dict(
    hidden_size=192,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    intermediate_size=576,
    max_position_embeddings=1024,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    # M-RoPE: temporal/height/width sections, summing to head_dim / 2 = 48 / 2 = 24.
    mrope_section=[6, 9, 9],
)
VISION_CONFIG = dict(
    depth=2,
    hidden_size=128,
    num_heads=4,
    intermediate_size=256,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[1],
    in_chans=3,
)

PACKAGE_POLICY_DIR = Path(__file__).resolve().parent / "assets" / "policy"


# -- tokenizer -------------------------------------------------------------------------
def build_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE on ``texts`` and wrap it as a ``Qwen2Tokenizer`` carrying
    Qwen2.5-VL's special tokens (ids 0..21), its chat template and the named multimodal
    tokens (``tokenizer.image_token`` = ``<|image_pad|>`` etc.). Deterministic for the
    same texts."""
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer=trainer)
    vocab = backend.get_vocab()
    for i, tok in enumerate(SPECIAL_TOKENS):
        if vocab.get(tok) != i:
            raise AssertionError(f"special token {tok} got id {vocab.get(tok)}, expected {i}")
    merges = _merges_of(backend)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=1024,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": list(SPECIAL_TOKENS)}, replace_extra_special_tokens=False
    )
    for i, tok in enumerate(SPECIAL_TOKENS):
        if tokenizer.convert_tokens_to_ids(tok) != i:
            raise AssertionError(f"special token {tok} maps to {tokenizer.convert_tokens_to_ids(tok)}, expected {i}")
    return tokenizer


def _merges_of(backend) -> list[tuple[str, str]]:
    data = json.loads(backend.to_str())
    merges = data["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


# -- processor -------------------------------------------------------------------------
def build_processor(tokenizer):
    """The standard ``Qwen2_5_VLProcessor`` around ``tokenizer``, with Qwen2-VL's image
    processor limited to 56*56 .. 112*112 pixels. Its PIL backend
    (``Qwen2VLImageProcessorPil``) gives the same pixels as the torchvision one to 3e-7
    and is much faster on these small images on a CPU."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessorPil,
        Qwen2VLVideoProcessor,
    )  # PIL class: recent transformers only

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
        patch_size=VISION_CONFIG["patch_size"],
        merge_size=VISION_CONFIG["spatial_merge_size"],
        temporal_patch_size=VISION_CONFIG["temporal_patch_size"],
    )
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
        patch_size=VISION_CONFIG["patch_size"],
        merge_size=VISION_CONFIG["spatial_merge_size"],
        temporal_patch_size=VISION_CONFIG["temporal_patch_size"],
    )
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


# -- model -----------------------------------------------------------------------------
def build_config(tokenizer, **text_overrides):
    """A ``Qwen2_5_VLConfig`` whose token ids (image/video pad, vision start/end, bos/eos/pad)
    match ``tokenizer``; text shape from ``TEXT_CONFIG`` (overridable)."""
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    text = dict(TEXT_CONFIG, **text_overrides)
    mrope = text.pop("mrope_section")
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    if sum(mrope) * 2 != head_dim:
        raise ValueError(f"mrope_section {mrope} must sum to head_dim/2 = {head_dim // 2}")
    text.update(
        vocab_size=len(tokenizer),
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        rope_parameters={"rope_type": "default", "rope_theta": text.pop("rope_theta"), "mrope_section": mrope},
    )
    vision = dict(VISION_CONFIG, out_hidden_size=text["hidden_size"])
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=text["tie_word_embeddings"],
    )


def build_generation_config(tokenizer):
    """Generation defaults with ids from ``tokenizer``: plain sampling from
    softmax(logits / T) with no hidden top-k/top-p truncation (``top_k=0``: transformers
    otherwise applies top_k=50), vision tokens suppressed. Pass ``do_sample=False`` for
    greedy decoding."""
    return GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=64,
        suppress_tokens=[tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS],
    )


def build_model(tokenizer, seed: int = 0, **text_overrides):
    """A randomly initialised ``Qwen2_5_VLForConditionalGeneration`` (fp32) for
    ``tokenizer``; the same seed gives the same weights."""
    config = build_config(tokenizer, **text_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = build_generation_config(tokenizer)
    model.eval()
    return model


# -- save / load -----------------------------------------------------------------------
def save_toy(model, processor, path: str | Path) -> Path:
    """Write model (safetensors, fp32), generation config and processor to ``path`` in
    ``save_pretrained`` layout. Written to a sibling temp folder and renamed into place,
    so an interrupted save never leaves a half-written model."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def toy_model_path() -> Path:
    """The packaged warm-started toy policy (a ``save_pretrained`` directory)."""
    if not (PACKAGE_POLICY_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"the packaged toy policy is missing from {PACKAGE_POLICY_DIR}; rebuild it with `rethinker toy build`"
        )
    return PACKAGE_POLICY_DIR


def resolve_model_path(path: str | None) -> str:
    """``path`` (a local model directory) or, when none is given, the built-in toy policy."""
    if path:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"--model {path}: not a local model directory (no downloads here)")
        return str(path)
    return str(toy_model_path())


def load_toy(device: str = "cpu", path: str | Path | None = None):
    """Load ``(model, processor)`` from the packaged toy policy (or ``path``) with plain
    ``transformers`` Auto classes; the model is in eval mode on ``device``. The image
    processor uses the PIL backend (``backend="pil"``): same pixels as the default
    torchvision backend, far faster for small images on a CPU."""
    path = Path(path) if path is not None else toy_model_path()
    processor = load_processor(path)
    model = AutoModelForImageTextToText.from_pretrained(path).to(device)
    model.eval()
    return model, processor
