"""The paper's ablation on the toy world: vanilla GRPO vs +SSR vs +SSR+Forced Rethinking.

    python benchmarks/toy_ablation.py [--seeds N] [--steps S] [--jobs J] [--out DIR] [-- extra train flags]

Each variant runs ``rethinker train`` with the same budget (steps, queries, G, lengths)
and the same seeds; ``--jobs J`` runs J of them at once (each then gets
``--threads`` cores / J torch threads, so every run sees the same thread count and the
results do not depend on J). Finished runs are reused, so an interrupted ablation resumes. Prints a table (final held-out accuracy, steps to
reach vanilla's final accuracy, mean effective-sample ratio over the last half of the
run, reflection rate over the last half; mean and spread over seeds) and saves a plot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS = {
    "GRPO": ["--ssr", "off", "--rethink", "off"],
    "GRPO+SSR": ["--ssr", "paper", "--rethink", "off"],
    "GRPO+SSR+Rethink": ["--ssr", "paper", "--rethink", "on"],
}


def finished(run_dir: Path, steps: int) -> bool:
    metrics = run_dir / "metrics.jsonl"
    return metrics.exists() and any(
        (row := json.loads(line)).get("step") == steps and "eval/accuracy" in row
        for line in metrics.read_text().splitlines()
    )


def run_variant(name: str, flags: list[str], seed: int, steps: int, threads: int, out: Path,
                extra: list[str]) -> Path:
    run_dir = out / f"{name}-seed{seed}"
    if finished(run_dir, steps):
        return run_dir  # finished earlier: reuse
    cmd = [sys.executable, "-m", "rethinker", "train", "--output-dir", str(run_dir), "--seed", str(seed),
           "--max-steps", str(steps), "--save-every", "0", "--threads", str(threads), *flags, *extra]
    print("$", " ".join(cmd), flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}-seed{seed}.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, TQDM_DISABLE="1"))
    print(f"done: {run_dir}", flush=True)
    return run_dir


def summarize(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["step"], r["eval/accuracy"]) for r in rows if r.get("eval/accuracy") is not None and "eval/n" in r]
    train = [r for r in rows if "reward/mean" in r]
    half = train[len(train) // 2:]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {
        "evals": evals,
        "base": evals[0][1] if evals else float("nan"),
        "final": evals[-1][1] if evals else float("nan"),
        "eff_ratio": mean([r["effective_ratio/before_ssr"] for r in half]),
        "reflection": mean([r["reflection_rate"] for r in half]),
        "step_s": mean([r["time/step_s"] for r in train]),
    }


def steps_to_reach(evals: list[tuple[int, float]], target: float) -> int | None:
    return next((s for s, a in evals if s > 0 and a >= target), None)


def fmt(xs: list[float], pct: bool = True) -> str:
    xs = [x for x in xs if x == x]
    if not xs:
        return "-"
    k = 100 if pct else 1
    m = statistics.mean(xs) * k
    sd = statistics.stdev(xs) * k if len(xs) > 1 else 0.0
    return f"{m:.1f} ± {sd:.1f}" if pct else f"{m:.2f} ± {sd:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="cores shared by the runs")
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("extra", nargs="*", help="extra `rethinker train` flags (after --)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = max(1, args.threads // max(1, args.jobs))
    todo = [(name, flags, seed) for seed in range(args.seeds) for name, flags in VARIANTS.items()]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {(name, seed): pool.submit(run_variant, name, flags, seed, args.steps, threads, out, args.extra)
                   for name, flags, seed in todo}
        results = {name: [summarize(futures[name, seed].result()) for seed in range(args.seeds)]
                   for name in VARIANTS}

    vanilla_final = {i: r["final"] for i, r in enumerate(results["GRPO"])}
    lines = [
        f"toy ablation: {args.seeds} seed(s), {args.steps} rollout steps each, {threads} thread(s) per run, "
        f"{args.jobs} run(s) at once (held-out accuracy, greedy)",
        "",
        "| variant | base acc % | final acc % | steps to vanilla's final | eff. ratio (last half) | reflection rate (last half) | s/step |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rs in results.items():
        reach = [steps_to_reach(r["evals"], vanilla_final[i]) for i, r in enumerate(rs)]
        reach_s = ", ".join("-" if x is None else str(x) for x in reach)
        lines.append(f"| {name} | {fmt([r['base'] for r in rs])} | {fmt([r['final'] for r in rs])} | {reach_s} | "
                     f"{fmt([r['eff_ratio'] for r in rs], False)} | {fmt([r['reflection'] for r in rs], False)} | "
                     f"{fmt([r['step_s'] for r in rs], False)} |")
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rs in results.items():
        for i, r in enumerate(rs):
            xs, ys = zip(*r["evals"]) if r["evals"] else ((), ())
            ax.plot(xs, ys, label=name if i == 0 else None, color=f"C{list(VARIANTS).index(name)}", alpha=0.8)
    ax.set_xlabel("rollout step")
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=90)
    print(f"plot: {out / 'ablation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
