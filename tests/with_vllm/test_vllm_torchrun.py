"""vLLM rollout engines inside a torchrun world of two ranks (gloo, FSDP2): one engine per
rank (T = 1), and one tensor-parallel engine shared by both (T = 2, ``rollout.tp``).

``tests/scripts/vllm_ranks.py`` checks each rank's engine against the transformers engine
before and after a weight push from the sharded policy, and vLLM's sampled-token
log-probs against the trainer's recomputation; then ``rethinker train`` runs under
torchrun, evaluates, checkpoints and resumes with each layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from test_vllm_train import TINY  # noqa: E402

SCRIPT = Path(__file__).parents[1] / "scripts" / "vllm_ranks.py"
#: fp32 on both sides, as in the one-process engine test
LOGPROB_TOL = 1e-4


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0", *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _report(capsys, line: str) -> None:
    with capsys.disabled():
        print(f"\n[vllm torchrun] {line}")


@pytest.mark.parametrize("tp, lora", [(1, False), (2, False), (2, True)], ids=["T1", "T2", "T2-lora"])
def test_each_ranks_engine_follows_the_sharded_policy(tmp_path, tp, lora, capsys):
    res = _torchrun(str(SCRIPT), str(tmp_path), str(tp), *(["lora"] if lora else []))
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in reports:
        assert r["vllm_tp"] == tp
        assert r["seed"] == (r["rank"] if tp == 1 else 0)  # seed + dp_rank
        assert len(r["before"]) == (4, 3)[r["rank"]]  # its own share of the 7 queries
        assert r["before"] == r["hf_before"]  # greedy, token for token
        assert r["after"] == r["hf_after"]  # the pushed weights are the perturbed policy's
        assert sum(a != b for a, b in zip(r["before"], r["after"])) >= 1  # and the push changed something
        assert [len(g) for g in r["sampled"]] == [2] * len(r["before"]) and all(n for g in r["sampled"] for n in g)
        assert r["logprob_tokens"] > 50 and r["logprob_max_diff"] < LOGPROB_TOL
        # the push never held the whole model unsharded: vLLM's reload keeps the full weights
        # of one layer until it is complete (a fused qkv: 3 weights and 3 biases), no more
        assert r["push_weights"] > 50 and r["push_peak_bytes"] < 0.2 * r["model_bytes"]
    if tp == 2:  # one engine: the same prompts and random state give the same samples on both ranks
        assert reports[0]["logprob_comps"] == reports[1]["logprob_comps"]
    _report(
        capsys,
        f"T={tp}{' LoRA' if lora else ''}: build {max(r['build_s'] for r in reports):.1f} s, "
        f"push {max(r['sync_s'] for r in reports):.2f} s "
        f"(at most {max(r['push_peak_tensors'] for r in reports)} full weights alive, "
        f"{max(r['push_peak_bytes'] / r['model_bytes'] for r in reports):.0%} of the model); "
        f"greedy = transformers before and after the push on both ranks; log-prob max |diff| "
        f"{max(r['logprob_max_diff'] for r in reports):.1e} over {sum(r['logprob_tokens'] for r in reports)} tokens",
    )


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _train(*args: str) -> subprocess.CompletedProcess:
    res = _torchrun("-m", "rethinker", "train", *args)
    assert res.returncode == 0, res.stderr[-4000:]
    return res


def test_torchrun_training_checkpoints_and_resumes_with_one_engine_a_rank_then_a_shared_one(tmp_path):
    """Two ranks with an engine each (T = 1): steps 1-2 (evaluated, checkpointed), resumed
    for step 3; then resumed again with one tensor-parallel engine for both (T = 2): step 4
    (checkpoints hold full weights: the layout may change between attempts)."""
    out = tmp_path / "run"
    _train("--output-dir", str(out), "--max-steps", "2", *TINY)
    assert (out / "checkpoint-2" / "trainer_state.pt").is_file()
    res = _train("--resume", str(out), "--max-steps", "3")
    assert "checkpoint-2 at step 2" in res.stderr
    res = _train("--resume", str(out), "--max-steps", "4", "--rollout.vllm-tensor-parallel-size", "2")
    assert "checkpoint-3 at step 3" in res.stderr
    assert "vllm_tensor_parallel_size: 2" in (out / "config.yaml").read_text()
    rows = _rows(out)
    train_rows = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    for r in train_rows:
        # both ranks' groups, counted once: 2 queries x 4 responses of at most 20 tokens
        assert r["rollout/samples"] == 8 and 8 <= r["rollout/tokens"] <= 160
        assert -0.1 <= r["reward/mean"] <= 1.1
    assert any(r.get("update/skipped") == 0 for r in train_rows)  # weights were updated and pushed
    evals = [r for r in rows if r.get("eval/n")]
    assert [r["step"] for r in evals] == [0, 2, 3, 4] and all(r["eval/n"] == 8 for r in evals)
    assert (out / "checkpoint-4" / "trainer_state.pt").is_file()
    assert json.loads(res.stdout.strip().splitlines()[-1])["steps"] == 4
