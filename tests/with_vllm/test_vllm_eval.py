"""``rethinker eval / data annotate / infer --engine vllm`` on the toy policy against the
transformers engine: greedy predictions item for item, pass rates, a tensor-parallel
engine (T = 2 through vLLM's multiprocess executor, the CPU's two cores bound one per
worker) and two ranks under torchrun, each with its own engine (T = 1) or sharing one (T = 2).

One standalone engine (built by the CLIs' own ``build_engine``) serves the in-process
commands; the T = 2 and torchrun runs are processes of their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

vllm = pytest.importorskip("vllm")

from rethinker.cli import main  # noqa: E402
from rethinker.data.io import read_records, write_records  # noqa: E402
from rethinker.eval import engines  # noqa: E402
from rethinker.eval.engines import EngineOptions, build_engine  # noqa: E402
from rethinker.toyworld.model import PACKAGE_POLICY_DIR  # noqa: E402
from rethinker.toyworld.puzzles import generate  # noqa: E402

ITEMS = 16
EVAL = ["eval", "--benchmark", "toy", "--limit", str(ITEMS), "--max-new-tokens", "48", "--batch-size", "8"]
VLLM_FLAGS = ["--engine", "vllm", "--enforce-eager", "--kv-cache-gb", "0.25"]
COMPARED = ("id", "prompt", "response", "extracted", "correct", "reason", "finished")


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _compared(path: Path) -> list[dict]:
    return [{k: p[k] for k in COMPARED} for p in _lines(path)]


@pytest.fixture(scope="module")
def engine():
    """One standalone vLLM engine (T = 1), as ``--engine vllm --enforce-eager --kv-cache-gb 0.25`` builds it."""
    opts = EngineOptions(engine="vllm", enforce_eager=True, kv_cache_gb=0.25)
    eng, processor, model = build_engine(opts, str(PACKAGE_POLICY_DIR))
    assert model is None
    return eng, processor, opts


@pytest.fixture
def shared(engine, monkeypatch):
    """The CLIs get the module's vLLM engine (checking the options they parsed) instead of a new one."""
    eng, processor, opts = engine
    seen: list[EngineOptions] = []

    def fake(o, model_path, **kw):
        if o.engine == "transformers":
            return build_engine(o, model_path, **kw)
        seen.append(o)
        assert o == opts and kw.get("world", 1) == 1
        return eng, processor, None

    monkeypatch.setattr(engines, "build_engine", fake)
    return seen


