"""The memory plan (train/plan.py) and ``rethinker train --dry-run``: real numbers."""

import pytest
import torch

from rethinker.model.shapes import build_random, qwen25vl_config, save_config
from rethinker.train.config import ModelConfig, resolve
from rethinker.train.plan import (
    Workload,
    count_parameters,
    layer_activation_elements,
    plan,
    plan_for,
    smart_resize,
    visual_tokens,
)

TARGETS = ModelConfig().lora_targets


def test_toy_parameter_count_equals_the_real_models(toy_policy):
    model, _ = toy_policy
    c = count_parameters(model.config)
    assert c.total == sum(p.numel() for p in model.parameters())
    assert c.vision == sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")


def test_qwen25vl_3b_published_shape():
    c = count_parameters(qwen25vl_config("3b"), 64, TARGETS)
    assert c.total == 3_754_622_976  # Qwen2.5-VL-3B-Instruct: "3.75B" (tied embeddings counted once)
    assert 0.66e9 < c.vision < 0.68e9
    assert (c.layers, c.hidden, c.kv_dim, c.intermediate, c.vocab) == (36, 2048, 256, 11008, 151936)
    # LoRA rank 64 on q/k/v/o/gate/up/down of 36 layers: 64 x (in + out) each
    per_layer = 64 * ((2048 + 2048) * 2 + (2048 + 256) * 2 + (2048 + 11008) * 3)
    assert c.lora == 36 * per_layer == 119_734_272


def test_lora_count_equals_pefts_trainable_parameters():
    pytest.importorskip("peft")
    from rethinker.model.load import add_lora

    model = build_random("tiny", "cpu", torch.float32)
    c = count_parameters(model.config, 8, TARGETS)
    peft_model = add_lora(model, 8, None, 0.0, TARGETS)
    assert c.lora == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


@pytest.mark.parametrize("hw", [(1120, 896), (4000, 4000), (28, 28), (100, 3000), (448, 448), (333, 517)])
def test_smart_resize_matches_transformers(hw):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as reference

    lo, hi = 256 * 28 * 28, 1280 * 28 * 28
    assert smart_resize(*hw, 28, lo, hi) == tuple(reference(*hw, factor=28, min_pixels=lo, max_pixels=hi))


def test_visual_tokens_at_min_and_max_pixels():
    lo, hi = 256 * 28 * 28, 1280 * 28 * 28
    assert visual_tokens(1120, 896, lo, hi) == 1280  # exactly max_pixels: 40 x 32 tokens
    assert visual_tokens(4000, 4000, lo, hi) == 35 * 35  # a large square image: floor(sqrt(1280))^2
    assert visual_tokens(4000, 3200, lo, hi) <= 1280
    assert visual_tokens(28, 28, lo, hi) == 256  # a small image is upscaled to min_pixels


def _cfg(**over):
    base = {"model.path": "x", "model.dtype": "bfloat16", "model.lora_rank": 64}
    return resolve(None, {**base, **over})


def test_plan_3b_lora_per_rank_figures():
    mc = qwen25vl_config("3b")
    counts = count_parameters(mc, 64, TARGETS)
    one = plan(_cfg(), mc, 1, device="cuda", counts=counts)
    eight = plan(_cfg(), mc, 8, device="cuda", counts=counts)
    assert one.row("weights").bytes == 3_754_622_976 * 2
    assert one.row("LoRA adapters").bytes == 119_734_272 * 4
    assert one.row("AdamW state").bytes == 2 * 119_734_272 * 4
    assert eight.row("weights").bytes == one.row("weights").bytes / 8
    assert eight.row("AdamW state").bytes == one.row("AdamW state").bytes / 8
    assert eight.row("rollout: gathered weights").bytes == pytest.approx(3_754_622_976 * 2 * 7 / 8)
    assert one.visual_tokens_max == 1280 and one.visual_tokens_min == 256
    assert one.prompt_tokens == 256 + 1280 + 2
    # rollout KV cache: 2 x 36 layers x 256 x 2 B x (prompt + 2048) x 64 queries x G=8
    assert one.row("rollout KV cache").bytes == 2 * 36 * 256 * 2 * (1538 + 2048) * 64 * 8
    assert one.peak >= one.row("weights").bytes + one.row("AdamW state").bytes
    assert not eight.warnings  # LoRA runs sharded too (FSDP2 over the PEFT model)


