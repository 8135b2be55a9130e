"""The memory plan's checkpoint rows (``train/plan_host.py``): the host memory of a save, a
resume and an export per rank, and the checkpoint's size on disk, against what the code
does (a 2-rank CPU save, resume and export of the toy policy, full and LoRA, measured by
``benchmarks/checkpoint_io.py``)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from rethinker.model.shapes import qwen25vl_config
from rethinker.train.config import resolve
from rethinker.train.plan import count_parameters, plan
from rethinker.train.plan_host import DCP_COPY_AHEAD

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20
TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
#: what the plan leaves out of the host figures: Python objects, the tokenizer, loaders' buffers (measured 8-25 MB)
UNCOUNTED = 32 * MB


def _plan_3b(lora_rank: int, world: int = 8):
    cfg = resolve(None, {"model.path": "Qwen/Qwen2.5-VL-3B-Instruct", "model.dtype": "bfloat16",
                         "model.lora_rank": lora_rank, "device": "cuda"})  # fmt: skip
    mc = qwen25vl_config("3b")
    counts = count_parameters(mc, lora_rank, TARGETS)
    return plan(cfg, mc, world, device="cuda", dtype_bytes=2, runtime=0.0, counts=counts)


def test_3b_checkpoint_rows_follow_dcp():
    """Qwen2.5-VL-3B on 8 GPUs: a save takes one eighth of the embedding and DCP's copy-ahead
    of host memory, the old layout took the full weights and AdamW state on rank 0; the
    checkpoint is the weights (the tied head again) and two bf16 moments."""
    p = _plan_3b(0)
    h, n, head = p.host, p.counts.total, 151936 * 2048
    assert p.counts.checkpoint.tied_head == head == p.counts.checkpoint.largest
    assert h.save == math.ceil(head * 2 / 8) + DCP_COPY_AHEAD  # 83.7 MiB
    assert h.old_save == n * 2 + 2 * n * 2  # 20.98 GiB on rank 0
    assert h.start == n * 2  # rank 0 reads the whole model from the base (host) and broadcasts it
    assert h.start_other == 0  # the other ranks build on the meta device: their shards are on the GPU
    assert h.resume == math.ceil(head * 2 / 8)  # DCP: no rank reads the base, one stored chunk at a time
    assert h.export == 2 * head * 2  # one tensor and one stored chunk, 1.16 GiB
    tensors = (n + head) * 2 + 2 * n * 2
    assert tensors < h.disk < tensors * 1.01  # 21.6 GiB; the torch.save archives and files under 1%
    assert abs(h.disk / 2**30 - 21.60) < 0.01
    assert "| **checkpoint on disk** | 21.60 GiB |" in p.table()
    assert "| old layout's save, rank 0 (before DCP) | 20.98 GiB |" in p.table()


def test_3b_lora_checkpoint_holds_the_adapters_only_and_export_holds_the_base():
    p = _plan_3b(64)
    h, n, head = p.host, p.counts.total, 151936 * 2048
    assert p.counts.lora == 119_734_272  # rank 64 on the 36 layers' 7 projections
    # fp32 adapters and the archive's per-chunk overhead; the tied head is not written again
    assert p.counts.lora * 4 < h.disk_model < p.counts.lora * 4 * 1.02  # 0.45 GiB
    assert h.export == n * 2 + p.counts.lora * 4 + head * 2  # the base merged in memory, 8.02 GiB
    assert h.start < h.resume < h.start + 2**20  # rank 0 reads the frozen base, then one adapter chunk at a time
    assert h.disk < 0.1 * _plan_3b(0).host.disk


def test_plan_matches_a_measured_two_rank_toy_checkpoint(tmp_path):
    """2 CPU ranks, toy policy (fp32, 2.87 M parameters), full fine-tuning and LoRA rank 8:
    the checkpoint's size on disk is the plan's within 1%; each rank's measured host
    growth (peak RSS minus the RSS before) of a save, a resume and the export is at most
    the plan's figure + ``UNCOUNTED``."""
    out = tmp_path / "io.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "checkpoint_io.py"), "--cases", "toy,toy-lora", "--ranks", "2",
         "--layouts", "dcp", "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    results = {x["case"]: x for x in json.loads(out.read_text())}
    assert set(results) == {"toy", "toy-lora"}
    full, lora = results["toy"], results["toy-lora"]
    assert 34 * MB < full["save"][0]["disk"] < 35 * MB  # weights 11.9 MB + AdamW 23.0 MB
    assert 2.0 * MB < lora["save"][0]["disk"] < 2.4 * MB  # the adapters and their AdamW state (no tied head)
    for res in (full, lora):
        plan_, disk = res["plan"], res["save"][0]["disk"]
        assert abs(plan_["disk"] - disk) / disk < 0.01, (res["case"], plan_["disk"], disk)
        for op in ("save", "resume", "export"):
            for rank in res[op]:
                assert rank["growth"] <= plan_[op] + UNCOUNTED, (res["case"], op, rank["growth"], plan_[op])
    # the resume grows by the shards and their AdamW state, not by nothing: the measurement sees them
    assert min(x["growth"] for x in full["resume"]) > 11 * MB
    # at a start rank 1 holds its half of the model (and one tensor whole as it arrives), rank 0 the whole model too
    assert full["plan"]["start_other"] < full["plan"]["start"] / 2
