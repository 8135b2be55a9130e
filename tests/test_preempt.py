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
from trainrun import ENV, comparable_rows

from rethinker.rollout.hf import TransformersEngine
from rethinker.train.config import parse_overrides, resolve
from rethinker.train.preempt import EXIT_PREEMPTED, Preempted, StopFlag

ARGS = ["--max-steps", "6", "--eval-every", "3", "--save-every", "100", "--seed", "3",
        "--rollout.queries-per-step", "2", "--rollout.group-size", "4", "--rollout.max-new-tokens", "20",
        "--data.toy-train-size", "32", "--data.toy-eval-size", "8", "--data.toy-test-size", "8",
        "--optim.micro-batch-size", "4", "--rethink", "on", "--threads", "1"]  # fmt: skip


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
    assert comparable_rows(out) == comparable_rows(reference)


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
    import rethinker.train.loop as loop

    steps = {"n": 0}
    rollout, generate = loop.rollout, TransformersEngine._generate_chunk

    def counting(*a, **kw):  # the loop's rollout stage: once a step (no dynamic sampling)
        steps["n"] += 1
        return rollout(*a, **kw)

    def signalling(self, queries, params):
        if steps["n"] == 3 and self.stop_requested is not None:  # inside step 3's rollout
            signal.raise_signal(signal.SIGTERM)
        return generate(self, queries, params)

    monkeypatch.setattr(loop, "rollout", counting)
    monkeypatch.setattr(TransformersEngine, "_generate_chunk", signalling)
    before = signal.getsignal(signal.SIGTERM)
    from rethinker.train.loop import train

    out = tmp_path / "abandoned"
    cfg = resolve(None, parse_overrides(["--output-dir", str(out), *ARGS]))
    with pytest.raises(Preempted) as stop:
        train(cfg, progress=False)
    assert (stop.value.signum, stop.value.step) == (signal.SIGTERM, 2)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    assert max(r["step"] for r in comparable_rows(out)) == 2  # nothing of step 3 was logged
    assert signal.getsignal(signal.SIGTERM) == before  # the trainer's handlers are gone
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--resume", str(out)], env=ENV, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert comparable_rows(out) == comparable_rows(reference)


def test_stop_flag_agrees_over_ranks():
    class TwoRanks:  # the other rank was signalled
        def max_float(self, v):
            return max(v, float(signal.SIGUSR1))

    flag = StopFlag()
    assert flag.agreed(TwoRanks()) == signal.SIGUSR1 and flag.requested
    assert StopFlag(signum=signal.SIGTERM).agreed(type("One", (), {"max_float": lambda s, v: v})()) == signal.SIGTERM


def test_consecutive_non_finite_steps_stop_the_run(tmp_path, monkeypatch):
    """Each non-finite step is skipped and counted; the K-th in a row stops the run with a
    message naming the step (a NaN loss injected into every micro-batch)."""
    import rethinker.train.update as update
    from rethinker import metric_names as M
    from rethinker.train.loop import train
    from rethinker.train.update import Diverged

    chunk_loss = update.chunk_loss

    def nan_loss(*a, **kw):
        loss, st, terms, ent = chunk_loss(*a, **kw)
        return loss * float("nan"), st, terms, ent

    monkeypatch.setattr(update, "chunk_loss", nan_loss)
    out = tmp_path / "nan"
    args = ["--output-dir", str(out), *ARGS, "--optim.max-nonfinite-steps", "3", "--rethink", "off"]
    with pytest.raises(Diverged, match=r"3 consecutive optimizer steps, the last in step (\d+)") as err:
        train(resolve(None, parse_overrides(args)), progress=False)
    rows = [r for r in comparable_rows(out) if M.OPTIMIZER_STEPS in r]  # steps that had something to train on
    assert f"in step {rows[-1]['step']}:" in str(err.value)
    assert [(r[M.SKIPPED_NONFINITE], r[M.NONFINITE_STREAK], r[M.OPTIMIZER_STEPS]) for r in rows] == [
        (1, 1, 0),
        (1, 2, 0),
        (1, 3, 0),
    ]


def test_diverged_weights_end_the_run_with_a_message_not_a_traceback(tmp_path):
    out = tmp_path / "diverged"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "rethinker",
            "train",
            "--output-dir",
            str(out),
            *ARGS,
            "--optim.lr",
            "1e30",
            "--optim.grad-clip",
            "0",
            "--save-every",
            "1",
        ],  # fmt: skip
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 1, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("rethinker train: step 2: the policy's next-token probabilities are not finite"), last
    assert "newest checkpoint is step 1" in last and "Traceback" not in res.stderr


@pytest.mark.slow
def test_a_run_killed_at_a_random_moment_resumes_with_the_same_command(reference, tmp_path):
    """SIGKILL at a random moment of the first seconds (start-up included): with a
    config.yaml, ``--resume`` finishes the run and matches an uninterrupted one (from its
    checkpoint, or from step 0 when none was written); without, it is a one-line error."""
    out = tmp_path / "killed"
    proc = _start(out)
    time.sleep(random.Random().uniform(0.0, 8.0))
    proc.kill()
    proc.communicate()
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--resume", str(out)], env=ENV, capture_output=True, text=True
    )
    if not (out / "config.yaml").exists():
        assert res.returncode == 2 and res.stderr.strip().count("\n") == 0, res.stderr[-2000:]
        assert "cannot resume" in res.stderr
        return
    assert res.returncode == 0, res.stderr[-3000:]
    if not list(out.glob("checkpoint-*")):
        assert "starting it from step 0" in res.stderr
    assert comparable_rows(out) == comparable_rows(reference)


def test_resume_of_a_folder_without_a_run_is_a_one_line_error(tmp_path):
    for target in (tmp_path / "absent", tmp_path):
        res = subprocess.run(
            [sys.executable, "-m", "rethinker", "train", "--resume", str(target)],
            env=ENV,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert res.stderr.startswith(f"rethinker train: cannot resume {target}")
