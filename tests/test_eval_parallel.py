"""``rethinker eval`` / ``rethinker data annotate`` data-parallel under torchrun (2 gloo
ranks, the transformers engine on the toy policy) against one process; part files and
their merge; the engine flags' usage errors (vLLM is absent from this environment)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rethinker.cli import main
from rethinker.data.io import read_records, write_records
from rethinker.eval.annotate import default_sidecar, merge_sidecar
from rethinker.eval.engines import EngineError, EngineOptions, cpu_threads_bind
from rethinker.eval.shards import Shard, part_path, part_paths
from rethinker.eval.suite import PredictionLog
from rethinker.toyworld.puzzles import generate

EVAL = ["eval", "--benchmark", "toy", "--limit", "7", "--max-new-tokens", "16", "--batch-size", "2", "--quiet"]


def _env():
    # PYTHONFAULTHANDLER: a rank that aborts (SIGABRT, SIGSEGV) prints every thread's Python stack
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _rethinker(args, nproc: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m rethinker ARGS``, under torchrun when ``nproc`` > 1."""
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", "0"]
    launcher += ["--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0"]
    cmd = [sys.executable, *(launcher if nproc > 1 else []), "-m", "rethinker", *args]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# ----------------------------------------------------------------- pure parts


def test_shards_split_the_items_left_disjointly_and_whole():
    todo = list(range(11))
    shares = [Shard(r, 3).take(todo) for r in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(x for s in shares for x in s) == todo
    assert Shard().take(todo) == todo
    with pytest.raises(ValueError):
        Shard(2, 2)


def test_part_files_are_named_beside_the_merged_one(tmp_path):
    main_file = tmp_path / "predictions.jsonl"
    assert part_path(main_file, 3) == tmp_path / "predictions.part-3.jsonl"
    for r in (10, 2):
        part_path(main_file, r).write_text("")
    (tmp_path / "predictions.part-x.jsonl").write_text("")  # not a rank's part
    assert part_paths(main_file) == [part_path(main_file, 2), part_path(main_file, 10)]


def test_prediction_log_merges_parts_in_run_order_each_item_once(tmp_path):
    main_file = tmp_path / "predictions.jsonl"
    row = lambda i: {"benchmark": "toy", "id": f"q{i}", "correct": i % 2 == 0}  # noqa: E731
    main_file.write_text(json.dumps(row(0)) + "\n")
    # rank 1 judged q3 and q1 (and q0 again: a merge killed before its parts were deleted)
    part_path(main_file, 1).write_text("".join(json.dumps(row(i)) + "\n" for i in (3, 1, 0)) + '{"benchm')
    part_path(main_file, 0).write_text(json.dumps(row(2)) + "\n")
    parts = part_paths(main_file)
    log = PredictionLog(main_file, also_read=parts)
    assert part_path(main_file, 1).read_text().endswith('{"benchm')  # another's torn line is not cut
    assert log.n_bad_lines == 1 and len(log.done) == 4
    log.order = [("toy", f"q{i}") for i in range(4)]
    assert log.merge(parts) == 3
    assert [r["id"] for r in _lines(main_file)] == ["q0", "q1", "q2", "q3"]
    assert part_paths(main_file) == []


def test_sidecar_parts_merge_each_query_once(tmp_path):
    side = tmp_path / "out.annotate-toy.jsonl"
    row = lambda i, c: {"id": f"q{i}", "n_correct": c, "n_samples": 4, "pass_rate": c / 4}  # noqa: E731
    side.write_text(json.dumps(row(0, 1)) + "\n")
    part_path(side, 0).write_text(json.dumps(row(0, 3)) + "\n" + json.dumps(row(2, 4)) + "\n")
    part_path(side, 1).write_text(json.dumps(row(1, 0)) + "\n" + '{"id": "q9", "n_co')
    assert merge_sidecar(side) == 2
    rows = _lines(side)
    assert [(r["id"], r["n_correct"]) for r in rows] == [("q0", 1), ("q2", 4), ("q1", 0)]
    assert part_paths(side) == []


def test_cpu_threads_bind_splits_the_usable_cores():
    assert cpu_threads_bind(2, [0, 1]) == "0|1"
    assert cpu_threads_bind(2, [7, 4, 5, 6, 8]) == "4,5|6,7"
    assert cpu_threads_bind(3, [0, 1]) is None


# ----------------------------------------------------------------- usage errors


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
@pytest.mark.parametrize(
    "command", [[*EVAL, "--output-dir", "OUT"], ["data", "annotate", "IN", "--output", "OUT"], ["infer", "2 + 2?"]]
)
def test_engine_vllm_without_vllm_is_one_line_and_exit_2(tmp_path, capsys, command):
    args = [str(tmp_path / a) if a in ("OUT", "IN") else a for a in command]
    assert main([*args, "--engine", "vllm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--engine vllm needs vLLM" in err[0] and "pip install" in err[0]
    assert not (tmp_path / "OUT").exists()


def test_vllm_settings_with_the_transformers_engine_are_refused(tmp_path, capsys):
    assert main([*EVAL, "--output-dir", str(tmp_path / "o"), "--tensor-parallel-size", "2"]) == 2
    assert "--tensor-parallel-size 2 needs --engine vllm" in capsys.readouterr().err
    assert main([*EVAL, "--output-dir", str(tmp_path / "o"), "--kv-cache-gb", "1"]) == 2
    assert "--kv-cache-gb is a vLLM setting" in capsys.readouterr().err
    src = tmp_path / "in.jsonl"
    write_records(src, generate(2, seed=1, split="test"))
    out = str(tmp_path / "a.jsonl")
    assert main(["data", "annotate", str(src), "--output", out, "--tensor-parallel-size", "2"]) == 2
    assert "needs --engine vllm" in capsys.readouterr().err


def test_tensor_parallel_layouts_under_torchrun(monkeypatch):
    """Groups of T consecutive ranks share an engine: T must divide the ranks and fit a node."""
    divide = r"--tensor-parallel-size 3 under torchrun must divide the number of ranks \(4\)"
    with pytest.raises(EngineError, match=divide):
        EngineOptions(engine="vllm", tensor_parallel_size=3).check(world=4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    node = r"--tensor-parallel-size 4 under torchrun spans more than one node \(2 ranks per node\)"
    with pytest.raises(EngineError, match=node):
        EngineOptions(engine="vllm", tensor_parallel_size=4).check(world=8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    opts = EngineOptions(engine="vllm", tensor_parallel_size=2)
    if importlib.util.find_spec("vllm") is None:  # the layout is fine: only the missing extra is named
        with pytest.raises(EngineError, match="needs vLLM, an optional extra"):
            opts.check(world=8)
    else:
        opts.check(world=8)
    with pytest.raises(EngineError, match="must be >= 1"):
        EngineOptions(engine="vllm", tensor_parallel_size=0).check()


# ----------------------------------------------------------------- torchrun


def test_two_ranks_eval_equals_one_process_and_resumes_a_killed_run(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _rethinker([*EVAL, "--output-dir", str(one)])
    r = _rethinker([*EVAL, "--output-dir", str(two)], nproc=2)
    ref = _lines(one / "predictions.jsonl")
    assert [p["id"] for p in ref] == [rec.id for rec in generate(7, seed=0, split="test")]
    assert _lines(two / "predictions.jsonl") == ref  # item for item, in the same order
    assert json.loads((two / "summary.json").read_text()) == json.loads((one / "summary.json").read_text())
    assert (two / "items.jsonl").read_text() == (one / "items.jsonl").read_text()
    assert part_paths(two / "predictions.jsonl") == []
    assert r.stdout.count("predictions:") == 1  # rank 0 alone reports

    # a run killed mid-way: 2 items merged, rank 1's part with 2 more and a torn line
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "run.json").write_text((one / "run.json").read_text())
    (killed / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in ref[:2]))
    torn = json.dumps(ref[5])[:40]
    part_path(killed / "predictions.jsonl", 1).write_text(json.dumps(ref[3]) + "\n" + json.dumps(ref[5]) + "\n" + torn)
    _rethinker([*EVAL, "--output-dir", str(killed)], nproc=2)
    assert _lines(killed / "predictions.jsonl") == ref  # no duplicate, nothing lost, the same order
    assert part_paths(killed / "predictions.jsonl") == []
    assert json.loads((killed / "summary.json").read_text())["toy"]["n_items"] == 7


def test_two_ranks_annotate_equals_one_process_greedy(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, generate(5, seed=3, split="test"))
    flags = ["--samples", "2", "--temperature", "0", "--max-new-tokens", "16", "--batch-size", "2"]
    _rethinker(["data", "annotate", str(src), "--output", str(tmp_path / "one.jsonl"), *flags])
    r = _rethinker(["data", "annotate", str(src), "--output", str(tmp_path / "two.jsonl"), *flags], nproc=2)
    one = {rec.id: rec.pass_rates["toy"] for rec in read_records(tmp_path / "one.jsonl").records}
    two = {rec.id: rec.pass_rates["toy"] for rec in read_records(tmp_path / "two.jsonl").records}
    assert two == one and len(one) == 5
    assert set(one.values()) <= {0.0, 1.0}  # greedy: both samples the same
    side = default_sidecar(tmp_path / "two.jsonl", "toy")
    assert sorted(x["id"] for x in _lines(side)) == sorted(one) and part_paths(side) == []
    assert "annotated 5 of 5 records" in r.stdout
