"""Checkpoint save and resume on the toy policy: the layout before DCP (full weights and
optimizer state gathered to rank 0, ``save_pretrained``) against distributed checkpoints
(every rank its shards), in 1 and 2 CPU processes; seconds and peak RSS per rank, each
operation in fresh processes (peak RSS is the process's high-water mark, its growth over
the model's set-up in brackets). Then ``rethinker export``'s peak RSS.

    python benchmarks/checkpoint_io.py [--write-doc docs/results.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup():
    from rethinker.model.load import load_policy
    from rethinker.toyworld.model import toy_model_path
    from rethinker.train.distributed import init_distributed, shard_model

    ctx = init_distributed()
    torch.set_num_threads(1)
    model, processor = load_policy(str(toy_model_path()), device=torch.device("cpu"), dtype=torch.float32)
    if ctx.enabled:
        shard_model(model, ctx, torch.device("cpu"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    return ctx, model, processor, optimizer


def _save(layout: str, folder: Path, ctx, model, processor, optimizer) -> None:
    from rethinker.train import checkpoint as ckpt
    from rethinker.train.distributed import full_model_state, full_optimizer_state
    from rethinker.train.shards import save_shards

    if layout == "old":
        sd, osd = full_model_state(model, ctx), full_optimizer_state(model, optimizer, ctx)
        if ctx.is_main:
            ckpt.save_checkpoint(folder, 1, model, processor, {"optimizer": osd}, model_state=sd)
        return
    if ctx.is_main:
        ckpt.start_checkpoint(folder, 1)
    ctx.barrier()
    groups = save_shards(ckpt.temp_folder(folder, 1), model, optimizer, adapters_only=False)
    ctx.barrier()
    if ctx.is_main:
        ckpt.finish_checkpoint(folder, 1, lambda t: ckpt.write_state(t, {"layout": "dcp", "groups": groups}, 1))


def _load(layout: str, folder: Path, ctx, model, optimizer) -> None:
    from rethinker.model.load import load_policy
    from rethinker.train import checkpoint as ckpt
    from rethinker.train.distributed import load_optimizer_state, shard_model
    from rethinker.train.shards import load_model_shards, load_optimizer_shards

    state = ckpt.load_state(folder / "checkpoint-1")
    if layout == "old":  # the weights from the save_pretrained copy, then sharded
        model, _ = load_policy(str(folder / "checkpoint-1"), device=torch.device("cpu"), dtype=torch.float32)
        if ctx.enabled:
            shard_model(model, ctx, torch.device("cpu"))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        load_optimizer_state(model, optimizer, state["optimizer"], ctx)
    else:
        load_model_shards(folder / "checkpoint-1", model, adapters_only=False)
        load_optimizer_shards(folder / "checkpoint-1", model, optimizer, state["groups"])


def worker(op: str, layout: str, folder: str) -> None:
    """One operation in this process (a rank under torchrun): prints a JSON line."""
    ctx, model, processor, optimizer = _setup()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    get_optimizer_state_dict(model, optimizer)  # the optimizer's state exists, as in a run
    base = _rss_mb()
    ctx.barrier()
    t = time.perf_counter()
    if op == "save":
        _save(layout, Path(folder), ctx, model, processor, optimizer)
    elif op == "load":
        _load(layout, Path(folder), ctx, model, optimizer)
    else:
        from rethinker.train.export import export_checkpoint

        export_checkpoint(Path(folder) / "checkpoint-1", Path(folder) / "exported")
    ctx.barrier()
    row = {"rank": ctx.rank, "s": time.perf_counter() - t, "peak_mb": _rss_mb(), "growth_mb": _rss_mb() - base}
    print("ROW " + json.dumps(row), flush=True)


def _launch(op: str, layout: str, folder: Path, nproc: int) -> list[dict]:
    me = [str(Path(__file__).resolve()), "--worker", op, layout, str(folder)]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    if nproc == 1:
        cmd = [sys.executable, *me]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", "0",
               "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0", *me]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    rows = [json.loads(line[4:]) for line in res.stdout.splitlines() if line.startswith("ROW ")]
    return sorted(rows, key=lambda r: r["rank"])


def _cell(rows: list[dict]) -> str:
    s = max(r["s"] for r in rows)
    mem = " / ".join(f"{r['peak_mb']:.0f} (+{r['growth_mb']:.0f})" for r in rows)
    return f"{s:6.2f} s | {mem}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    from _doc import StdoutSection, add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    doc = StdoutSection(args.write_doc, "checkpoint_io")
    print("| ranks | layout | save (s, peak RSS MB per rank (+growth)) | resume (s, peak RSS MB per rank) |")
    print("|---|---|---|---|")
    export_row: list[dict] = []
    for nproc in (1, 2):
        for layout in ("old", "dcp"):
            with tempfile.TemporaryDirectory() as d:
                save = _launch("save", layout, Path(d), nproc)
                load = _launch("load", layout, Path(d), nproc)
                if layout == "dcp" and nproc == 2:
                    export_row = _launch("export", layout, Path(d), 1)
            print(f"| {nproc} | {layout} | {_cell(save)} | {_cell(load)} |")
    print(f"\n`rethinker export` of the 2-rank checkpoint (one process): {_cell(export_row)}")
    doc.write()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
