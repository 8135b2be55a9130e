"""The GPU variant of ``vs_trl.py``: a Qwen2.5-VL-3B-shaped policy with random bf16 weights.

    python benchmarks/gpu_step.py [--shape 3b] [--device cuda] [--json FILE]

No download: the model is built from Qwen2.5-VL-3B-Instruct's published shape (text:
hidden 2048, 36 layers, 16 heads / 2 KV heads, MLP 11008, vocab 151936; vision: 32
blocks of 1280, out 2048) with random weights; prompts are toy-world puzzles rendered at
448x448 (256 image tokens each) through the toy processor's tokenizer and Qwen's image
processor. Prints one table:

- **bf16 matmul peak** of this device (8192^3 matmuls), the yardstick for MFU;
- **policy update**: forward+backward of 8 sequences x 1024 tokens, one 448x448 image each
  (the baseline shape in ``docs/method.md``, "GPU baseline": plain transformers 0.93 s, 20% MFU on
  one H100), through rethinker's scoring (``score``: distinct prompts) and, for GRPO
  groups (2 queries x G=4 of the same total length), ``score_grouped`` (prompt once per
  query). MFU = model FLOPs (``model_flops``) / time / peak;
- **rollout**: 8 queries x G=8 samples x ``--new-tokens`` new tokens, rethinker's engine
  (prefill once per query, finished rows leave the batch) against plain
  ``model.generate(num_return_sequences=8)`` (the docs/method.md baseline: 921 tokens/s).

``--shape tiny --device cpu`` runs the same code on a small random model in seconds (the
test suite does, so this script cannot rot between GPU sessions).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import time
from pathlib import Path

import torch

from rethinker.model.shapes import SHAPES, build_random  # Qwen2.5-VL-3B-Instruct's published shape


def build(shape: str, device: str, dtype: torch.dtype):
    from rethinker.model.load import load_processor
    from rethinker.toyworld.model import toy_model_path

    processor = load_processor(toy_model_path())
    return build_random(shape, device, dtype, processor), processor


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> float:
    fn()  # warm-up
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak(device: str, dtype: torch.dtype, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 20 if device.startswith("cuda") else 2

    def run():
        for _ in range(reps):
            a @ b

    return 2 * n**3 * reps / timed(run, device, 3)


def _queries(processor, n: int, image: int):
    from rethinker.records import ImageRef, load_image
    from rethinker.rollout.inputs import PromptEncoder
    from rethinker.toyworld.puzzles import generate

    enc = PromptEncoder(processor, min_pixels=image * image, max_pixels=image * image)
    recs = []
    for r in generate(n, seed=0, split="test"):
        big = load_image(r.images[0]).resize((image, image))
        buf = io.BytesIO()
        big.save(buf, format="PNG")
        recs.append(dataclasses.replace(r, images=[ImageRef(bytes=buf.getvalue())]))
    return [enc.encode(r) for r in recs], enc.pad_token_id


def model_flops(model, tokens: int, seq: int, patches: int) -> float:
    """Training FLOPs (forward + backward) of ``tokens`` text tokens in sequences of
    ``seq`` and ``patches`` vision patches: 6 x matmul parameters per token (output head
    included, embeddings not), causal attention 6 x layers x hidden x seq per token, and
    6 x the vision tower's parameters per patch (its attention left out: a lower bound)."""
    tc = model.config.text_config
    text_matmul = sum(
        p.numel() for n, p in model.named_parameters() if "visual" not in n and p.dim() == 2 and "embed_tokens" not in n
    )
    text_matmul += tc.hidden_size * tc.vocab_size  # the (tied) output head
    vision = sum(p.numel() for n, p in model.named_parameters() if "visual" in n and p.dim() >= 2)
    attn = 6 * tc.num_hidden_layers * tc.hidden_size * tokens * seq  # causal: half of 12 L h s per token
    return 6 * text_matmul * tokens + attn + 6 * vision * patches


