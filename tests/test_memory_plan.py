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


def test_kl_reference_is_sharded_or_the_adapters_off():
    mc = qwen25vl_config("3b")
    counts = count_parameters(mc)
    full = plan(_cfg(**{"model.lora_rank": 0, "algo.kl_coef": 0.01}), mc, 8, device="cuda", counts=counts)
    assert full.row("reference model").bytes == full.row("weights").bytes == counts.total * 2 / 8
    lora = plan(_cfg(**{"algo.kl_coef": 0.01}), mc, 8, device="cuda", counts=count_parameters(mc, 64, TARGETS))
    assert "reference model" not in [r.name for r in lora.rows]  # the policy with its adapters off
    none = plan(_cfg(**{"model.lora_rank": 0}), mc, 8, device="cuda", counts=counts)
    assert full.peak - none.peak == pytest.approx(counts.total * 2 / 8)


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
    assert "fits: peak" in out and "(an estimate" in out
    if not torch.cuda.is_available():
        assert out.rstrip().endswith("GPU memory: 80 GiB assumed (no CUDA device visible; --gpu-memory-gb sets it)")


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


# --------------------------------------------------------------------------- published shapes, vLLM, fits

GIB = 2**30


@pytest.fixture(scope="module")
def counts_7b():
    return qwen25vl_config("7b"), count_parameters(qwen25vl_config("7b"))


def test_published_7b_and_72b_shapes():
    from rethinker.model.shapes import shape_for

    seven, big = count_parameters(qwen25vl_config("7b")), count_parameters(qwen25vl_config("72b"))
    assert seven.total == 8_292_166_656  # Qwen2.5-VL-7B-Instruct: "8.29B" (untied lm_head)
    assert big.total == 73_406_351_360  # Qwen2.5-VL-72B-Instruct: "73.4B"
    assert (seven.layers, seven.hidden, seven.kv_heads, seven.kv_dim, seven.intermediate) == (28, 3584, 4, 512, 18944)
    assert (big.layers, big.hidden, big.kv_heads, big.kv_dim, big.intermediate) == (80, 8192, 8, 1024, 29568)
    assert seven.vocab == big.vocab == 152064 and seven.max_positions == big.max_positions == 128000
    assert not qwen25vl_config("72b").tie_word_embeddings
    assert 0.67e9 < seven.vision < 0.68e9 and 0.70e9 < big.vision < 0.71e9  # the same tower, a wider merger
    assert shape_for("/models/Qwen2.5-VL-72B-Instruct") == "72b" and shape_for("Qwen/qwen2.5-vl-7b-instruct") == "7b"
    assert shape_for("/models/Qwen2.5-VL-7B-Instruct-ft") is None


def _vllm(**over):
    base = {"model.path": "x", "model.dtype": "bfloat16", "rollout.engine": "vllm"}
    return resolve(None, {**base, **over})


def test_vllm_rows_follow_the_utilization_rule(counts_7b):
    from rethinker.train.plan_vllm import VLLM_RUNTIME_BYTES

    mc, c = counts_7b
    p = plan(_vllm(**{"rollout.vllm_gpu_memory_utilization": 0.4}), mc, 8, device="cuda", counts=c, gpu_gib=80)
    weights = c.total * 2
    assert p.row("vLLM engine weights").bytes == weights
    # one layer's working set for 16384 tokens (larger than 1024 rows of fp32 logits) + 1 GiB
    working = 16384 * (4 * 3584 + 3 * 18944) * 2 + VLLM_RUNTIME_BYTES
    assert p.row("vLLM working set").bytes == working
    kv = 0.4 * 80 * GIB - weights - working  # vLLM: the share is weights + working set + KV
    assert p.row("vLLM KV pool").bytes == pytest.approx(kv) and kv / GIB == pytest.approx(13.38, abs=0.01)
    assert p.engine.kv_per_token == 2 * 28 * 512 * 2 and p.engine.rows == 64 * 8  # 512 queries / 8 engines x G
    resident = p.row("weights").bytes + p.row("AdamW state").bytes
    assert p.gathered == 0  # vLLM holds its own weights: the policy stays sharded
    assert p.rollout_peak == pytest.approx(resident + 0.4 * 80 * GIB)
    assert p.row("vLLM asleep (update phase)").bytes == VLLM_RUNTIME_BYTES  # sleep level 1
    assert p.row("host memory: vLLM weights asleep").bytes == weights
    update = resident + sum(p.row(n).bytes for n in ("gradients", "activations / micro-batch", "logits / micro-batch"))
    assert p.update_peak == pytest.approx(update + p.row("FSDP2 all-gather buffers").bytes + VLLM_RUNTIME_BYTES)
    assert p.sync_peak == pytest.approx(resident + 152064 * 3584 * 2 + weights + VLLM_RUNTIME_BYTES)
    assert not any(r.name == "rollout KV cache" for r in p.rows) and not p.warnings
    assert p.fits and p.peak / GIB == pytest.approx(37.79, abs=0.01)


