"""The KL term's frozen reference (``algo.kl_coef > 0``): for a LoRA policy it is the
policy with its adapters off (no second copy of the weights), and that gives the same
log-probs as a separately loaded copy of the base; the term is zero at the start and grows
once the policy has moved."""

from __future__ import annotations

import torch

from rethinker import metric_names as M
from rethinker.algo.sample import Sample
from rethinker.model.load import add_lora
from rethinker.rollout.inputs import PromptEncoder
from rethinker.toyworld.model import load_toy
from rethinker.toyworld.puzzles import generate
from rethinker.train.config import AlgoConfig, ModelConfig
from rethinker.train.update import Denominators, _chunks, chunk_loss, reference_logprobs


def _chunk(processor):
    enc = PromptEncoder(processor)
    queries = [enc.encode(r) for r in generate(2, seed=3, split="train")]
    gen = torch.Generator().manual_seed(1)
    samples = []
    for qi, q in enumerate(queries):
        for adv in (1.0, -1.0):
            ids = torch.randint(30, 300, (6,), generator=gen).tolist()
            samples.append(
                Sample(advantage=adv, reward=1.0, group=qi, prompt=q, completion_ids=ids, completion_mask=[1] * 6)
            )
    return _chunks(samples, 4, False)[0], enc.pad_token_id


def test_lora_reference_is_the_policy_with_adapters_off():
    torch.manual_seed(0)
    base, processor = load_toy("cpu")
    policy = add_lora(load_toy("cpu")[0], 4, None, 0.0, ModelConfig().lora_targets)
    chunk, pad = _chunk(processor)
    f32 = torch.float32
    algo = AlgoConfig(kl_coef=0.5, kl_kind="k3")
    denom = Denominators.of(chunk.samples, algo.aggregation, 1, 1.0)
    at_start = chunk_loss(policy, chunk, algo, denom, pad_id=pad, device="cpu", dtype=f32, ref_model=policy)[2]
    assert at_start[M.LOSS_KL] == 0.0  # B starts at zero: the policy is its base
    with torch.no_grad():  # the adapters move the policy off its base
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    own = reference_logprobs(policy, policy, chunk, pad, "cpu", f32)
    copy = reference_logprobs(base, policy, chunk, pad, "cpu", f32)
    torch.testing.assert_close(own, copy, atol=1e-6, rtol=0)
    moved = reference_logprobs(policy, None, chunk, pad, "cpu", f32)  # not the policy: the adapters stay on
    assert (moved - copy).abs().max() > 1e-3
    assert all(not p._disable_adapters for p in policy.modules() if hasattr(p, "_disable_adapters"))
    loss, _, terms, _ = chunk_loss(policy, chunk, algo, denom, pad_id=pad, device="cpu", dtype=f32, ref_model=policy)
    _, _, by_copy, _ = chunk_loss(policy, chunk, algo, denom, pad_id=pad, device="cpu", dtype=f32, ref_model=base)
    assert terms[M.LOSS_KL] > 1e-4 and abs(terms[M.LOSS_KL] - by_copy[M.LOSS_KL]) < 1e-6
    loss.backward()  # the term's gradient reaches the adapters only
    assert all(p.grad is None for n, p in policy.named_parameters() if "lora_" not in n)