def bench_update(model, queries, pad_id: int, seq: int, device: str, repeats: int) -> dict:
    from rethinker.rollout.inputs import collate_sequences
    from rethinker.rollout.scoring import score, score_grouped

    model.train()
    g = torch.Generator().manual_seed(0)
    vocab = min(model.config.text_config.vocab_size, 500)
    out = {}
    # distinct prompts: 8 sequences, one image each (the docs/method.md baseline shape)
    comps = [torch.randint(20, vocab, (seq - q.length,), generator=g).tolist() for q in queries]
    batch = collate_sequences(queries, comps, list(range(len(queries))), pad_id).to(device, torch.bfloat16)

    def full():
        s = score(model, queries, batch)
        s.logprobs.sum().backward()
        model.zero_grad(set_to_none=True)

    t = timed(full, device, repeats)
    patches = sum(int(q.image_grid_thw.prod()) for q in queries)
    flops = model_flops(model, len(queries) * seq, seq, patches)
    out["distinct"] = {"s": t, "tokens": len(queries) * seq, "flops": flops}
    # GRPO groups: 2 queries x G=4, same total length per sequence
    k = max(1, len(queries) // 4)
    gq, qidx = queries[:k], [i for i in range(k) for _ in range(len(queries) // k)]
    gcomps = [torch.randint(20, vocab, (seq - gq[i].length,), generator=g).tolist() for i in qidx]

    def grouped():
        _, s = score_grouped(model, gq, gcomps, qidx, pad_id)
        s.logprobs.sum().backward()
        model.zero_grad(set_to_none=True)

    gbatch = collate_sequences(gq, gcomps, qidx, pad_id).to(device, torch.bfloat16)

    def grouped_full():
        s = score(model, gq, gbatch)
        s.logprobs.sum().backward()
        model.zero_grad(set_to_none=True)

    out["grouped"] = {
        "s": timed(grouped, device, repeats),
        "full_s": timed(grouped_full, device, repeats),
        "tokens": len(qidx) * seq,
        "queries": k,
        "group": len(queries) // k,
    }
    if device.startswith("cuda"):
        out["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def bench_rollout(model, processor, queries, n: int, new_tokens: int, device: str) -> dict:
    from rethinker.rollout.base import SamplingParams
    from rethinker.rollout.hf import TransformersEngine

    model.eval()
    params = SamplingParams(max_new_tokens=new_tokens, n=n, temperature=1.0, top_p=1.0, top_k=0)
    res = {}
    for name, own in (("rethinker", True), ("transformers generate", False)):
        eng = TransformersEngine(model, processor, own_decode=own)
        eng.generate(queries[:1], SamplingParams(max_new_tokens=4, n=2))  # warm-up
        _sync(device)
        eng.stats.tokens, eng.stats.seconds = 0, 0.0
        torch.manual_seed(0)
        t = time.perf_counter()
        eng.generate(queries, params)
        _sync(device)
        dt = time.perf_counter() - t
        res[name] = {"s": dt, "tokens": eng.stats.tokens, "tok_s": eng.stats.tokens / dt}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="3b")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seq", type=int, default=1024, help="tokens per training sequence")
    ap.add_argument("--image", type=int, default=448, help="image side in pixels")
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--group", type=int, default=8, help="samples per query in the rollout")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--matmul", type=int, default=8192, help="matmul size for the peak")
    ap.add_argument("--json", default=None)
    from _doc import StdoutSection, add_argument  # benchmarks/_doc.py (this script's folder)

    add_argument(ap)
    args = ap.parse_args()
    doc = StdoutSection(args.write_doc, "gpu_step")
    dtype = torch.bfloat16
    torch.manual_seed(0)
    model, processor = build(args.shape, args.device, dtype)
    queries, pad_id = _queries(processor, args.queries, args.image)
    if max(q.length for q in queries) >= args.seq:
        ap.error(f"--seq {args.seq} is shorter than a prompt ({max(q.length for q in queries)} tokens)")
    peak = matmul_peak(args.device, dtype, args.matmul)
    upd = bench_update(model, queries, pad_id, args.seq, args.device, args.repeats)
    roll = bench_rollout(model, processor, queries, args.group, args.new_tokens, args.device)
    n_params = sum(p.numel() for p in model.parameters())
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    d = upd["distinct"]
    mfu = d["flops"] / d["s"] / peak
    print(f"\n{args.shape} shape ({n_params / 1e6:.1f} M parameters, random bf16), {dev}, torch {torch.__version__}")
    print(f"bf16 matmul peak ({args.matmul}^3): {peak / 1e12:.0f} TFLOP/s\n")
    print("| measurement | rethinker | reference | ratio |")
    print("|---|---|---|---|")
    print(
        f"| update fwd+bwd, {args.queries} x {args.seq} tokens, distinct prompts | {d['s']:.3f} s, "
        f"{100 * mfu:.1f}% MFU | 0.93 s, 20% MFU (docs/method.md, H100) | - |"
    )
    gp = upd["grouped"]
    print(
        f"| update fwd+bwd, {gp['queries']} queries x G={gp['group']}, grouped vs full forward | "
        f"{gp['s']:.3f} s | {gp['full_s']:.3f} s | {gp['s'] / gp['full_s']:.2f} |"
    )
    r, b = roll["rethinker"], roll["transformers generate"]
    print(
        f"| rollout {args.queries} x G={args.group} x <= {args.new_tokens} tokens | {r['tok_s']:.0f} tok/s "
        f"({r['s']:.1f} s) | generate {b['tok_s']:.0f} tok/s ({b['s']:.1f} s) | {r['tok_s'] / b['tok_s']:.2f} |"
    )
    if "peak_mem_gb" in upd:
        print(f"\npeak GPU memory in the update: {upd['peak_mem_gb']:.1f} GiB")
    doc.write()
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"peak_flops": peak, "update": upd, "rollout": roll, "mfu": mfu, "device": dev, "shape": args.shape},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