def test_full_finetuning_trains_vision_unless_frozen():
    mc = qwen25vl_config("3b")
    counts = count_parameters(mc)
    full = plan(_cfg(**{"model.lora_rank": 0}), mc, 8, device="cuda", counts=counts)
    frozen = plan(_cfg(**{"model.lora_rank": 0, "model.freeze_vision": True}), mc, 8, device="cuda", counts=counts)
    assert full.trainable == counts.total and frozen.trainable == counts.total - counts.vision
    assert full.row("AdamW state").bytes == 2 * counts.total * 2 / 8  # bf16 moments, sharded


@pytest.mark.parametrize("lora,dtype", [(0, torch.float32), (0, torch.bfloat16), (8, torch.bfloat16)])
def test_activation_coefficients_match_autograd(lora, dtype):
    """The per-layer-per-token formula against what autograd actually saves (one layer vs two)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    if lora:
        pytest.importorskip("peft")
    from rethinker.model.load import add_lora

    h, inter, heads, kv_heads, T = 256, 768, 4, 2, 64
    saved = []
    for layers in (1, 2):
        cfg = qwen25vl_config("tiny")
        cfg.text_config.update(
            dict(
                hidden_size=h,
                intermediate_size=inter,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                num_key_value_heads=kv_heads,
            )
        )
        cfg.vision_config.out_hidden_size = h
        cfg.text_config.rope_parameters["mrope_section"] = [8, 12, 12]
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=dtype)
        if lora:
            model = add_lora(model, lora, None, 0.0, TARGETS)
        model.train()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen = {}

        def pack(t, params=params, seen=seen):
            st = t.untyped_storage()
            if st.data_ptr() not in params:
                seen[st.data_ptr()] = st.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=torch.randint(20, 500, (1, T)), use_cache=False, logits_to_keep=1)
        saved.append(sum(seen.values()))
    b = 4 if dtype == torch.float32 else 2
    measured = (saved[1] - saved[0]) / T / b
    predicted = layer_activation_elements(h, kv_heads * h // heads, inter, b, lora)
    assert measured == pytest.approx(predicted, rel=0.1)


def test_dry_run_prints_the_plan_without_weights(tmp_path, capsys):
    from rethinker.cli import main

    model_dir = save_config("3b", tmp_path / "qwen3b")  # config.json only: no weights to load
    rc = main(
        [
            "train",
            "--dry-run",
            "--model",
            str(model_dir),
            "--model.lora-rank",
            "64",
            "--world-size",
            "8",
            "--model.dtype",
            "bfloat16",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "memory plan: 8 rank(s)" in out and "peak per rank" in out and "3.75 B" in out
    assert "1280 at max_pixels" in out


def test_dry_run_toy_preset(capsys):
    from rethinker.cli import main

    assert main(["train", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "memory plan: 1 rank(s)" in out and "16 at max_pixels" in out


def test_plan_for_reads_the_toy_policy():
    p = plan_for(resolve(None, {}), workload=Workload(), device="cpu", runtime=0.0)
    assert p.counts.total > 1e6 and p.prompt_tokens == 66 + 16 + 2


@pytest.mark.parametrize("hw", [(1120, 896), (1500, 1500), (200, 150)])
def test_visual_tokens_equal_the_processors(toy_policy, hw):
    """The plan's count against Qwen's image processor through the trainer's own encoder."""
    import dataclasses
    import io

    from rethinker.records import ImageRef, load_image
    from rethinker.rollout.inputs import PromptEncoder
    from rethinker.toyworld.puzzles import generate

    _, processor = toy_policy
    lo, hi = 256 * 28 * 28, 1280 * 28 * 28
    rec = generate(1, seed=0, split="test")[0]
    buf = io.BytesIO()
    load_image(rec.images[0]).convert("RGB").resize(hw).save(buf, format="PNG")
    rec = dataclasses.replace(rec, images=[ImageRef(bytes=buf.getvalue())])
    q = PromptEncoder(processor, min_pixels=lo, max_pixels=hi).encode(rec)
    assert int((q.mm_token_type_ids == 1).sum()) == visual_tokens(hw[1], hw[0], lo, hi)
