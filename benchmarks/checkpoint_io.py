"""Checkpoint save and resume, in 1 and 2 CPU processes: the layout before DCP (full
weights and optimizer state gathered to rank 0, ``save_pretrained``) against distributed
checkpoints (every rank its shards); seconds, peak RSS per rank and the checkpoint's size
on disk, each operation in fresh processes; then ``rethinker export``'s peak RSS; then the
memory plan's checkpoint rows (``train/plan_host.py``) beside the measurements.

    python benchmarks/checkpoint_io.py [--cases toy,toy-lora,3b-1l] [--ranks 1,2] [--layouts old,dcp]
                                      [--json FILE] [--write-doc docs/results.md]

Cases: ``toy`` (the toy policy, fp32, full fine-tuning), ``toy-lora`` (LoRA rank 8 on it;
DCP only), ``3b-1l`` (Qwen2.5-VL-3B's shape, random bf16 weights, with 1 decoder layer and
1 vision block: its 151936 x 2048 embedding and one real-size layer of each kind, 0.44 B
parameters, written once as the base by ``save_pretrained``). AdamW's state exists before
a save (as in a run). Save: peak RSS during the save, and its growth over the RSS before
it (the training state). Resume: the whole resume in a fresh process (as a run: with 2
ranks built on the meta device, sharded, optimizer, the checkpoint read; LoRA: rank 0
reads the frozen base and broadcasts it; the old layout: rank 0 reads the weights from its
``save_pretrained`` copy and broadcasts them), its growth over the process's RSS before the model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MB = 2**20
TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
CASES = {"toy": ("float32", 0), "toy-lora": ("float32", 8), "3b-1l": ("bfloat16", 0)}


def _rss(field: str = "VmRSS") -> float:
    from rethinker.train.host import proc_status_bytes

    return proc_status_bytes(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # Linux: resets VmHWM to the RSS now
        f.write("5")


def _lora(case: str, base: str) -> dict | None:
    rank = CASES[case][1]
    return {"rank": rank, "alpha": 2 * rank, "dropout": 0.0, "targets": TARGETS, "base": base} if rank else None


def _build(case: str, base: str, ctx, path: str | None = None, from_files: bool = True):
    """The policy as a run sets it up (``load_sharded_policy`` from ``path`` or the base:
    with several processes rank 0 reads it and broadcasts it into the shards;
    ``from_files=False``: no rank reads it, a DCP checkpoint follows) and its AdamW (fused
    in one process, as ``make_optimizer``)."""
    from rethinker.train.distributed import load_sharded_policy

    dtype = getattr(torch, CASES[case][0])
    lora = _lora(case, base)
    model, processor = load_sharded_policy(
        path or base, ctx, torch.device("cpu"), from_files=from_files, dtype=dtype, lora=lora
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=None if ctx.enabled else True)
    return model, processor, optimizer


def _save(case: str, layout: str, folder: Path, ctx, model, processor, optimizer) -> None:
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
    lora = CASES[case][1] > 0
    groups = save_shards(ckpt.temp_folder(folder, 1), model, optimizer, adapters_only=lora)
    ctx.barrier()
    if ctx.is_main:
        state = {"layout": "dcp", "optimizer_groups": groups, "rng": [ckpt.rng_state()] * ctx.world}

        def write(tmp: Path) -> None:
            ckpt.write_state(tmp, state, 1)
            processor.save_pretrained(tmp)
            model.config.save_pretrained(tmp)

        ckpt.finish_checkpoint(folder, 1, write)


def _resume(case: str, layout: str, folder: Path, base: str, ctx) -> None:
    from rethinker.train import checkpoint as ckpt
    from rethinker.train.distributed import load_optimizer_state
    from rethinker.train.shards import load_model_shards, load_optimizer_shards

    last = folder / "checkpoint-1"
    state = ckpt.load_state(last)
    if layout == "old":  # the weights from the save_pretrained copy, then sharded
        model, _, optimizer = _build(case, base, ctx, path=str(last))
        load_optimizer_state(model, optimizer, state["optimizer"], ctx)
    else:
        lora = CASES[case][1] > 0
        model, _, optimizer = _build(case, base, ctx, from_files=lora)  # the DCP checkpoint of full weights: no base
        load_model_shards(last, model, adapters_only=lora)
        load_optimizer_shards(last, model, optimizer, state["optimizer_groups"])


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def worker(case: str, op: str, layout: str, folder: str, base: str) -> None:
    """One operation in this process (a rank under torchrun): its row to ``folder/row-OP-RANK.json``."""
    from rethinker.train.distributed import init_distributed

    ctx = init_distributed()
    torch.set_num_threads(1)
    import peft  # noqa: F401  (what the operations import, before the RSS they are measured from)
    import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl  # noqa: F401

    import rethinker.model.load  # noqa: F401
    import rethinker.train.export  # noqa: F401

    if op == "save":
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        model, processor, optimizer = _build(case, base, ctx)
        get_optimizer_state_dict(model, optimizer)  # AdamW's state exists, as in a run
    ctx.barrier()
    before = _rss()
    _reset_peak()
    t = time.perf_counter()
    if op == "save":
        _save(case, layout, Path(folder), ctx, model, processor, optimizer)
    elif op == "resume":
        _resume(case, layout, Path(folder), base, ctx)
    else:
        from rethinker.train.export import export_checkpoint

        export_checkpoint(Path(folder) / "checkpoint-1", Path(folder) / "exported")
    ctx.barrier()
    peak = _rss("VmHWM")
    row = {"rank": ctx.rank, "s": time.perf_counter() - t, "peak": peak, "growth": peak - before}
    if op == "save" and ctx.is_main:
        row["disk"] = _du(Path(folder) / "checkpoint-1")
    (Path(folder) / f"row-{op}-{ctx.rank}.json").write_text(json.dumps(row))  # ranks' stdout lines interleave
    if torch.distributed.is_initialized():  # leave the group: one torn down by the exit can abort a finished rank
        torch.distributed.destroy_process_group()


def _launch(case: str, op: str, layout: str, folder: Path, base: str, nproc: int) -> list[dict]:
    me = [str(Path(__file__).resolve()), "--worker", case, op, layout, str(folder), base]
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    if nproc == 1:
        cmd = [sys.executable, *me]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", "0",
               "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0", *me]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise SystemExit(f"{case} {op} {layout} x{nproc} failed:\n{res.stderr[-3000:]}")
    rows = [json.loads(f.read_text()) for f in folder.glob(f"row-{op}-*.json")]
    return sorted(rows, key=lambda r: r["rank"])


def _make_3b_base(folder: Path) -> str:
    """Qwen2.5-VL-3B's shape with 1 decoder layer and 1 vision block, random bf16 weights,
    written with ``save_pretrained`` (the toy's processor beside it)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from rethinker.model.load import load_processor
    from rethinker.model.shapes import qwen25vl_config
    from rethinker.toyworld.model import toy_model_path

    cfg = qwen25vl_config("3b")
    cfg.text_config.num_hidden_layers = 1
    cfg.text_config.layer_types = cfg.text_config.layer_types[:1]
    cfg.vision_config.depth, cfg.vision_config.fullatt_block_indexes = 1, [0]
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg).to(torch.bfloat16)
    model.save_pretrained(folder)
    load_processor(toy_model_path()).save_pretrained(folder)
    return str(folder)


