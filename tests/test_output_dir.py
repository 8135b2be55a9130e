"""A fresh run in a folder that holds an earlier run: refused (its metric rows would follow
the earlier run's and a later --resume would take its checkpoints), or with
--overwrite-output-dir the earlier run's outputs (and nothing else) deleted first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from trainrun import ENV, tiny_args

from rethinker.train.run import earlier_run

EARLIER_ROW = {"step": 7, "reward/mean": 0.123}


def _earlier(run_dir: Path) -> None:
    """The outputs a killed earlier run left, and one file of the user's."""
    (run_dir / "checkpoint-50").mkdir(parents=True)
    (run_dir / "checkpoint-50" / "trainer_state.json").write_text("{}")
    (run_dir / "config.yaml").write_text("seed: 9\n")
    (run_dir / "metrics.jsonl").write_text(json.dumps(EARLIER_ROW) + "\n")
    (run_dir / "test-predictions-0.jsonl").write_text("{}\n")
    (run_dir / "notes.txt").write_text("mine")


def _train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    args = tiny_args({"--max-steps": "1", "--eval-every": "0", "--save-every": "0"})
    return subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--output-dir", str(run_dir), *args, *extra],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_what_counts_as_an_earlier_run(tmp_path):
    assert earlier_run(tmp_path / "absent") == []
    assert earlier_run(tmp_path) == []
    (tmp_path / "config.yaml").write_text("seed: 0\n")  # killed before its first step: nothing to mix with
    (tmp_path / "notes.txt").write_text("mine")
    assert earlier_run(tmp_path) == []
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "samples.jsonl").write_text("")
    assert earlier_run(tmp_path) == ["checkpoint-2", "config.yaml", "samples.jsonl"]


def test_a_fresh_run_refuses_a_folder_with_an_earlier_run_and_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    _earlier(run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    proc = _train(run_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "holds an earlier run (checkpoint-50, config.yaml, metrics.jsonl, test-predictions-0.jsonl)" in lines[0]
    assert f"--resume {run_dir}" in lines[0] and "--overwrite-output-dir" in lines[0]
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert (run_dir / "checkpoint-50" / "trainer_state.json").exists()


def test_overwrite_output_dir_deletes_the_earlier_run_only(tmp_path):
    run_dir = tmp_path / "run"
    _earlier(run_dir)
    proc = _train(run_dir, "--overwrite-output-dir", "on")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "deleting the earlier run" in proc.stderr
    assert not (run_dir / "checkpoint-50").exists()
    assert not (run_dir / "test-predictions-0.jsonl").exists()  # --data.toy-test-size 0: this run writes none
    assert (run_dir / "notes.txt").read_text() == "mine"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert EARLIER_ROW not in rows
    assert [r["step"] for r in rows if "reward/mean" in r] == [1]
    assert "seed: 3" in (run_dir / "config.yaml").read_text()
