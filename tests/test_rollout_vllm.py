"""The parts of the vLLM engine that are ours, on real toy objects (vLLM itself is not
installed here: the engine class is only checked to fail with a clear message)."""

import copy
import dataclasses
import importlib.util
import re

import pytest
import torch

from rethinker.rollout.base import Completion, SamplingParams, extend_query
from rethinker.rollout.inputs import PromptEncoder, vision_token_ids
from rethinker.rollout.vllm import (
    VLLM_TOP_K_DISABLED,
    _llm_kwargs,
    build_vllm_inputs,
    collapse_pads,
    completion_from_vllm,
    pixel_limits,
    vllm_sampling_kwargs,
)
from rethinker.rollout.vllm_weights import (
    iter_sync_weights,
    lora_modules,
    policy_weight_name,
    to_vllm_weight_names,
    vllm_param_name,
)

PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def setup(toy_policy, toy_records):
    model, processor = toy_policy
    enc = PromptEncoder(processor, keep_images=True)
    queries = [enc.encode(r) for r in toy_records[:4]]
    vocab = processor.tokenizer.get_vocab()
    pads = [vocab["<|image_pad|>"], vocab["<|video_pad|>"]]
    return model, processor, queries, pads


def _expand_pads(ids, grid_thw, pad_id, merge):
    """vLLM's prompt update for a token prompt (qwen2_5_vl.py ``_get_prompt_updates``): the
    i-th ``<|image_pad|>`` becomes ``grid_thw[i].prod() // merge**2`` pads."""
    out, k = [], 0
    for t in ids:
        if t == pad_id:
            out.extend([pad_id] * (int(grid_thw[k].prod()) // merge**2))
            k += 1
        else:
            out.append(t)
    assert k == len(grid_thw)
    return out


# ----------------------------------------------------------------- inputs


def test_keep_images_is_off_by_default(toy_policy, toy_records):
    _, processor = toy_policy
    q = PromptEncoder(processor).encode(toy_records[0])
    assert q.images is None
    with pytest.raises(ValueError, match="keep_images=True"):
        build_vllm_inputs([q], processor.tokenizer, [])


def test_first_pass_prompt_is_text_and_images_that_reprocess_to_our_ids(setup):
    model, processor, queries, pads = setup
    kw = pixel_limits(processor)
    assert kw == {"min_pixels": 56 * 56, "max_pixels": 112 * 112}
    prompts = build_vllm_inputs(queries, processor.tokenizer, pads, kw)
    assert len(prompts) == len(queries)
    for q, p in zip(queries, prompts):
        n_img = int(q.image_grid_thw.shape[0])
        assert set(p) == {"prompt", "multi_modal_data", "mm_processor_kwargs"}
        assert p["prompt"] == q.text
        assert p["prompt"].count(PLACEHOLDER) == n_img == len(p["multi_modal_data"]["image"]) >= 1
        assert p["prompt"].count("<|image_pad|>") == n_img  # not pre-expanded
        # what vLLM does with a text prompt: the HF processor on text + images + kwargs
        again = processor(
            text=[p["prompt"]], images=p["multi_modal_data"]["image"], return_tensors="pt", **p["mm_processor_kwargs"]
        )
        assert torch.equal(again["input_ids"][0], q.input_ids)
        assert torch.equal(again["image_grid_thw"], q.image_grid_thw)


def test_pixel_limits_reach_vllm_and_change_the_expansion(toy_policy, toy_records):
    _, processor = toy_policy
    small = 56 * 56 * 2
    q = PromptEncoder(processor, max_pixels=small, keep_images=True).encode(toy_records[0])
    default = PromptEncoder(processor).encode(toy_records[0])
    assert q.length < default.length  # the limit matters for these 112x112 images
    vocab = processor.tokenizer.get_vocab()
    (p,) = build_vllm_inputs(
        [q], processor.tokenizer, [vocab["<|image_pad|>"]], pixel_limits(processor, max_pixels=small)
    )
    assert p["mm_processor_kwargs"]["max_pixels"] == small
    again = processor(
        text=[p["prompt"]], images=p["multi_modal_data"]["image"], return_tensors="pt", **p["mm_processor_kwargs"]
    )
    assert torch.equal(again["input_ids"][0], q.input_ids)


def test_continuation_is_token_ids_that_vllm_expands_back_to_ours(setup):
    model, processor, queries, pads = setup
    tok = processor.tokenizer
    extra = tok.encode("The answer is \\boxed{2}. Wait, let me double check.", add_special_tokens=False)
    conts = []
    for q in queries:
        ext = extend_query(q, extra)
        if ext.images is None:  # until extend_query carries images (see the report)
            ext = dataclasses.replace(ext, images=q.images)
        conts.append(ext)
    prompts = build_vllm_inputs(conts, tok, pads)
    merge = processor.image_processor.merge_size
    for q, ext, p in zip(queries, conts, prompts):
        assert "prompt" not in p
        ids = p["prompt_token_ids"]
        assert ids[-len(extra) :] == extra  # the trained-on tokens, verbatim
        assert ids[: -len(extra)] == tok.encode(q.text, add_special_tokens=False)
        assert ids.count(pads[0]) == int(q.image_grid_thw.shape[0])
        assert _expand_pads(ids, q.image_grid_thw, pads[0], merge) == ext.input_ids.tolist()
        assert p["multi_modal_data"]["image"] is not q.images and p["multi_modal_data"]["image"] == q.images


def test_collapse_pads_keeps_separate_images_apart():
    # two images back to back: <vs> pad pad <ve> <vs> pad pad pad <ve>
    assert collapse_pads([9, 12, 12, 10, 9, 12, 12, 12, 10, 5, 5], {12}) == [9, 12, 10, 9, 12, 10, 5, 5]
    assert collapse_pads([], {12}) == []


def test_inconsistent_query_is_refused(setup):
    model, processor, queries, pads = setup
    q = queries[0]
    broken = dataclasses.replace(q, text=q.text.replace("assistant", "user"))
    with pytest.raises(ValueError, match="do not start with its chat text"):
        build_vllm_inputs([broken], processor.tokenizer, pads)
    lost = dataclasses.replace(q, images=None)
    with pytest.raises(ValueError, match="1 encoded image"):
        build_vllm_inputs([lost], processor.tokenizer, pads)


# ----------------------------------------------------------------- sampling


def test_sampling_kwargs_map_ours_to_vllms(toy_policy):
    _, processor = toy_policy
    banned = vision_token_ids(processor)
    vocab_size = len(processor.tokenizer)
    kw = vllm_sampling_kwargs(
        SamplingParams(max_new_tokens=77, temperature=0.7, top_p=0.9, top_k=0, n=5), banned, [2, 0], vocab_size
    )
    assert kw["n"] == 5 and kw["temperature"] == 0.7 and kw["top_p"] == 0.9 and kw["max_tokens"] == 77
    assert kw["top_k"] == VLLM_TOP_K_DISABLED == -1
    assert kw["stop_token_ids"] == [2, 0] and kw["detokenize"] is False
    allowed = set(kw["allowed_token_ids"])
    assert set(range(vocab_size)) - allowed == set(banned)
    names = {processor.tokenizer.convert_ids_to_tokens(t) for t in set(range(vocab_size)) - allowed}
    assert names == {
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
    }
    assert vllm_sampling_kwargs(SamplingParams(top_k=20), banned, [2], vocab_size)["top_k"] == 20


def test_greedy_is_temperature_zero_with_one_sample(toy_policy):
    _, processor = toy_policy
    kw = vllm_sampling_kwargs(SamplingParams(greedy=True, n=4, top_k=5, top_p=0.5), [], [2], len(processor.tokenizer))
    assert kw["temperature"] == 0.0 and kw["n"] == 1 and kw["top_p"] == 1.0 and kw["top_k"] == -1
    assert "allowed_token_ids" not in kw
    assert vllm_sampling_kwargs(SamplingParams(temperature=0.0, n=3), [], [2], 10)["n"] == 1
    with pytest.raises(ValueError, match="banned ids"):
        vllm_sampling_kwargs(SamplingParams(), [10], [2], 10)


# ----------------------------------------------------------------- outputs


@dataclasses.dataclass
class CompletionOutput:
    """Mirrors the fields of ``vllm.outputs.CompletionOutput`` we read (vLLM is not
    installed here, so its class cannot be built)."""

    index: int
    text: str
    token_ids: list
    finish_reason: str | None
    stop_reason: int | str | None = None


def test_completion_mapping(toy_policy):
    _, processor = toy_policy
    tok = processor.tokenizer
    body = tok.encode("Count: 3 \\boxed{3}", add_special_tokens=False)
    eos = [2, 0]
    done = completion_from_vllm(CompletionOutput(0, "", body + [2], "stop"), eos, tok)
    assert done == Completion(body + [2], "Count: 3 \\boxed{3}", True)
    # stopped by the second end-of-sequence id (reported as stop_reason)
    assert completion_from_vllm(CompletionOutput(0, "", body + [0], "stop", 0), eos, tok).token_ids == body + [0]
    # a release that leaves the stop token out: it is put back
    assert completion_from_vllm(CompletionOutput(0, "", body, "stop", 0), eos, tok).token_ids == body + [0]
    cut = completion_from_vllm(CompletionOutput(0, "", body, "length"), eos, tok)
    assert cut.token_ids == body and cut.finished is False and cut.text == "Count: 3 \\boxed{3}"
    aborted = completion_from_vllm(CompletionOutput(0, "", body[:2], "abort"), eos, tok)
    assert aborted.finished is False
    pad = tok.convert_tokens_to_ids("<|image_pad|>")
    with pytest.raises(ValueError, match="banned"):
        completion_from_vllm(CompletionOutput(0, "", [pad] + body, "length"), eos, tok, vision_token_ids(processor))


# ----------------------------------------------------------------- weights


def _expected_vllm_params(cfg):
    """vLLM's Qwen2.5-VL parameter names, written from its module tree (qwen2_5_vl.py:
    ``visual`` = patch_embed.proj, blocks[i].{norm1,norm2,attn.qkv,attn.proj,mlp.gate_up_proj,
    mlp.down_proj}, merger.{ln_q,mlp.0,mlp.2}; qwen2.py: language_model.model.{embed_tokens,
    layers[i].{self_attn.qkv_proj,self_attn.o_proj,mlp.gate_up_proj,mlp.down_proj,
    input_layernorm,post_attention_layernorm},norm} and language_model.lm_head)."""
    text = getattr(cfg, "text_config", cfg)
    v = cfg.vision_config
    names = {"visual.patch_embed.proj.weight", "visual.merger.ln_q.weight"}
    names |= {f"visual.merger.mlp.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")}
    for b in range(v.depth):
        p = f"visual.blocks.{b}."
        names |= {p + "norm1.weight", p + "norm2.weight"}
        names |= {
            p + m + "." + w
            for m in ("attn.qkv", "attn.proj", "mlp.gate_up_proj", "mlp.down_proj")
            for w in ("weight", "bias")
        }
    names |= {"language_model.model.embed_tokens.weight", "language_model.model.norm.weight"}
    for i in range(text.num_hidden_layers):
        p = f"language_model.model.layers.{i}."
        names |= {
            p + "self_attn.qkv_proj.weight",
            p + "self_attn.qkv_proj.bias",
            p + "self_attn.o_proj.weight",
            p + "mlp.gate_up_proj.weight",
            p + "mlp.down_proj.weight",
            p + "input_layernorm.weight",
            p + "post_attention_layernorm.weight",
        }
    if not text.tie_word_embeddings:
        names.add("language_model.lm_head.weight")
    return names


def _check_mapping(mapping, cfg):
    targets = {}
    for dst in mapping.values():
        if dst is None:
            continue
        targets.setdefault(dst[0], []).append(dst[1])
    assert set(targets) == _expected_vllm_params(cfg)
    for name, shards in targets.items():
        if ".qkv_proj." in name:
            assert sorted(shards) == ["k", "q", "v"], name
        elif ".gate_up_proj." in name:
            assert sorted(shards) == [0, 1], name
        else:
            assert shards == [None], name


def test_every_toy_weight_maps_to_a_vllm_parameter(toy_policy):
    model, _ = toy_policy
    keys = list(model.state_dict().keys())
    assert any(k.startswith("model.language_model.layers.") for k in keys)  # transformers-5 names
    mapping = to_vllm_weight_names(keys, tie_word_embeddings=True)
    assert mapping["lm_head.weight"] is None  # tied: vLLM skips it
    assert mapping["model.language_model.layers.0.self_attn.k_proj.weight"] == (
        "language_model.model.layers.0.self_attn.qkv_proj.weight",
        "k",
    )
    assert mapping["model.visual.blocks.1.mlp.up_proj.bias"] == ("visual.blocks.1.mlp.gate_up_proj.bias", 1)
    assert mapping["model.visual.blocks.0.attn.qkv.weight"] == ("visual.blocks.0.attn.qkv.weight", None)
    assert mapping["model.visual.merger.mlp.2.weight"] == ("visual.merger.mlp.2.weight", None)
    _check_mapping(mapping, model.config)


def test_hub_checkpoint_layout_maps_to_the_same_parameters(toy_policy):
    model, _ = toy_policy
    keys = list(model.state_dict().keys())

    def hub(k):  # transformers < 4.52 / hub safetensors names
        return re.sub(r"^model\.visual\.", "visual.", re.sub(r"^model\.language_model\.", "model.", k))

    new = to_vllm_weight_names(keys, True)
    old = to_vllm_weight_names([hub(k) for k in keys], True)
    assert {hub(k): v for k, v in new.items()} == old
    assert old["model.layers.3.mlp.gate_proj.weight"] == ("language_model.model.layers.3.mlp.gate_up_proj.weight", 0)
    untied = to_vllm_weight_names(keys, False)
    assert untied["lm_head.weight"] == ("language_model.lm_head.weight", None)
    with pytest.raises(ValueError, match="not a Qwen2.5-VL weight"):
        vllm_param_name("encoder.layer.0.weight", True)


def test_iter_sync_weights_are_the_policy_tensors(toy_policy):
    model, _ = toy_policy
    sent = dict(iter_sync_weights(model))
    params = dict(model.named_parameters())
    assert set(sent) == set(params) and "lm_head.weight" not in sent  # tied: named_parameters dedups
    for n, t in sent.items():
        assert t.data_ptr() == params[n].data_ptr()  # no copy on one process
    _check_mapping(to_vllm_weight_names(sent, True), model.config)


def test_policy_weight_name_strips_wrappers():
    assert (
        policy_weight_name("base_model.model.model.language_model.layers.0.self_attn.q_proj.base_layer.weight")
        == "model.language_model.layers.0.self_attn.q_proj.weight"
    )
    assert (
        policy_weight_name("base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.default.weight")
        is None
    )
    assert policy_weight_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert policy_weight_name("base_model.model.lm_head.original_module.weight") is None
    assert (
        policy_weight_name("model.language_model._checkpoint_wrapped_module.norm.weight")
        == "model.language_model.norm.weight"
    )


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft not installed")
def test_lora_policy_sends_merged_weights_under_base_names(toy_policy):
    from peft import LoraConfig, get_peft_model

    base, _ = toy_policy
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)  # non-zero update, so merging changes weights
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert len(lora_modules(model)) == 2 * base.config.text_config.num_hidden_layers  # q and v of each layer
    sent = dict(iter_sync_weights(model))
    merged = copy.deepcopy(model).merge_and_unload()
    assert set(sent) == set(dict(base.named_parameters()))
    want = dict(merged.named_parameters())
    for n, t in sent.items():
        assert torch.allclose(t, want[n], atol=1e-6), n
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(sent[name], dict(base.named_parameters())[name])  # the adapter is in it
    after = {n: p.detach() for n, p in model.named_parameters()}
    assert all(torch.equal(before[n], after[n]) for n in before)  # the policy is untouched


