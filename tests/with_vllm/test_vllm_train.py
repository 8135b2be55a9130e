"""``rethinker train --rollout.engine vllm`` end to end on the toy world (vLLM built from
the toy policy, the policy's weights pushed after every update), then resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm")

TINY = [
    "--rollout.engine",
    "vllm",
    "--eval-every",
    "2",
    "--save-every",
    "2",
    "--seed",
    "3",
    "--rollout.queries-per-step",
    "2",
    "--rollout.group-size",
    "4",
    "--rollout.max-new-tokens",
    "20",
    "--data.toy-train-size",
    "32",
    "--data.toy-eval-size",
    "8",
    "--data.toy-test-size",
    "0",
    "--optim.micro-batch-size",
    "4",
    "--ssr",
    "paper",
    "--rethink",
    "on",
    "--threads",
    "1",
    "--rollout.vllm-kv-cache-gb",
    "0.25",
]


def _run(args):
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    return subprocess.run(
        [sys.executable, "-m", "rethinker", "train", *args], env=env, capture_output=True, text=True, timeout=600
    )


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_with_the_vllm_engine_then_resume(tmp_path):
    out = tmp_path / "run"
    res = _run(["--output-dir", str(out), "--max-steps", "2", *TINY])
    assert res.returncode == 0, res.stderr[-4000:]
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        assert "no sleep mode" in res.stderr  # the default sleep level 1, turned off with a warning
    assert (out / "checkpoint-2" / "trainer_state.pt").is_file()
    cfg = (out / "config.yaml").read_text()
    assert "engine: vllm" in cfg and "vllm_kv_cache_gb: 0.25" in cfg and "vllm_enforce_eager: true" in cfg

    res = _run(["--resume", str(out), "--max-steps", "4"])
    assert res.returncode == 0, res.stderr[-4000:]
    assert "resumed from" in res.stderr and "checkpoint-2 at step 2" in res.stderr
    rows = _rows(out)
    train_rows = [r for r in rows if "reward/mean" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    for r in train_rows:
        assert r["rollout/tokens_per_s"] > 0 and r["response_length/mean"] > 0
        assert -0.1 <= r["reward/mean"] <= 1.1
    assert any(r.get("update/skipped") == 0 for r in train_rows)  # weights were updated and pushed
    evals = [r for r in rows if r.get("eval/n")]
    assert [r["step"] for r in evals] == [0, 2, 4] and all(r["eval/n"] == 8 for r in evals)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 4