def measure(case: str, nproc: int, layout: str, base: str, export: bool) -> dict:
    with tempfile.TemporaryDirectory() as d:
        save = _launch(case, "save", layout, Path(d), base, nproc)
        resume = _launch(case, "resume", layout, Path(d), base, nproc)
        out = {"case": case, "ranks": nproc, "layout": layout, "save": save, "resume": resume}
        if export:
            out["export"] = _launch(case, "export", layout, Path(d), base, 1)
    return out


def plan_rows(case: str, nproc: int, base: str) -> dict:
    """The memory plan's checkpoint rows for the case (one CPU rank of ``nproc``)."""
    from rethinker.train.config import resolve
    from rethinker.train.plan import plan_for

    dtype, rank = CASES[case]
    cfg = resolve(None, {"model.path": base, "model.dtype": dtype, "model.lora_rank": rank, "device": "cpu"})
    return plan_for(cfg, nproc, device="cpu", runtime=0.0).host.as_dict()


def _mb(rows: list[dict], key: str) -> str:
    return " / ".join(f"{r['peak'] / MB:.0f} (+{r[key] / MB:.0f})" for r in rows)


def print_tables(results: list[dict]) -> None:
    print("| case | ranks | layout | save s | save: peak RSS MB per rank (+growth) | resume s "
          "| resume: peak RSS MB per rank (+growth) | on disk MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        s, lo = r["save"], r["resume"]
        print(f"| {r['case']} | {r['ranks']} | {r['layout']} | {max(x['s'] for x in s):.2f} | {_mb(s, 'growth')} "
              f"| {max(x['s'] for x in lo):.2f} | {_mb(lo, 'growth')} | {s[0]['disk'] / MB:.1f} |")  # fmt: skip
    for r in results:
        if "export" in r:
            e = r["export"][0]
            print(f"\n`rethinker export` of the {r['case']} {r['ranks']}-rank checkpoint (one process): "
                  f"{e['s']:.2f} s, peak RSS {e['peak'] / MB:.0f} MB (+{e['growth'] / MB:.0f})")  # fmt: skip
    print("\nThe memory plan (`--dry-run`, DCP) against the measurements: largest growth over the ranks, MB")
    print("\n| case | ranks | save: plan / measured | resume: plan / measured | on disk: plan / measured "
          "| export: plan / measured |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in results:
        if r["layout"] != "dcp":
            continue
        p = r["plan"]
        grow = {k: max(x["growth"] for x in r[k]) for k in ("save", "resume")}
        exp = f"{p['export'] / MB:.1f} / {r['export'][0]['growth'] / MB:.1f}" if "export" in r else "-"
        print(f"| {r['case']} | {r['ranks']} | {p['save'] / MB:.1f} / {grow['save'] / MB:.1f} "
              f"| {p['resume'] / MB:.1f} / {grow['resume'] / MB:.1f} | {p['disk'] / MB:.2f} / "
              f"{r['save'][0]['disk'] / MB:.2f} | {exp} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--cases", default="toy,toy-lora,3b-1l")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--layouts", default="old,dcp")
    ap.add_argument("--json", default=None, help="also write the measurements and plan figures here")
    from _doc import StdoutSection, add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    from rethinker.toyworld.model import toy_model_path

    doc = StdoutSection(args.write_doc, "checkpoint_io")
    ranks = [int(n) for n in args.ranks.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in args.cases.split(","):
            base = _make_3b_base(Path(scratch) / "base") if case.startswith("3b") else str(toy_model_path())
            layouts = ["dcp"] if CASES[case][1] else args.layouts.split(",")
            for nproc in ranks:
                for layout in layouts:
                    r = measure(case, nproc, layout, base, export=layout == "dcp" and nproc == max(ranks))
                    if layout == "dcp":
                        r["plan"] = plan_rows(case, nproc, base)
                    results.append(r)
                    print(f"done: {case} x{nproc} {layout}", file=sys.stderr, flush=True)
            if case.startswith("3b"):
                shutil.rmtree(base)
    print_tables(results)
    doc.write()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
