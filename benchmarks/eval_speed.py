"""Evaluation throughput of the toy policy: batched vs one-by-one.

Runs ``rethinker.rollout.evaluate.evaluate`` (the path ``rethinker eval`` takes: prompt
encoding, the ``TransformersEngine``, the judge) greedily over the same held-out toy
puzzles, once with one query per ``generate`` call and once per batch size asked for, and
prints items/s, generated tokens/s and the speed-up over one-by-one; the largest batch
runs a second time through plain ``model.generate`` (``own_decode=False``) for
comparison. All runs see the same items and, being greedy, should give the same accuracy
(printed as a check).

    python benchmarks/eval_speed.py [--items 32] [--batch 32 8] [--max-new-tokens 48] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 8])
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", help="model directory (default: the packaged toy policy)")
    ap.add_argument("--device", default="cpu")
    from _doc import StdoutSection, add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    doc = StdoutSection(args.write_doc, "eval_speed", fence=True)  # a fixed-width table
    torch.set_num_threads(args.threads)

    from rethinker.model.load import load_policy, pick_device, pick_dtype
    from rethinker.rollout.evaluate import evaluate
    from rethinker.rollout.hf import TransformersEngine
    from rethinker.rollout.inputs import PromptEncoder
    from rethinker.toyworld.model import resolve_model_path
    from rethinker.toyworld.puzzles import generate

    device = pick_device(args.device)
    model, processor = load_policy(
        resolve_model_path(args.model), device=device, dtype=pick_dtype("auto", device), trainable=False
    )
    records = generate(args.items, seed=0, split="test")
    # warm-up (first-call allocations, judge imports), not timed
    evaluate(
        TransformersEngine(model, processor),
        PromptEncoder(processor),
        records[:2],
        max_new_tokens=args.max_new_tokens,
        batch_queries=2,
    )

    rows = []
    runs = [(b, None) for b in (1, *args.batch)] + [(max(args.batch), False)]
    for batch, own in runs:
        engine = TransformersEngine(model, processor, max_batch_queries=batch, own_decode=own)
        encoder = PromptEncoder(processor)
        t0 = time.perf_counter()
        res = evaluate(engine, encoder, records, max_new_tokens=args.max_new_tokens, batch_queries=batch)
        dt = time.perf_counter() - t0
        label = str(batch) if own is None else f"{batch} (generate)"
        rows.append((label, dt, res.n_items / dt, engine.stats.tokens / dt, res.accuracy))

    base = rows[0][2]
    print(
        f"toy policy, {args.items} held-out puzzles, greedy, up to {args.max_new_tokens} new tokens, "
        f"{args.threads} threads, device {device}"
    )
    print(f"{'batch':>14}  {'seconds':>8}  {'items/s':>8}  {'tokens/s':>9}  {'speed-up':>8}  {'accuracy':>8}")
    for batch, dt, ips, tps, acc in rows:
        print(f"{batch:>14}  {dt:>8.2f}  {ips:>8.2f}  {tps:>9.0f}  {ips / base:>7.2f}x  {acc:>8.3f}")
    doc.write()


if __name__ == "__main__":
    main()
