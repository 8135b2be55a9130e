"""One full GRPO step at Qwen2.5-VL-3B-Instruct's real shape, on a CPU: time per phase, peak RSS.

    python benchmarks/real_shape.py [--shape 3b|tiny] [--lora-rank 64] [--new-tokens 32] [--json FILE]

The model is Qwen2.5-VL-3B-Instruct's published configuration (``rethinker.model.shapes``)
with random bf16 weights (no download), wrapped with LoRA (``model.load.add_lora``) and
gradient checkpointing, as ``load_policy`` sets it up. Two queries at real image sizes:
one image at max_pixels (1120 x 896 = 1280 x 28 x 28 pixels: 1280 visual tokens) and a
two-image query (448 x 448 and 336 x 336, the latter upscaled to min_pixels: 256 + 256
tokens), G = 2 samples each, short responses (``--new-tokens``); ``--images`` and
``--min-pixels`` change them. The default step is ~150 TFLOP (forward, recomputation and
backward of ~1300-token sequences, the vision tower on 5120 + 2048 patches, rollout and
rethinking prefills): hours on a shared 2-core CPU, minutes on a GPU. One step through the trainer's own functions:
``experience.collect`` (rollout with the transformers engine, rewards, Forced
Rethinking), the loop's group advantages, SSR (``SampleSelector``), ``policy_update``
(AdamW on the adapters).

Random weights never finish a response nor answer right, so two things are set by hand:
the end-of-sequence token gets probability 1/8 at every position (a hook on the output
head; the policy is "random weights + that bias" in the rollout and the update alike), so
responses end and Forced Rethinking has eligible ones; and after judging, rewards within
each group are set to 1, 0, ... (every one would be 0), so advantages are non-zero and SSR
and the update have work. Everything else is the production path.

Prints a table of time per phase, tokens, peak RSS (``VmHWM``, reset after the model is
built: the step's peak), and the memory plan's
prediction (``train/plan.py``, with this process's measured runtime baseline) beside it,
with the error. ``--shape tiny`` runs the same code in seconds (a test does, so this
script cannot rot). It needs no GPU; it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rethinker import metric_names as M
from rethinker.algo.ssr import SampleSelector
from rethinker.model.load import add_lora, load_processor
from rethinker.model.shapes import build_random
from rethinker.rollout.hf import TransformersEngine
from rethinker.rollout.inputs import PromptEncoder
from rethinker.toyworld.model import toy_model_path
from rethinker.train.config import resolve
from rethinker.train.experience import encode_batch, judge, rollout, with_advantages
from rethinker.train.host import proc_status_bytes
from rethinker.train.optim import make_optimizer, make_scheduler
from rethinker.train.plan import Workload, plan, runtime_bytes
from rethinker.train.rethinking import force_rethinking
from rethinker.train.update import policy_update


def peak_rss() -> float:
    """This process's peak resident memory in bytes since the last ``reset_peak`` (Linux
    ``VmHWM``), else since it started (``ru_maxrss``)."""
    return proc_status_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def rss_now() -> float:
    return proc_status_bytes("VmRSS")


def trim() -> tuple[float, float]:
    """RSS before and after glibc's ``malloc_trim(0)`` (freed heap memory handed back to the
    system): the difference is memory the allocator held, not live tensors."""
    import ctypes

    before = rss_now()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    return before, rss_now()


def reset_peak() -> bool:
    """Restart the peak-RSS count (Linux: ``5`` to ``/proc/self/clear_refs`` resets VmHWM), so
    that the step's peak is not the model construction's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _records(sizes: list[list[tuple[int, int]]]):
    """Toy puzzles with their image replaced by resized copies (one list of (w, h) per query)."""
    from rethinker.records import ImageRef, load_image
    from rethinker.toyworld.puzzles import generate

    out = []
    for r, whs in zip(generate(len(sizes), seed=0, split="test"), sizes):
        img = load_image(r.images[0]).convert("RGB")
        refs = []
        for w, h in whs:
            buf = io.BytesIO()
            img.resize((w, h)).save(buf, format="PNG")
            refs.append(ImageRef(bytes=buf.getvalue()))
        out.append(dataclasses.replace(r, images=refs))
    return out


