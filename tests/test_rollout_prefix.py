"""The shared-prompt paths: own decode loop (prefill once per group) and grouped scoring
must give what the plain paths give, on the real tiny Qwen2.5-VL policy."""

import pytest
import torch

from rethinker.records import Record
from rethinker.rollout import prefix
from rethinker.rollout.base import SamplingParams
from rethinker.rollout.hf import TransformersEngine, next_tokens
from rethinker.rollout.inputs import PromptEncoder, collate_prompts, collate_sequences
from rethinker.rollout.scoring import score, score_grouped


@pytest.fixture(scope="module")
def queries(toy_policy, toy_records):
    _, processor = toy_policy
    enc = PromptEncoder(processor)
    qs = [enc.encode(r) for r in toy_records[:5]]
    # a text-only query too (M-RoPE positions without an image) and prompts of several lengths
    qs.append(enc.encode(Record(id="text-only", question="What is 2 + 3?", answer="5")))
    assert len({q.length for q in qs}) > 2
    return qs, enc.pad_token_id


def _sampled(toy_policy, qs, n=3, seed=0):
    model, processor = toy_policy
    torch.manual_seed(seed)
    groups = TransformersEngine(model, processor).generate(qs, SamplingParams(max_new_tokens=24, n=n))
    comps = [c.token_ids for g in groups for c in g]
    owner = [i for i, g in enumerate(groups) for _ in g]
    return comps, owner


def test_supported_on_the_toy_policy_and_not_under_activation_checkpointing(toy_policy):
    import copy

    model, _ = toy_policy
    assert prefix.supported(model)
    assert prefix.cache_kwarg(model) in ("cache", "past_key_values")
    ckpt = copy.deepcopy(model)
    ckpt.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ckpt.train()
    assert not prefix.supported(ckpt)  # the cache is off in training: the full forward is used
    ckpt.eval()
    assert prefix.supported(ckpt)  # generation keeps the fast path


def test_prompt_positions_are_the_models_own(toy_policy, queries):
    """Our explicit prompt positions give the logits of the model's default forward."""
    model, _ = toy_policy
    qs, pad = queries
    batch = collate_prompts(qs, pad)
    assert (batch.attention_mask == 0).any()  # left padding really present
    with torch.no_grad():
        own = model(**batch.model_kwargs(model), position_ids=prefix.prompt_positions(model, batch)).logits
        default = model(**batch.model_kwargs(model)).logits
    m = batch.attention_mask.bool()
    torch.testing.assert_close(own[m], default[m], atol=1e-5, rtol=0)


def test_prefill_rejects_right_padded_prompts(toy_policy, queries):
    model, _ = toy_policy
    qs, pad = queries
    b = collate_sequences(qs[:2], [[5], [5, 6, 7, 8, 9, 10, 11, 12]], [0, 1], pad)  # right padded
    with pytest.raises(ValueError, match="left-padded"):
        prefix.prefill(model, b)


def test_grouped_scores_and_gradients_equal_the_full_forward(toy_policy, queries):
    model, _ = toy_policy
    qs, pad = queries
    comps, owner = _sampled(toy_policy, qs)
    order = torch.randperm(len(comps), generator=torch.Generator().manual_seed(1)).tolist()
    comps, owner = [comps[i] for i in order], [owner[i] for i in order]  # samples of a query not adjacent
    assert len({len(c) for c in comps}) > 2
    full = collate_sequences(qs, comps, owner, pad)
    results = []
    for grouped in (False, True):
        model.zero_grad()
        if grouped:
            tb, s = score_grouped(model, qs, comps, owner, pad, with_entropy=True)
        else:
            tb, s = full, score(model, qs, full, with_entropy=True)
        # a loss that weights every token differently, so a misplaced token changes the gradient
        w = torch.linspace(0.5, 1.5, int(tb.target_mask.sum()))
        (s.logprobs[tb.target_mask] * w).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((s.logprobs[tb.target_mask].detach(), s.entropy[tb.target_mask], grads))
    model.zero_grad()
    (lp0, ent0, g0), (lp1, ent1, g1) = results
    assert lp0.shape == (sum(len(c) for c in comps),)
    torch.testing.assert_close(lp1, lp0, atol=2e-5, rtol=0)
    torch.testing.assert_close(ent1, ent0, atol=2e-5, rtol=0)
    assert g0.keys() == g1.keys() and any("visual" in k for k in g0)  # the vision tower learns too
    for k in g0:  # fp32 summation order differs: compare each gradient as a whole
        assert g0[k].norm() > 0
        assert (g1[k] - g0[k]).norm() <= 1e-4 * g0[k].norm(), k


def test_own_decode_greedy_equals_generate(toy_policy, toy_records):
    """Token for token, on 16 puzzles of varying response length (rows leave the batch
    as they finish)."""
    model, processor = toy_policy
    enc = PromptEncoder(processor)
    qs = [enc.encode(r) for r in toy_records]
    p = SamplingParams(max_new_tokens=40, greedy=True)
    own = TransformersEngine(model, processor, own_decode=True).generate(qs, p)
    ref = TransformersEngine(model, processor, own_decode=False).generate(qs, p)
    assert [g[0].token_ids for g in own] == [g[0].token_ids for g in ref]
    assert len({len(g[0].token_ids) for g in own}) > 2
    assert [g[0].finished for g in own] == [g[0].finished for g in ref]