def test_vllm_kv_cache_gb_sleep_levels_and_tensor_parallel(counts_7b):
    mc, c = counts_7b
    fixed = plan(_vllm(**{"rollout.vllm_kv_cache_gb": 10.0, "rollout.vllm_sleep_level": 0}), mc, 8, counts=c)
    e = fixed.engine
    assert e.kv_pool == 10 * GIB and e.asleep == e.awake == e.weights + e.working + 10 * GIB and e.host == 0
    two = plan(
        _vllm(**{"rollout.vllm_sleep_level": 2, "rollout.vllm_tensor_parallel_size": 2}),
        mc,
        8,
        device="cuda",
        counts=c,
        gpu_gib=80,
    )
    assert two.engine.weights == c.total * 2 / 2 and two.engine.host == 0
    assert two.engine.kv_per_token == 2 * 28 * 256 * 2  # 4 KV heads: 2 per GPU
    assert two.engine.rows == 128 * 8  # 4 engines of 2 GPUs share the 512 queries
    eight = plan(_vllm(**{"rollout.vllm_tensor_parallel_size": 8}), mc, 8, device="cuda", counts=c, gpu_gib=80)
    assert eight.engine.kv_per_token == 2 * 28 * 128 * 2  # fewer KV heads than GPUs: one head each


def test_vllm_refuses_to_start_without_one_max_length_sequence(counts_7b):
    mc, c = counts_7b
    p = plan(_vllm(**{"rollout.vllm_gpu_memory_utilization": 0.3}), mc, 8, device="cuda", counts=c, gpu_gib=79)
    assert p.peak < 79 * GIB and not p.fits
    assert "fewer than one sequence of max_model_len 128000" in p.problems[0]
    starved = plan(_vllm(**{"rollout.vllm_gpu_memory_utilization": 0.2}), mc, 8, device="cuda", counts=c, gpu_gib=79)
    assert starved.row("vLLM KV pool").bytes == 0 and "no memory left for its KV pool" in starved.problems[0]


def test_smallest_change_that_fits(counts_7b):
    from rethinker.train.plan_fit import dry_run, smallest_change, verdict

    mc, c = counts_7b

    def plan_of(cfg, world):
        return plan(cfg, mc, world, device="cuda", counts=c if cfg.model.lora_rank == 0 else None, gpu_gib=79)

    # vLLM short of one 128000-token sequence: T = 2 halves the weights and the KV per token
    flag, p = smallest_change(_vllm(**{"rollout.vllm_gpu_memory_utilization": 0.3}), 8, 8, plan_of)
    assert flag == "--rollout.vllm-tensor-parallel-size 2" and p.fits
    # the transformers engine's KV cache: fewer queries per generation chunk
    lora = _cfg(**{"rollout.max_batch_queries": 64, "rollout.queries_per_step": 64})

    lora_counts = count_parameters(mc, 64, TARGETS)

    def lora_plan(cfg, world):
        return plan(cfg, mc, world, device="cuda", gpu_gib=60, counts=lora_counts)

    assert not lora_plan(lora, 1).fits and not lora_plan(_cfg(**{"rollout.max_batch_queries": 32}), 1).fits
    flag, p = smallest_change(lora, 1, 8, lora_plan)
    assert flag == "--rollout.max-batch-queries 16" and p.peak < 60 * GIB
    assert verdict(p)[0] == f"fits: peak {p.peak / GIB:.1f} GiB of 60 GiB per GPU"
    # 72B, T = 8 at vLLM's 30%: the peak is below the GPU, but the KV pool cannot hold one
    # sequence of the model's length, and no change in the search gives vLLM more room
    big = _vllm(**{"model.path": "/models/Qwen2.5-VL-72B-Instruct", "rollout.vllm_tensor_parallel_size": 8})
    p, text = dry_run(big, 32, gpu_gib=79, device="cuda", runtime=0.0)
    assert p.gathered == 0 and "does not fit: peak 68.6 GiB of 79 GiB per GPU, but vLLM would not start" in text
    assert "fewer than one sequence of max_model_len 128000" in text and "none of these fits" in text
    assert "estimate" in text.splitlines()[-1]


def _main(*args):
    from rethinker.cli import main

    return main(["train", "--dry-run", "--model", "/models/Qwen2.5-VL-7B-Instruct", *args])


@pytest.mark.parametrize(
    "args,error",
    [
        (["--rollout.vllm-tensor-parallel-size", "3"], "must divide the number of ranks (8)"),
        (["--rollout.vllm-tensor-parallel-size", "8", "--gpus-per-node", "4"], "spans more than one node"),
        (["--rollout.engine", "transformers", "--rollout.vllm-tensor-parallel-size", "2"], "needs --rollout.engine"),
    ],
)
def test_dry_run_bad_layout_is_one_line_and_exit_2(args, error, capsys):
    assert _main("--rollout.engine", "vllm", "--world-size", "8", *args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("rethinker train: rollout.vllm_tensor_parallel_size") and error in captured.err


def test_dry_run_answers_does_it_fit(capsys):
    base = ["--device", "cuda", "--rollout.engine", "vllm", "--world-size", "8"]
    assert _main(*base, "--gpu-memory-gb", "79", "--rollout.vllm-gpu-memory-utilization", "0.4") == 0
    out = capsys.readouterr().out
    assert "fits: peak 37.4 GiB of 79 GiB per GPU" in out and "vLLM KV pool | 12.98 GiB" in out
    assert "published shape of Qwen2.5-VL-7B-Instruct" in out and "assumed" not in out
    assert _main(*base, "--gpu-memory-gb", "40") == 0  # 30% of 40 GiB cannot hold the 15.45 GiB of weights
    out = capsys.readouterr().out
    assert "does not fit: peak 37.2 GiB of 40 GiB per GPU, but vLLM would not start" in out
    assert "smallest change that fits: --rollout.vllm-tensor-parallel-size 4 (peak 37.2 GiB)" in out
    assert _main(*base, "--gpu-memory-gb", "32") == 0  # the update alone (37.2 GiB) is larger
    out = capsys.readouterr().out
    assert "does not fit: peak 37.2 GiB > 32 GiB per GPU" in out and "none of these fits" in out
