"""The toy Qwen2.5-VL: tokenizer/processor/model assembly, save/load, generation."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from rethinker.toyworld.model import (
    SPECIAL_TOKENS,
    VISION_TOKENS,
    build_config,
    build_model,
    build_processor,
    build_tokenizer,
    load_toy,
    save_toy,
    toy_model_path,
)

TEXTS = [
    "Which bar is the tallest? Answer with its colour.",
    "The bars are red, green and blue from left to right. The red bar is the tallest. \\boxed{red}",
    "You are a helpful assistant.",
    "Wait, let's double check. There are 3 circles. \\boxed{3}",
] * 10

MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which bar is the tallest?"}]}]


@pytest.fixture(scope="module")
def small():
    tok = build_tokenizer(TEXTS)
    return build_model(tok, seed=3), build_processor(tok)


@pytest.fixture(scope="module")
def packaged():
    return load_toy()


def _inputs(processor, size=(112, 112)):
    text = processor.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], images=[Image.new("RGB", size, (200, 30, 30))], return_tensors="pt")


def test_special_tokens_take_the_lowest_ids(small):
    _, proc = small
    tok = proc.tokenizer
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert tok.image_token == "<|image_pad|>" and tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    # special tokens are atomic, ordinary text round-trips through the byte-level BPE
    assert tok("<|im_start|>user").input_ids[0] == 1
    assert tok.decode(tok("colour ü 42 \\boxed{x}").input_ids) == "colour ü 42 \\boxed{x}"


def test_config_ids_match_tokenizer(packaged):
    model, proc = packaged
    tok, cfg = proc.tokenizer, model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert cfg.text_config.eos_token_id == tok.eos_token_id
    assert cfg.text_config.pad_token_id == tok.pad_token_id
    assert cfg.text_config.vocab_size == len(tok)
    gen = model.generation_config
    assert gen.pad_token_id == tok.pad_token_id and tok.eos_token_id in gen.eos_token_id
    assert gen.top_k == 0 and gen.top_p == 1.0  # no hidden top-k=50 truncation
    assert sorted(gen.suppress_tokens) == sorted(tok.convert_tokens_to_ids(t) for t in VISION_TOKENS)


def test_mrope_section_must_fit_head_dim(small):
    _, proc = small
    with pytest.raises(ValueError, match="mrope_section"):
        build_config(proc.tokenizer, hidden_size=256)  # head_dim 64 needs sections summing to 32


def test_chat_template_renders_image_placeholder(packaged):
    _, proc = packaged
    text = proc.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Which bar is the tallest?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "size,tokens", [((112, 112), 16), ((56, 56), 4), ((640, 480), 12), ((2000, 2000), 16), ((30, 30), 4)]
)
def test_image_token_count(packaged, size, tokens):
    _, proc = packaged
    inputs = _inputs(proc, size)
    assert int((inputs["input_ids"] == proc.tokenizer.image_token_id).sum()) == tokens
    assert int(inputs["image_grid_thw"].prod()) == tokens * 4  # 2x2 patches merged per token
    assert int(inputs["mm_token_type_ids"].sum()) == tokens


def test_save_load_round_trip_identical_logits(small, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, proc = small
    save_toy(model, proc, tmp_path / "toy")
    model2 = AutoModelForImageTextToText.from_pretrained(tmp_path / "toy").eval()
    _, proc2 = load_toy(path=tmp_path / "toy")  # PIL image backend, as built
    assert type(model2) is type(model) and type(proc2) is type(proc)
    assert type(proc2.image_processor) is type(proc.image_processor)
    inputs = _inputs(proc)
    inputs2 = _inputs(proc2)
    assert torch.equal(inputs["input_ids"], inputs2["input_ids"])
    assert torch.equal(inputs["pixel_values"], inputs2["pixel_values"])
    with torch.no_grad():
        a, b = model(**inputs).logits, model2(**inputs2).logits
    assert a.shape[-1] == len(proc.tokenizer)
    assert torch.equal(a, b)
    assert not (tmp_path / "toy.tmp").exists()
    # plain AutoProcessor (torchvision image backend) gives the same pixels to float precision
    inputs3 = _inputs(AutoProcessor.from_pretrained(tmp_path / "toy"))
    assert torch.equal(inputs["input_ids"], inputs3["input_ids"])
    assert torch.allclose(inputs["pixel_values"], inputs3["pixel_values"], atol=1e-5)


def test_same_seed_same_weights(small):
    model, proc = small
    again = build_model(proc.tokenizer, seed=3)
    other = build_model(proc.tokenizer, seed=4)
    w = "model.language_model.layers.0.mlp.up_proj.weight"
    assert torch.equal(model.state_dict()[w], again.state_dict()[w])
    assert not torch.equal(model.state_dict()[w], other.state_dict()[w])


def test_generation_runs_and_never_emits_vision_tokens(packaged):
    model, proc = packaged
    inputs = _inputs(proc)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=True, num_return_sequences=4)
    new = out[:, inputs["input_ids"].shape[1] :]
    assert new.shape[0] == 4 and new.shape[1] >= 1
    vision_ids = set(proc.tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS)
    assert not vision_ids & set(new.flatten().tolist())
    assert all(isinstance(t, str) for t in proc.batch_decode(new, skip_special_tokens=True))


def test_packaged_policy_is_small():
    total = sum(f.stat().st_size for f in toy_model_path().rglob("*") if f.is_file())
    assert total < 20 * 1024 * 1024


def test_loaded_policy_can_be_saved_again(packaged, tmp_path):
    """A loaded toy policy re-saves (as checkpoints do) and reloads to the same weights."""
    model, proc = packaged
    save_toy(model, proc, tmp_path / "again")
    model2, proc2 = load_toy(path=tmp_path / "again")
    assert type(proc2.image_processor) is type(proc.image_processor)
    w = "model.language_model.embed_tokens.weight"
    assert torch.equal(model.state_dict()[w], model2.state_dict()[w])