@pytest.fixture(scope="module")
def transformers_eval(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "ev"
    assert main([*EVAL, "--output-dir", str(out), "--quiet"]) == 0
    return out


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", **extra)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        env.pop(k, None)
    return env


def test_engine_is_standalone(engine):
    eng, _, _ = engine
    cfg = eng.llm.llm_engine.vllm_config
    assert cfg.parallel_config.distributed_executor_backend != "external_launcher"
    assert cfg.parallel_config.tensor_parallel_size == 1
    assert cfg.model_config.enforce_eager is True
    assert str(cfg.model_config.dtype) == "torch.float32"  # the transformers engine's dtype on a CPU


def test_eval_greedy_predictions_equal_the_transformers_engines(tmp_path, shared, transformers_eval, capsys):
    out = tmp_path / "ev"
    assert main([*EVAL, "--output-dir", str(out), "--quiet", *VLLM_FLAGS]) == 0
    assert len(shared) == 1
    ours, ref = _compared(out / "predictions.jsonl"), _compared(transformers_eval / "predictions.jsonl")
    assert len(ours) == ITEMS and ours == ref  # item for item: the same responses, answers and verdicts
    assert sum(p["correct"] for p in ours) >= ITEMS // 4  # the toy policy answers a good share
    s_ours = json.loads((out / "summary.json").read_text())["toy"]
    s_ref = json.loads((transformers_eval / "summary.json").read_text())["toy"]
    assert s_ours["accuracy"] == s_ref["accuracy"] and s_ours["by_category"] == s_ref["by_category"]
    assert json.loads((out / "run.json").read_text())["engine"] == "vllm"


def test_annotate_greedy_pass_rates_equal_and_sampled_ones_sane(tmp_path, shared, capsys):
    src = tmp_path / "in.jsonl"
    write_records(src, generate(12, seed=4, split="test"))
    greedy = ["--samples", "2", "--temperature", "0", "--max-new-tokens", "48"]
    assert main(["data", "annotate", str(src), "--output", str(tmp_path / "hf.jsonl"), *greedy]) == 0
    assert main(["data", "annotate", str(src), "--output", str(tmp_path / "v.jsonl"), *greedy, *VLLM_FLAGS]) == 0
    rates = {n: [r.pass_rates["toy"] for r in read_records(tmp_path / f"{n}.jsonl").records] for n in ("hf", "v")}
    assert rates["v"] == rates["hf"] and set(rates["v"]) <= {0.0, 1.0} and 0 < sum(rates["v"]) < 12
    sampled = ["--samples", "4", "--max-new-tokens", "48"]  # temperature 1.0, top-p 0.95, top-k 40
    assert main(["data", "annotate", str(src), "--output", str(tmp_path / "s.jsonl"), *sampled, *VLLM_FLAGS]) == 0
    s = [r.pass_rates["toy"] for r in read_records(tmp_path / "s.jsonl").records]
    assert len(s) == 12 and all(4 * x == int(4 * x) and 0 <= x <= 1 for x in s)
    assert abs(sum(s) - sum(rates["v"])) <= 6  # sampling near greedy on average, on the same policy


def test_infer_with_the_vllm_engine(tmp_path, shared, capsys):
    rec = generate(1, seed=9, split="test")[0]
    path = tmp_path / "img.png"
    path.write_bytes(rec.images[0].bytes)
    assert main(["infer", "--image", str(path), "--max-new-tokens", "48", rec.question, *VLLM_FLAGS]) == 0
    ours = capsys.readouterr().out.strip().splitlines()
    assert main(["infer", "--image", str(path), "--max-new-tokens", "48", rec.question]) == 0
    ref = capsys.readouterr().out.strip().splitlines()
    assert ours == ref and ours[-1].startswith("answer: ")


def test_tensor_parallel_2_in_one_process_equals_the_transformers_engine(tmp_path, transformers_eval, capsys):
    """A real T = 2 engine: two vLLM worker processes (mp executor), one core each."""
    out = tmp_path / "tp2"
    cmd = [sys.executable, "-m", "rethinker", *EVAL, "--output-dir", str(out), *VLLM_FLAGS]
    r = subprocess.run([*cmd, "--tensor-parallel-size", "2"], env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = r.stdout + r.stderr  # vLLM's log lines: the engine's config and, on a CPU, the thread binding
    assert "tensor_parallel_size=2" in logs and "world_size=2" in logs
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        assert "auto_setup=False" in logs  # the cores split between the workers, not vLLM's NUMA binding
    assert _compared(out / "predictions.jsonl") == _compared(transformers_eval / "predictions.jsonl")


@pytest.mark.parametrize("tp", [1, 2], ids=["T1-each-rank-its-engine", "T2-one-engine-shared"])
def test_two_torchrun_ranks_with_vllm(tmp_path, transformers_eval, tp):
    """Two ranks, each judging its share of the items: with T = 1 each has its own engine,
    with T = 2 both share one (vLLM's tensor parallelism over the two ranks)."""
    out = tmp_path / f"dp2-t{tp}"
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0"]
    launcher += ["--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0"]
    cmd = [sys.executable, *launcher, "-m", "rethinker", *EVAL, "--output-dir", str(out), *VLLM_FLAGS]
    cmd += ["--tensor-parallel-size", str(tp)]
    r = subprocess.run(cmd, env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    if tp == 2:
        assert "tensor_parallel_size=2" in r.stdout + r.stderr
    assert _compared(out / "predictions.jsonl") == _compared(transformers_eval / "predictions.jsonl")
    assert not list(out.glob("predictions.part-*.jsonl"))
