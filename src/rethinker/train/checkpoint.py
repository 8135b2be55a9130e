"""Checkpoints: atomic, loadable with plain ``transformers``, resumable exactly.

``DIR/checkpoint-STEP/`` holds the policy and processor in ``save_pretrained`` format
plus ``trainer_state.pt`` (optimizer, scheduler, every RNG, data position, SSR state).
A checkpoint is written into a temporary folder and renamed into place, so a run killed
mid-write leaves either the previous checkpoints or the new one, never a torn one.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model,
    processor,
    state: dict[str, Any],
    keep: int = 2,
    model_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``checkpoint-STEP`` atomically and keep only the newest ``keep``.
    ``model_state``: a full state dict to write instead of the model's own (sharded runs)."""
    run_dir = Path(run_dir)
    final = run_dir / f"checkpoint-{step}"
    tmp = run_dir / f".tmp-checkpoint-{step}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if model_state is not None:
        model.save_pretrained(tmp, state_dict=model_state)
    else:
        model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    torch.save({"rng": rng_state(), **state, "step": step}, tmp / STATE_FILE)
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    dfd = os.open(run_dir, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders are ignored)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        m = _CKPT.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def load_state(ckpt: str | Path) -> dict[str, Any]:
    return torch.load(Path(ckpt) / STATE_FILE, map_location="cpu", weights_only=False)
