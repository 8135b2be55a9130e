"""LoRA through PEFT: only adapters train, checkpoints resume, the merged export loads plainly."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from rethinker import metric_names as M

pytest.importorskip("peft")

FLAGS = [
    "--max-steps",
    "2",
    "--eval-every",
    "0",
    "--save-every",
    "1",
    "--seed",
    "2",
    "--lora-rank",
    "4",
    "--rollout.queries-per-step",
    "4",
    "--rollout.group-size",
    "4",
    "--rollout.max-new-tokens",
    "48",
    "--data.toy-train-size",
    "16",
    "--data.toy-test-size",
    "0",
    "--optim.lr",
    "1e-2",
    "--threads",
    "1",
    "--ssr",
    "filter",
]


def test_lora_trains_adapters_only_and_exports_merged_weights(tmp_path):
    from transformers import AutoModelForImageTextToText

    from rethinker.toyworld.model import load_toy

    out = tmp_path / "run"
    env = dict(os.environ, TQDM_DISABLE="1")
    r = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--output-dir", str(out), *FLAGS],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = out / "checkpoint-2"
    from rethinker.train.shards import SafeReader

    saved = SafeReader(ckpt / "model").read_metadata().state_dict_metadata
    assert saved and all(".lora_A." in k or ".lora_B." in k for k in saved)  # adapters only: small checkpoints
    # the end of the run exports the adapters and the merged weights; merged/ names final/
    assert (out / "final" / "adapter" / "adapter_config.json").is_file()
    assert (out / "merged").resolve() == (out / "final").resolve()
    base = load_toy("cpu")[0]
    merged = AutoModelForImageTextToText.from_pretrained(out / "merged")
    bsd, msd = base.state_dict(), merged.state_dict()
    changed = {k for k in bsd if not torch.equal(bsd[k], msd[k])}
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(row.get(M.OPTIMIZER_STEPS, 0) for row in rows) >= 1  # the warm start gives mixed rewards
    assert changed, "an update ran but no weight moved"
    # LoRA targets the language model's projections only: the vision tower and embeddings are untouched
    assert all("language_model.layers" in k and k.endswith("proj.weight") for k in changed)
    # resume from the adapter checkpoint
    r = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--resume", str(out), "--max-steps", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if M.REWARD_MEAN in row] == [1, 2, 3]