def test_own_decode_repeats_each_prompt_for_its_own_samples(toy_policy, queries):
    """Greedy with n=3: every sample of a query is that query's n=1 answer (the cache rows
    were repeated in the right order, and stay right as rows leave the batch)."""
    model, processor = toy_policy
    qs, _ = queries
    eng = TransformersEngine(model, processor, own_decode=True)
    one = [g[0].token_ids for g in eng.generate(qs, SamplingParams(max_new_tokens=24, greedy=True))]
    three = eng.generate(qs, SamplingParams(max_new_tokens=24, greedy=True, n=3))
    assert [[c.token_ids for c in g] for g in three] == [[ids] * 3 for ids in one]
    assert len(set(map(tuple, one))) > 2


def test_own_decode_samples_whole_groups(toy_policy, queries):
    """n samples per query from one prefill: they differ, respect the length limit and
    end at their first end-of-sequence token."""
    model, processor = toy_policy
    qs, _ = queries
    eng = TransformersEngine(model, processor, own_decode=True)
    torch.manual_seed(0)
    groups = eng.generate(qs, SamplingParams(max_new_tokens=20, n=6))
    assert [len(g) for g in groups] == [6] * len(qs)
    assert len({tuple(c.token_ids) for g in groups for c in g}) > len(qs)  # sampling, not copies
    for g in groups:
        for c in g:
            assert 1 <= len(c.token_ids) <= 20
            if c.finished:
                assert c.token_ids[-1] in eng.eos_ids and not set(c.token_ids[:-1]) & set(eng.eos_ids)


def test_next_tokens_masks_like_transformers_warpers():
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 50, generator=g) * 3
    logits[0, :2] = 10.0  # a tie at the top
    for top_k, top_p, temp in ((5, 1.0, 1.0), (0, 0.7, 1.0), (10, 0.5, 0.7), (0, 0.05, 1.3)):
        params = SamplingParams(top_k=top_k, top_p=top_p, temperature=temp)
        ref = TemperatureLogitsWarper(temp)(None, logits.clone())
        if top_k:
            ref = TopKLogitsWarper(top_k)(None, ref)
        if top_p < 1.0:
            ref = TopPLogitsWarper(top_p)(None, ref)
        allowed = torch.isfinite(ref)
        for _ in range(20):
            tok = next_tokens(logits, params)
            assert allowed.gather(1, tok[:, None]).all()
        # and every allowed token can come out: draw many times from one row
        row = 3
        many = next_tokens(logits[row : row + 1].expand(4000, -1), params)
        assert set(many.tolist()) == set(allowed[row].nonzero().squeeze(-1).tolist())


def test_next_tokens_frequencies_follow_softmax_and_suppression():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    torch.manual_seed(0)
    draws = next_tokens(logits.expand(20000, -1), SamplingParams())
    freq = torch.bincount(draws, minlength=4).float() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.015, rtol=0)
    draws = next_tokens(logits.expand(5000, -1), SamplingParams(), suppress=[0])
    freq = torch.bincount(draws, minlength=4).float() / 5000
    assert freq[0] == 0
    torch.testing.assert_close(freq[1:], torch.tensor([0.6, 0.3, 0.1]), atol=0.03, rtol=0)
    assert next_tokens(logits, SamplingParams(greedy=True), suppress=[0]).item() == 1
    with pytest.raises(ValueError, match="temperature"):
        next_tokens(logits, SamplingParams(temperature=0.0))


def test_two_image_queries_take_the_same_paths(toy_policy):
    """count_two puzzles (two images per question): both images' tokens are in the prompt,
    the own decode loop equals generate, and grouped scoring equals the full forward."""
    from rethinker.toyworld.puzzles import generate

    model, processor = toy_policy
    enc = PromptEncoder(processor)
    recs = generate(4, seed=2, split="test", kinds=["count_two"])
    qs = [enc.encode(r) for r in recs]
    for q in qs:
        assert q.image_grid_thw.shape[0] == 2
        assert int((q.mm_token_type_ids == 1).sum()) == int(q.image_grid_thw.prod(-1).sum()) // 4
    p = SamplingParams(max_new_tokens=24, greedy=True)
    own = TransformersEngine(model, processor, own_decode=True).generate(qs, p)
    ref = TransformersEngine(model, processor, own_decode=False).generate(qs, p)
    assert [g[0].token_ids for g in own] == [g[0].token_ids for g in ref]
    comps, owner = _sampled(toy_policy, qs, n=2, seed=3)
    full = collate_sequences(qs, comps, owner, enc.pad_token_id)
    with torch.no_grad():
        s_full = score(model, qs, full)
        tb, s_grouped = score_grouped(model, qs, comps, owner, enc.pad_token_id)
    torch.testing.assert_close(s_grouped.logprobs[tb.target_mask], s_full.logprobs[full.target_mask], atol=2e-5, rtol=0)
