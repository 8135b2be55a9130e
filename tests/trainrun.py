"""Shared by the trainer's end-to-end tests: start a training, kill it hard once a
checkpoint exists (a crash, not a clean exit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ENV = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")

#: the tiny toy run the end-to-end tests train (seconds on one thread), as flag -> value
TINY_FLAGS = {
    "--max-steps": "4",
    "--eval-every": "2",
    "--save-every": "2",
    "--seed": "3",
    "--rollout.queries-per-step": "2",
    "--rollout.group-size": "4",
    "--rollout.max-new-tokens": "20",
    "--data.toy-train-size": "32",
    "--data.toy-eval-size": "8",
    "--data.toy-test-size": "0",
    "--optim.micro-batch-size": "4",
    "--ssr": "paper",
    "--rethink": "on",
    "--threads": "1",
}


#: metric keys whose values are not reproducible (wall time, speed, host memory)
TIME_KEYS = ("time/", "tokens_per_s", "memory/")


def comparable_rows(run_dir: Path) -> list[dict]:
    """``metrics.jsonl`` of a run without the keys no two runs can share (``TIME_KEYS``)."""
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not any(t in k for t in TIME_KEYS)} for r in rows]


def tiny_args(changes: dict[str, str] | None = None) -> list[str]:
    """``rethinker train`` flags of the tiny run, with ``changes`` (flag -> value) applied."""
    return [x for flag, value in {**TINY_FLAGS, **(changes or {})}.items() for x in (flag, value)]


def kill_after_checkpoint(out: Path, args: list[str], step: int, timeout: float = 600) -> None:
    """Run ``rethinker train --output-dir out *args`` and SIGKILL it as soon as
    ``checkpoint-{step}`` is complete (its trainer state is written last)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rethinker", "train", "--output-dir", str(out), *args],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + timeout
    try:
        while not (out / f"checkpoint-{step}" / "trainer_state.pt").exists():
            assert proc.poll() is None, f"the run ended before checkpoint-{step}"
            assert time.time() < deadline, f"no checkpoint-{step} within {timeout:.0f} s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def to_old_layout(ckpt_dir: Path) -> None:
    """Rewrite a one-process distributed checkpoint in the layout before DCP, as that code
    wrote it (``checkpoint.save_checkpoint``): the weights in ``save_pretrained`` format
    and the full optimizer state in ``trainer_state.pt``."""
    import shutil

    import torch
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    from rethinker.model.load import load_policy
    from rethinker.toyworld.model import resolve_model_path
    from rethinker.train import checkpoint as ckpt
    from rethinker.train.config import resumed_config
    from rethinker.train.optim import make_optimizer
    from rethinker.train.shards import load_model_shards, load_optimizer_shards

    ckpt_dir = Path(ckpt_dir)
    cfg = resumed_config(ckpt_dir.parent, {})
    state = ckpt.load_state(ckpt_dir)
    assert state["layout"] == "dcp" and state["world_size"] == 1
    model, processor = load_policy(resolve_model_path(cfg.model.path), device=torch.device("cpu"), dtype=torch.float32)
    load_model_shards(ckpt_dir, model, adapters_only=False)
    optimizer = make_optimizer(model, cfg, sharded=False)
    load_optimizer_shards(ckpt_dir, model, optimizer, state["optimizer_groups"])
    old = {k: v for k, v in state.items() if k not in ("layout", "optimizer_groups", "lora", "step")}
    old["optimizer"] = get_optimizer_state_dict(model, optimizer)
    shutil.rmtree(ckpt_dir)
    ckpt.save_checkpoint(ckpt_dir.parent, state["step"], model, processor, old, keep=0)