def test_engine_without_vllm_says_how_to_install(toy_policy):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed")
    from rethinker.rollout.vllm import VLLMEngine

    _, processor = toy_policy
    with pytest.raises(ImportError, match=r"rethinker\[vllm\]"):
        VLLMEngine("unused", processor)


def test_llm_kwargs_colocated_on_external_launcher_standalone_on_vllms_own_executor():
    def kw(**k):
        return _llm_kwargs("m", dtype="float32", gpu_memory_utilization=0.5, max_model_len=None, enforce_eager=True,
                           sleep_level=0, seed=3, max_images_per_prompt=4, mm_processor_kwargs={}, kv_cache_gb=None,
                           llm_kwargs=None, **k)  # fmt: skip

    def layout(d):
        return d["distributed_executor_backend"], d["tensor_parallel_size"]

    assert layout(kw()) == ("external_launcher", 1)  # the trainer's default
    assert layout(kw(colocated=False)) == (None, 1)  # vLLM's choice for one worker
    assert layout(kw(colocated=False, tensor_parallel_size=2)) == ("mp", 2)
    # colocated with T = 2: the T consecutive torchrun ranks that share the engine
    assert layout(kw(tensor_parallel_size=2)) == ("external_launcher", 2)
    for colocated in (True, False):
        with pytest.raises(ValueError, match="tensor_parallel_size must be >= 1"):
            kw(colocated=colocated, tensor_parallel_size=0)
