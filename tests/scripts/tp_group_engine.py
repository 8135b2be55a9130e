"""Tensor-parallel rollout groups under torchrun (gloo), with a stand-in engine (no vLLM).

    torchrun --nproc_per_node W tp_group_engine.py OUT_DIR T [--push]

Each rank shares a recording stand-in engine with its TP group (``group_engine``), makes
uneven generation calls (shares of different sizes, an empty one, a second call whose
sampling parameters differ between members), runs an evaluation of a
share of its own size, drains, and (``--push``) pushes the FSDP2-sharded toy policy's
weights into the stand-in. Writes ``OUT_DIR/rank{R}.json`` for the test to compare."""

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor

from rethinker.records import Record
from rethinker.rollout.base import Completion, RolloutEngine, RolloutStats, SamplingParams
from rethinker.rollout.evaluate import evaluate
from rethinker.rollout.inputs import QueryInputs
from rethinker.rollout.tp import group_engine
from rethinker.rollout.vllm_weights import iter_sync_weights, policy_weight_name
from rethinker.train.distributed import init_distributed

torch.set_num_threads(1)
out_dir, tp, push = Path(sys.argv[1]), int(sys.argv[2]), "--push" in sys.argv
ctx = init_distributed()
rank, world = ctx.rank, ctx.world
FULL_TENSOR_CALLS = [0]
_full_tensor = DTensor.full_tensor


def _counting_full_tensor(self, *args, **kwargs):
    FULL_TENSOR_CALLS[0] += 1
    return _full_tensor(self, *args, **kwargs)


DTensor.full_tensor = _counting_full_tensor


class StandIn(RolloutEngine):
    """Records every call; a completion is [the query's marker, a draw from torch's global RNG]."""

    pad_id = 0
    eos_ids = [1]

    def __init__(self):
        self.stats = RolloutStats()
        self.calls: list[dict] = []
        self.pushed: list[dict] = []

    def generate(self, queries, params):
        assert all(q.pixel_values is None for q in queries), "pixel values were sent"
        draws = [int(torch.randint(2, 10**9, ())) for _ in queries]
        self.calls.append(
            {"markers": [int(q.input_ids[0]) for q in queries], "max_new_tokens": params.max_new_tokens, "draws": draws}
        )
        return [[Completion([int(q.input_ids[0]), d], "no answer", True)] * params.n for q, d in zip(queries, draws)]

    def sync_weights(self, model):
        """Consume the weights as vLLM does, checking that each one is gathered only when
        asked for (one parameter materialized at a time)."""
        for name, t in iter_sync_weights(model):
            self.pushed.append(
                {"name": name, "gathers_so_far": FULL_TENSOR_CALLS[0], "sha": _sha(t), "numel": t.numel()}
            )


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().float().numpy().tobytes()).hexdigest()[:16]


def _query(marker: int) -> QueryInputs:
    return QueryInputs(
        input_ids=torch.tensor([marker, 5, 6]), mm_token_type_ids=torch.zeros(3, dtype=torch.long),
        pixel_values=torch.ones(4, 8), text=f"q{marker}",
    )  # fmt: skip


class Encoder:
    def encode(self, rec: Record) -> QueryInputs:
        return _query(int(rec.id))


torch.manual_seed(100 + rank)  # the trainers' RNGs differ from rank to rank
engine = group_engine(StandIn(), tp)
inner = engine.inner if tp > 1 else engine
P1 = SamplingParams(max_new_tokens=11, n=2)
P2 = SamplingParams(max_new_tokens=22, n=1)
share = [3, 0, 2, 1][rank]  # rank 1's share is empty
rng_before = _sha(torch.get_rng_state())
results = {"first": engine.generate([_query(100 * rank + i) for i in range(share)], P1)}
results["rng_kept"] = _sha(torch.get_rng_state()) == rng_before
if rank % 2 == 0:  # a second call on the even ranks only, with other parameters
    results["second"] = engine.generate([_query(1000 + rank)], P2)
else:  # a call that meets the even ranks' second one: two parameters in one round
    results["second"] = engine.generate([_query(1000 + rank)], P1)
engine.drain()
records = [Record(str(5000 + 10 * rank + i), "?", "1") for i in range(rank + 2)]  # shares 2, 3, 4, 5
res = evaluate(engine, Encoder(), records, max_new_tokens=9, batch_queries=2)
engine.drain()
report = {
    "rank": rank,
    "mesh": None if tp == 1 else engine.mesh.__dict__ | {"tp_ranks": list(engine.mesh.tp_ranks)},
    "results": {k: [[c.token_ids for c in g] for g in v] if isinstance(v, list) else v for k, v in results.items()},
    "calls": inner.calls,
    "rounds": getattr(engine, "rounds", None),
    "tokens": engine.stats.tokens,
    "eval_n": res.n_items,
    "eval_markers": [int(p.prompt[1:]) for p in res.predictions],
}
if push:
    from rethinker.toyworld.model import load_toy
    from rethinker.train.distributed import shard_model

    model, _ = load_toy("cpu")
    report["reference"] = {
        policy_weight_name(n): {"sha": _sha(p), "numel": p.numel()} for n, p in model.named_parameters()
    }
    shard_model(model, ctx, torch.device("cpu"))
    FULL_TENSOR_CALLS[0] = 0
    engine.sync_weights(model)
    report["pushed"] = inner.pushed
    report["local_numel"] = sum(p.to_local().numel() for p in model.parameters())
(out_dir / f"rank{rank}.json").write_text(json.dumps(report))
ctx.barrier()
# leave the group as the CLI does: a gloo group torn down by the exit can abort a finished rank
torch.distributed.destroy_process_group()
