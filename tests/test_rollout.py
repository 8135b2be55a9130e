"""Rollout inputs, scoring and the transformers engine on the tiny toy policy."""

import copy

import pytest
import torch

from rethinker.rollout.base import SamplingParams, extend_query
from rethinker.rollout.hf import TransformersEngine
from rethinker.rollout.inputs import PromptEncoder, collate_sequences, vision_token_ids
from rethinker.rollout.scoring import score


@pytest.fixture(scope="module")
def encoded(toy_policy, toy_records):
    model, processor = toy_policy
    enc = PromptEncoder(processor)
    return [enc.encode(r) for r in toy_records[:4]], enc


def _completions(processor):
    tok = processor.tokenizer
    texts = ["The bar is red. \\boxed{red}", "Count: 3", "Wait, let me double check. The answer is \\boxed{B}", "no"]
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    return [tok.encode(t, add_special_tokens=False) + [eos] for t in texts]


def _unpadded_logprobs(model, queries, comps, pad_id):
    rows = []
    for i, c in enumerate(comps):
        b = collate_sequences([queries[i]], [c], [0], pad_id)
        with torch.no_grad():
            s = score(model, [queries[i]], b)
        rows.append(s.logprobs[0][b.target_mask[0]])
    return rows


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_matches_unpadded_forward(toy_policy, encoded, side):
    model, processor = toy_policy
    queries, enc = encoded
    comps = _completions(processor)
    ref = _unpadded_logprobs(model, queries, comps, enc.pad_token_id)
    batch = collate_sequences(queries, comps, list(range(4)), enc.pad_token_id, padding_side=side)
    assert batch.input_ids.shape[0] == 4
    # padding really happened (otherwise the test proves nothing)
    assert (batch.attention_mask == 0).any()
    with torch.no_grad():
        s = score(model, queries, batch)
    for i in range(4):
        got = s.logprobs[i][batch.target_mask[i]]
        assert got.shape == ref[i].shape == (len(comps[i]),)
        torch.testing.assert_close(got, ref[i], atol=1e-5, rtol=0)


def test_positions_matter_without_mm_token_types_the_logprobs_change(toy_policy, encoded):
    """Guard for pitfall 1: dropping mm_token_type_ids changes the result, so the padded
    test above really checks the M-RoPE path."""
    model, processor = toy_policy
    queries, enc = encoded
    comps = _completions(processor)
    b = collate_sequences(queries[:1], comps[:1], [0], enc.pad_token_id)
    with torch.no_grad():
        good = score(model, queries[:1], b).logprobs
        kw = b.model_kwargs()
        kw.pop("mm_token_type_ids")
        out = model(**kw)
    from rethinker.rollout.scoring import token_logprobs

    bad = token_logprobs(out.logits[:, :-1], b.input_ids[:, 1:])
    assert (good[b.target_mask] - bad[b.target_mask]).abs().max() > 1e-3


def test_shared_vision_features_equal_per_sample_pixels(toy_policy, encoded):
    model, processor = toy_policy
    queries, enc = encoded
    comps = _completions(processor)
    qidx = [0, 0, 1, 1]  # two samples per query: the vision tower runs once per query
    b = collate_sequences(queries, comps, qidx, enc.pad_token_id)
    with torch.no_grad():
        shared = score(model, queries, b, share_vision=True).logprobs
        plain = score(model, queries, b, share_vision=False).logprobs
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=0)


