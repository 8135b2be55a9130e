"""Graceful preemption: a stop signal writes a checkpoint and exits with EXIT_PREEMPTED;
the resumed run's metrics equal an uninterrupted run's (bit-identical on a CPU)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainrun import ENV

from rethinker.rollout.hf import TransformersEngine
from rethinker.train.config import parse_overrides, resolve
from rethinker.train.preempt import EXIT_PREEMPTED, Preempted, StopFlag

ARGS = ["--max-steps", "6", "--eval-every", "3", "--save-every", "100", "--seed", "3",
        "--rollout.queries-per-step", "2", "--rollout.group-size", "4", "--rollout.max-new-tokens", "20",
        "--data.toy-train-size", "32", "--data.toy-eval-size", "8", "--data.toy-test-size", "8",
        "--optim.micro-batch-size", "4", "--rethink", "on", "--threads", "1"]  # fmt: skip
TIME_KEYS = ("time/", "tokens_per_s", "memory/")


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not any(t in k for t in TIME_KEYS)} for r in rows]


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rethinker", "train", "--output-dir", str(out), *ARGS, *extra],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _logged_steps(out: Path) -> set[int]:
    path = out / "metrics.jsonl"
    steps = set()
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            steps.add(json.loads(line).get("step"))
        except json.JSONDecodeError:
            pass  # a line being written
    return steps


def _wait_for_step(proc: subprocess.Popen, out: Path, step: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while step not in _logged_steps(out):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, f"step {step} not logged within {timeout:.0f} s"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    proc = _start(out)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_at_a_random_step_checkpoints_and_the_resumed_run_matches(reference, tmp_path, sig):
    step = random.Random().randint(1, 4)
    out = tmp_path / "stopped"
    proc = _start(out)
    _wait_for_step(proc, out, step)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == EXIT_PREEMPTED, err[-3000:]
    stopped = [line for line in err.splitlines() if line.startswith("rethinker train: stopped by")]
    assert len(stopped) == 1 and signal.Signals(sig).name in stopped[0] and "--resume" in stopped[0], err[-2000:]
    saved = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert saved and saved[-1] >= step, (step, saved)  # the step in progress finished or was abandoned
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--resume", str(out)], env=ENV, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert _rows(out) == _rows(reference)


@pytest.mark.slow
def test_a_second_signal_exits_at_once(tmp_path):
    out = tmp_path / "twice"
    proc = _start(out)
    _wait_for_step(proc, out, 1)
    proc.send_signal(signal.SIGTERM)
    while "received SIGTERM" not in proc.stderr.readline():  # the first one was handled
        assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)  # (two at once would reach the process as one)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "again: exiting now" in err


@pytest.mark.slow
def test_a_signal_during_a_rollout_abandons_the_step(reference, tmp_path, monkeypatch):
    """SIGTERM raised inside the third step's rollout: the rollout is cut short, the step
    abandoned (its starting state restored), checkpoint-2 written; the resume matches."""
    calls = {"n": 0}
    generate = TransformersEngine._generate_chunk

    def signalling(self, queries, params):
        if self.stop_requested is not None:  # a training rollout (evaluations are never cut)
            calls["n"] += 1
            if calls["n"] == 5:  # rethinking on: two generate calls a step; 5 = step 3's first
                signal.raise_signal(signal.SIGTERM)
        return generate(self, queries, params)

    monkeypatch.setattr(TransformersEngine, "_generate_chunk", signalling)
    before = signal.getsignal(signal.SIGTERM)
    from rethinker.train.loop import train

    out = tmp_path / "abandoned"
    cfg = resolve(None, parse_overrides(["--output-dir", str(out), *ARGS]))
    with pytest.raises(Preempted) as stop:
        train(cfg, progress=False)
    assert (stop.value.signum, stop.value.step) == (signal.SIGTERM, 2)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    assert max(r["step"] for r in _rows(out)) == 2  # nothing of step 3 was logged
    assert signal.getsignal(signal.SIGTERM) == before  # the trainer's handlers are gone
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--resume", str(out)], env=ENV, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert _rows(out) == _rows(reference)


def test_stop_flag_agrees_over_ranks():
    class TwoRanks:  # the other rank was signalled
        def max_float(self, v):
            return max(v, float(signal.SIGUSR1))

    flag = StopFlag()
    assert flag.agreed(TwoRanks()) == signal.SIGUSR1 and flag.requested
    assert StopFlag(signum=signal.SIGTERM).agreed(type("One", (), {"max_float": lambda s, v: v})()) == signal.SIGTERM
