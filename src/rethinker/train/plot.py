"""The curves of a run's ``metrics.jsonl`` as a PNG (``rethinker plot RUN_DIR``)."""

from __future__ import annotations

from pathlib import Path

from .metrics import read_metrics

PANELS = [
    ("reward/mean", "reward (mean)"),
    ("accuracy", "train accuracy"),
    ("eval/accuracy", "held-out accuracy (greedy)"),
    ("effective_ratio/before_ssr", "effective-sample ratio"),
    ("reflection_rate", "reflection rate"),
    ("response_length/mean", "response length (tokens)"),
    ("loss/clip_frac_high", "clip fraction (high)"),
    ("time/step_s", "step time (s)"),
]


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    out = Path(out) if out else Path(run_dir) / "curves.png"
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, (key, title) in zip(axes.flat, PANELS):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if key == "effective_ratio/before_ssr":
            after = [(r["step"], r["effective_ratio/after_ssr"]) for r in rows if r.get("effective_ratio/after_ssr") is not None]
            if after:
                ax.plot(*zip(*after), label="after SSR", alpha=0.8)
        if pts:
            ax.plot(*zip(*pts), marker="o" if key.startswith("eval") else None, label=key.split("/")[-1])
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if key == "effective_ratio/before_ssr":
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