def test_shared_vision_gradients_equal_per_sample_pixels(toy_policy, encoded):
    model, processor = toy_policy
    queries, enc = encoded
    comps = _completions(processor)
    b = collate_sequences(queries, comps, [0, 0, 1, 1], enc.pad_token_id)
    grads = []
    for share in (True, False):
        model.zero_grad()
        score(model, queries, b, share_vision=share).logprobs.sum().backward()
        grads.append(model.model.visual.patch_embed.proj.weight.grad.clone())
    model.zero_grad()
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_completions_never_contain_vision_tokens(toy_policy, toy_records):
    """Make the image-pad token the model's favourite: the engine must still never emit it."""
    model, processor = toy_policy
    model = copy.deepcopy(model)
    banned = vision_token_ids(processor)
    assert banned
    old = model.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[banned] = 100.0
    model.lm_head = head
    enc = PromptEncoder(processor)
    queries = [enc.encode(r) for r in toy_records[:2]]
    # without suppression the banned tokens would dominate: check the logits say so
    from rethinker.rollout.inputs import collate_prompts

    pb = collate_prompts(queries, enc.pad_token_id)
    with torch.no_grad():
        logits = model(**pb.model_kwargs()).logits[:, -1]
    assert logits.argmax(-1).tolist()[0] in banned
    engine = TransformersEngine(model, processor)
    groups = engine.generate(queries, SamplingParams(max_new_tokens=12, n=3, temperature=1.0))
    assert len(groups) == 2 and all(len(g) == 3 for g in groups)
    for g in groups:
        for c in g:
            assert not set(c.token_ids) & set(banned)
            assert len(c.token_ids) >= 1


def test_engine_groups_and_eos(toy_policy, toy_records):
    model, processor = toy_policy
    enc = PromptEncoder(processor)
    queries = [enc.encode(r) for r in toy_records[:3]]
    engine = TransformersEngine(model, processor, max_batch_queries=2)  # two chunks
    torch.manual_seed(0)
    groups = engine.generate(queries, SamplingParams(max_new_tokens=16, n=4))
    assert [len(g) for g in groups] == [4, 4, 4]
    for g in groups:
        for c in g:
            assert len(c.token_ids) <= 16
            if c.finished:
                assert c.token_ids[-1] in engine.eos_ids
                assert not set(c.token_ids[:-1]) & set(engine.eos_ids)
            else:
                assert len(c.token_ids) == 16
    assert engine.stats.tokens == sum(len(c.token_ids) for g in groups for c in g)


def test_greedy_is_deterministic_and_batch_independent(toy_policy, toy_records):
    model, processor = toy_policy
    enc = PromptEncoder(processor)
    queries = [enc.encode(r) for r in toy_records[:3]]
    engine = TransformersEngine(model, processor)
    p = SamplingParams(max_new_tokens=16, greedy=True)
    together = [g[0].token_ids for g in engine.generate(queries, p)]
    alone = [engine.generate([q], p)[0][0].token_ids for q in queries]
    assert together == alone


def test_extend_query_appends_text_tokens(encoded):
    queries, _ = encoded
    q = extend_query(queries[0], [5, 6, 7])
    assert q.length == queries[0].length + 3
    assert q.input_ids[-3:].tolist() == [5, 6, 7]
    assert q.mm_token_type_ids[-3:].tolist() == [0, 0, 0]
    assert q.pixel_values is queries[0].pixel_values


def test_prompts_over_the_limit_are_refused_whole_never_truncated(toy_policy):
    """A prompt longer than max_prompt_tokens is a RecordError naming the record (the
    trainer and the evaluator count it as skipped); a prompt within the limit keeps every
    image token."""
    from dataclasses import replace as _replace

    from rethinker.records import RecordError
    from rethinker.rollout.inputs import PromptEncoder
    from rethinker.toyworld.puzzles import generate

    _, processor = toy_policy
    rec = generate(1, seed=4, split="train")[0]
    full = PromptEncoder(processor).encode(rec)
    n = full.length
    image_tokens = int((full.mm_token_type_ids == 1).sum())
    assert image_tokens == int(full.image_grid_thw.prod(-1).sum()) // 4 > 0
    at_limit = PromptEncoder(processor, max_prompt_tokens=n).encode(rec)
    assert torch.equal(at_limit.input_ids, full.input_ids)
    with pytest.raises(RecordError, match=rf"record '{rec.id}': prompt of {n} tokens exceeds the limit of {n - 1}"):
        PromptEncoder(processor, max_prompt_tokens=n - 1).encode(rec)
    long_q = _replace(rec, id="long-question", question=rec.question + " please" * 400)
    with pytest.raises(RecordError, match="long-question"):
        PromptEncoder(processor, max_prompt_tokens=512).encode(long_q)
