"""Tensor-parallel rollout groups without vLLM: the mesh's arithmetic, and under torchrun
(gloo) a stand-in engine shared by each TP group (``rollout.tp``): the same prompts and
draws on every member, each member's own share back, uneven call counts, evaluation, and
the weight push from FSDP2 shards one parameter at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rethinker.rollout.mesh import RolloutMesh, tp_groups

SCRIPT = Path(__file__).parent / "scripts" / "tp_group_engine.py"


def test_mesh_of_four_ranks_in_groups_of_two():
    meshes = [RolloutMesh.of(r, 4, 2) for r in range(4)]
    assert [(m.dp_rank, m.tp_rank, m.tp_ranks) for m in meshes] == [
        (0, 0, (0, 1)), (0, 1, (0, 1)), (1, 0, (2, 3)), (1, 1, (2, 3)),
    ]  # fmt: skip
    assert {(m.dp_size, m.tp_size, m.world) for m in meshes} == {(2, 2, 4)}
    assert [m.rank for m in meshes] == [0, 1, 2, 3]
    assert [m.is_leader for m in meshes] == [True, False, True, False]
    assert [m.seed(7) for m in meshes] == [7, 7, 8, 8]  # one seed per data-parallel group
    assert tp_groups(4, 2) == [(0, 1), (2, 3)]
    assert tp_groups(8, 4) == [(0, 1, 2, 3), (4, 5, 6, 7)]


def test_mesh_with_tp_1_is_one_group_per_rank_seeded_by_rank():
    meshes = [RolloutMesh.of(r, 3, 1) for r in range(3)]
    assert [(m.dp_rank, m.dp_size, m.tp_rank, m.tp_ranks) for m in meshes] == [
        (0, 3, 0, (0,)), (1, 3, 0, (1,)), (2, 3, 0, (2,)),
    ]  # fmt: skip
    assert [m.seed(5) for m in meshes] == [5, 6, 7]  # seed + rank, as before tensor parallelism
    assert RolloutMesh.of(0, 1) == RolloutMesh(0, 1, 0, 1, (0,))


@pytest.mark.parametrize(("rank", "world", "tp"), [(0, 4, 3), (0, 2, 0), (2, 2, 1), (-1, 2, 2)])
def test_mesh_refuses_what_does_not_fit(rank, world, tp):
    with pytest.raises(ValueError):
        RolloutMesh.of(rank, world, tp)


def _torchrun(out: Path, nproc: int, *args: str) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", "0",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0", str(SCRIPT), str(out), *args]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


def _reports(out: Path, world: int) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


def _calls(report: dict) -> list[tuple[list[int], int]]:
    return [(c["markers"], c["max_new_tokens"]) for c in report["calls"]]


#: the shared engine's calls in the group of ranks (a, b): the script's shares are 3, 0, 2, 1
#: queries, a second call on the even ranks (22 tokens) meeting the odd rank's (11 tokens),
#: then an evaluation of rank + 2 records in batches of 2 (rank a's ends a round earlier)
EXPECTED_CALLS = {
    (0, 1): [([0, 1, 2], 11), ([1000], 22), ([1001], 11), ([5000, 5001, 5010, 5011], 9), ([5012], 9)],
    (2, 3): [
        ([200, 201, 300], 11), ([1002], 22), ([1003], 11),
        ([5020, 5021, 5030, 5031], 9), ([5022, 5023, 5032, 5033], 9), ([5034], 9),
    ],
}  # fmt: skip
OWN_FIRST = {0: [0, 1, 2], 1: [], 2: [200, 201], 3: [300]}


def _check_groups(reports: list[dict]) -> None:
    for a, b in [(r, r + 1) for r in range(0, len(reports), 2)]:
        ra, rb = reports[a], reports[b]
        assert ra["mesh"]["tp_ranks"] == rb["mesh"]["tp_ranks"] == [a, b]
        # the identical joined list, in the same calls, with the same draws on both members,
        # although their trainers' RNGs were seeded differently (the leader's state is used)
        assert _calls(ra) == _calls(rb) == EXPECTED_CALLS[(a, b)]
        assert ra["calls"] == rb["calls"]
        # one round a call but the two calls of the second round, plus the two all-drained rounds
        assert ra["rounds"] == rb["rounds"] == len(EXPECTED_CALLS[(a, b)]) - 1 + 2
        for r in (ra, rb):
            first = r["results"]["first"]
            assert [g[0][0] for g in first] == OWN_FIRST[r["rank"]]  # its own share, in order
            assert all(len(g) == 2 and g[0] == g[1] for g in first)  # n = 2
            (second,) = r["results"]["second"]  # 22 tokens, n = 1 on the even ranks; 11, n = 2 on the odd
            assert [c[0] for c in second] == [1000 + r["rank"]] * (1 + r["rank"] % 2)
            assert r["eval_n"] == r["rank"] + 2  # every record of its share evaluated
            assert r["eval_markers"] == [5000 + 10 * r["rank"] + i for i in range(r["rank"] + 2)]
            own_tokens = 2 * sum(len(g) for k in ("first", "second") for g in r["results"][k])
            assert r["tokens"] == own_tokens + 2 * r["eval_n"]  # its own completions only
        # the leader's RNG stream advanced (the group sampled from it), the member's was put back
        assert ra["results"]["rng_kept"] is False and rb["results"]["rng_kept"] is True


def test_two_ranks_share_one_engine(tmp_path):
    _torchrun(tmp_path, 2, "2", "--push")
    reports = _reports(tmp_path, 2)
    _check_groups(reports)
    ref = reports[0]["reference"]
    for r in reports:
        pushed = r["pushed"]
        names = [p["name"] for p in pushed]
        assert set(names) == set(ref) - {"lm_head.weight"} and len(names) == len(set(names))
        assert all(p["sha"] == ref[p["name"]]["sha"] for p in pushed)  # each the full, unsharded weight
        # gathered one by one as the consumer asks: the i-th weight comes with the i-th gather
        assert [p["gathers_so_far"] for p in pushed] == list(range(1, len(pushed) + 1))
        total = sum(v["numel"] for v in ref.values())
        assert r["local_numel"] < 0.6 * total  # the policy was really sharded over the two ranks
    assert reports[0]["pushed"] == reports[1]["pushed"]


def test_four_ranks_in_two_groups_of_two_sample_differently(tmp_path):
    _torchrun(tmp_path, 4, "2")
    reports = _reports(tmp_path, 4)
    _check_groups(reports)
    draws = [{d for c in reports[a]["calls"] for d in c["draws"]} for a in (0, 2)]
    assert not draws[0] & draws[1]  # the two data-parallel groups draw different numbers


def test_rollout_weights_gathers_only_for_an_engine_running_the_policy(monkeypatch):
    """The transformers engine samples from the policy module (its shards are gathered);
    a vLLM engine, alone or shared by a tensor-parallel group, holds its own weights and
    the policy stays sharded around its rollouts."""
    from contextlib import contextmanager

    from rethinker.rollout.base import RolloutEngine, RolloutStats
    from rethinker.rollout.mesh import RolloutMesh
    from rethinker.rollout.tp import TensorParallelGroupEngine
    from rethinker.train import distributed

    calls = []

    @contextmanager
    def fake_gathered(model, ctx):
        calls.append(model)
        yield

    monkeypatch.setattr(distributed, "gathered", fake_gathered)

    class Own(RolloutEngine):
        holds_own_weights = True
        needs_images = True  # as vLLM: the evaluators then keep the decoded images
        stats = RolloutStats()

        def generate(self, queries, params):
            return []

    class Runs(RolloutEngine):
        stats = RolloutStats()

        def generate(self, queries, params):
            return []

    ctx = distributed.DistContext(rank=0, world=2)
    for engine, gathers in ((Runs(), True), (Own(), False)):
        with distributed.rollout_weights(engine, "policy", ctx):
            pass
        assert len(calls) == int(gathers)
        calls.clear()
    shared = TensorParallelGroupEngine(Own(), RolloutMesh.of(0, 2, 2), group=None, gather=lambda obj: [obj, obj])
    assert shared.holds_own_weights and shared.needs_images
    other = TensorParallelGroupEngine(Runs(), RolloutMesh.of(0, 2, 2), group=None, gather=lambda obj: [obj, obj])
    assert not other.holds_own_weights and not other.needs_images
    with distributed.rollout_weights(shared, "policy", ctx):
        pass
    assert not calls