def _note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def eos_bias_hook(eos_id: int, p: float):
    """A forward hook on the output head: the EOS logit becomes log(p/(1-p)) + logsumexp of
    the others, i.e. P(EOS) = p at temperature 1 at every position."""
    import torch

    def hook(module, args, out):
        others = out.clone()
        others[..., eos_id] = -float("inf")
        out[..., eos_id] = torch.logsumexp(others.float(), dim=-1).to(out.dtype) + math.log(p / (1 - p))
        return out

    return hook


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=["3b", "tiny"], default="3b")
    ap.add_argument("--lora-rank", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32, help="rollout.max_new_tokens")
    ap.add_argument("--group", type=int, default=2, help="G samples per query")
    ap.add_argument("--micro-batch", type=int, default=2, help="optim.micro_batch_size")
    ap.add_argument("--max-pixels", type=int, default=1280 * 28 * 28)
    ap.add_argument(
        "--images",
        default="1120x896;448x448,336x336",
        help="the queries' images, WxH, ',' between images, ';' between queries (default: one image "
        "at max_pixels exactly, 1280 tokens; two images, 256 + 144 tokens before min_pixels)",
    )
    ap.add_argument("--min-pixels", type=int, default=256 * 28 * 28)
    ap.add_argument(
        "--trim",
        action="store_true",
        help="malloc_trim(0) after each phase and report the RSS it returns (glibc's retained heap)",
    )
    ap.add_argument("--skip-prob", type=float, default=0.35, help="rethink.skip_prob (the released value)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    from _doc import add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    return ap.parse_args()


def _config(args: argparse.Namespace):
    return resolve(
        None,
        {
            "model.path": f"random-{args.shape}",
            "model.dtype": "bfloat16",
            "model.lora_rank": args.lora_rank,
            "model.gradient_checkpointing": True,
            "model.min_pixels": args.min_pixels if args.shape == "3b" else 56 * 56,
            "model.max_pixels": args.max_pixels,
            "rollout.queries_per_step": 2,
            "rollout.group_size": args.group,
            "rollout.max_new_tokens": args.new_tokens,
            "rollout.max_batch_queries": 2,
            "rollout.top_k": 0,
            "rollout.top_p": 1.0,
            "optim.micro_batch_size": args.micro_batch,
            "optim.mini_batch_size": None,
            "optim.lr": 1e-5,
            "rethink.enabled": True,
            "rethink.skip_prob": args.skip_prob,
            "device": "cpu",
        },
    )


def _build(args: argparse.Namespace, cfg, run: dict[str, Any]):
    """The random-weight model with LoRA, as ``load_policy`` sets it up; returns
    ``(model, processor)`` and records the build's time and peak RSS in ``run``."""
    t = time.perf_counter()
    processor = load_processor(toy_model_path())
    model = build_random(args.shape, "cpu", torch.bfloat16, processor)
    run["parameters"] = sum(p.numel() for p in model.parameters())
    m = cfg.model
    model = add_lora(model, m.lora_rank, m.lora_alpha, m.lora_dropout, m.lora_targets)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # as load_policy
    model.config.use_cache = False
    model.train()
    eos = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.get_output_embeddings().register_forward_hook(eos_bias_hook(eos, 1 / 8))
    run["build_s"] = time.perf_counter() - t
    run["rss_model"] = peak_rss()
    _note(f"built in {run['build_s']:.0f} s, peak RSS {run['rss_model'] / 2**30:.2f} GiB")
    return model, processor


def _trim_note(run: dict[str, Any], phase: str) -> None:
    run["trims"][phase] = before, after = trim()
    _note(f"after {phase}: RSS {before / 2**30:.2f} GiB, after malloc_trim {after / 2**30:.2f} GiB")


def _collect(args: argparse.Namespace, cfg, model, processor, run: dict[str, Any]):
    """Queries, then the trainer's rollout, rewards and Forced Rethinking; returns
    ``(engine, queries, experience)``."""
    # 1. queries: one image at max_pixels (1120 x 896 -> 40 x 32 = 1280 tokens); two images
    sizes = [[tuple(int(v) for v in im.split("x")) for im in q.split(",")] for q in args.images.split(";")]
    if args.shape == "tiny":
        sizes = [[(224, 168)], [(112, 112), (84, 84)]]
    m = cfg.model
    encoder = PromptEncoder(processor, suffix=cfg.data.prompt_suffix, min_pixels=m.min_pixels, max_pixels=m.max_pixels)
    records, queries, bad = encode_batch(encoder, _records(sizes))
    assert not bad, bad
    _note(f"queries: {[q.length for q in queries]} tokens")
    engine = TransformersEngine(model, processor, max_batch_queries=cfg.rollout.max_batch_queries)
    rng = np.random.Generator(np.random.PCG64([cfg.seed, 1]))
    # 2-3. rollout, rewards, Forced Rethinking (the trainer's stages, as its loop chains them)
    t = time.perf_counter()
    params, G = cfg.rollout.sampling(), cfg.rollout.group_size
    comps, gen_metrics = rollout(engine, queries, params)
    exp = judge(comps, records, queries, G, 1, cfg.reward)
    exp = force_rethinking(exp, engine, processor.tokenizer, params, cfg.reward, cfg.rethink_for_rollout(), rng)
    exp = dataclasses.replace(exp, metrics={**gen_metrics, **exp.metrics})
    run["collect_s"] = time.perf_counter() - t
    run["rss_rollout"] = peak_rss()
    if args.trim:
        _trim_note(run, "collect")
    timings = json.dumps({k: v for k, v in exp.metrics.items() if "time" in k or "rethink" in k})
    _note(f"collected in {run['collect_s']:.0f} s ({timings}), peak RSS {run['rss_rollout'] / 2**30:.2f} GiB")
    return engine, queries, exp


def _update(args: argparse.Namespace, cfg, model, engine, exp, run: dict[str, Any]):
    """Advantages, SSR and the policy update (the trainer's functions); returns the selection."""
    optimizer = make_optimizer(model, cfg, sharded=False)
    scheduler = make_scheduler(optimizer, cfg)
    selector = SampleSelector.from_config(cfg.ssr, seed=cfg.seed)
    # random weights: every reward is 0; 1, 0, ... within each group gives the update work
    G = cfg.rollout.group_size
    exp = exp.with_samples([dataclasses.replace(s, reward=float(i % G == 0)) for i, s in enumerate(exp.samples)])
    exp = with_advantages(exp, G, cfg.algo.advantage_scale, cfg.algo.advantage_eps)
    selection = selector.select(exp.samples)
    t = time.perf_counter()
    upd = policy_update(
        model,
        optimizer,
        scheduler,
        selection.samples,
        cfg.algo,
        cfg.optim,
        pad_id=engine.pad_id,
        max_new_tokens=cfg.rollout.max_new_tokens,
    )
    run["update_s"] = time.perf_counter() - t
    run["rss_peak"] = peak_rss()
    run["update"] = {k: v for k, v in upd.items() if isinstance(v, (int, float)) or v is None}
    if args.trim:
        _trim_note(run, "update")
    return selection


def _predict(cfg, model, queries, run: dict[str, Any]):
    """The plan's prediction for this workload: the longest prompt, its images' patches."""
    longest = max(queries, key=lambda q: q.length)
    vis = max(int((q.mm_token_type_ids == 1).sum()) for q in queries)
    n_img = max(int(q.image_grid_thw.shape[0]) for q in queries)
    wl = Workload(images_per_query=n_img, prompt_text_tokens=longest.length - vis - 2 * n_img, visual_tokens=vis)
    mp = plan(cfg, model.get_base_model().config, 1, device="cpu", dtype_bytes=2, workload=wl, runtime=run["runtime"])
    run["plan"] = mp.as_dict()
    run["plan_error"] = (mp.peak - run["rss_peak"]) / run["rss_peak"]
    return mp


def _print_report(cfg, queries, selection, mp, run: dict[str, Any]) -> None:
    mt, gib = run["metrics"], 2**30
    print(
        f"\n{run['shape']} shape: {run['parameters'] / 1e9:.3f} B parameters (random bf16), LoRA rank "
        f"{cfg.model.lora_rank} ({mp.trainable / 1e6:.2f} M trainable), gradient checkpointing, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"queries: {', '.join(f'{q.length} tokens / {int(q.image_grid_thw.shape[0])} image(s)' for q in queries)}; "
        f"G = {cfg.rollout.group_size}, max_new_tokens {cfg.rollout.max_new_tokens}\n"
    )
    print("| phase | time | tokens | peak RSS so far |")
    print("|---|---|---|---|")
    print(
        f"| build (random weights + LoRA) | {run['build_s']:.1f} s | - | {run['rss_model'] / gib:.2f} GiB "
        f"(peak{', then reset' if run['peak_reset_after_build'] else ''}) |"
    )
    print(f"| rollout (prefill + sampling) | {run['rollout_s']:.1f} s | {mt['rollout/tokens']} generated | - |")
    print(
        f"| Forced Rethinking | {run['rethink_s']:.1f} s | {mt.get('rethink/attempts', 0)} continuations, "
        f"{mt.get('rethink/accepted', 0)} kept | {run['rss_rollout'] / gib:.2f} GiB |"
    )
    print(
        f"| update ({selection.stats[M.SSR_SELECTED]:.0f} samples, micro-batch {cfg.optim.micro_batch_size}) | "
        f"{run['update_s']:.1f} s | {run['update']['update/tokens']} completion tokens | "
        f"{run['rss_peak'] / gib:.2f} GiB |"
    )
    print(
        f"\nruntime baseline (process before the model): {run['runtime'] / gib:.2f} GiB; glibc mmap threshold: "
        f"{os.environ.get('MALLOC_MMAP_THRESHOLD_', 'dynamic (default)')}"
    )
    print(
        f"peak RSS measured {run['rss_peak'] / gib:.2f} GiB; plan predicts {mp.peak / gib:.2f} GiB "
        f"(error {100 * run['plan_error']:+.1f}%)\n"
    )
    print(mp.table())


#: The order of the ``--json`` file's keys.
JSON_KEYS = (
    "shape",
    "parameters",
    "build_s",
    "rollout_s",
    "rethink_s",
    "collect_s",
    "update_s",
    "metrics",
    "update",
    "rss_model",
    "rss_rollout",
    "rss_peak",
    "runtime",
    "peak_reset_after_build",
    "trims",
    "malloc_mmap_threshold",
    "plan",
    "plan_error",
    "prompt_lengths",
)


def main() -> int:
    args = _parse_args()
    from _doc import StdoutSection

    doc = StdoutSection(args.write_doc, "real_shape")
    if args.threads:
        torch.set_num_threads(args.threads)
    run: dict[str, Any] = {"shape": args.shape, "trims": {}}
    run["runtime"] = runtime_bytes()  # the process before any model: Python + torch + transformers
    torch.manual_seed(0)
    cfg = _config(args)
    model, processor = _build(args, cfg, run)
    # the step's peak from here on (random initialisation has transients a checkpoint load does not)
    run["peak_reset_after_build"] = reset_peak()
    engine, queries, exp = _collect(args, cfg, model, processor, run)
    selection = _update(args, cfg, model, engine, exp, run)
    mp = _predict(cfg, model, queries, run)
    mt = run["metrics"] = exp.metrics
    run["rollout_s"], run["rethink_s"] = mt.get("time/rollout_s", 0.0), mt.get("time/rethink_s", 0.0)
    run["malloc_mmap_threshold"] = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    run["prompt_lengths"] = [q.length for q in queries]
    _print_report(cfg, queries, selection, mp, run)
    doc.write()
    if args.json:
        Path(args.json).write_text(json.dumps({k: run[k] for k in JSON_KEYS}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
