"""A run's curves: smoothing, which panels can move in its configuration, the figure.

Every panel draws the smoothed curve over its raw values (faint). A panel is left out
when its quantity cannot move in the run's configuration (``movable``), e.g. the clip
fraction when every update is the first one on its batch (the importance ratio is then
exactly 1), or the KL to the reference without a KL term, and when the run has not
logged it yet. The panels:

- held-out (dev) accuracy (greedy) with its 95% Wilson band, one point per evaluation;
- reward (mean) and training accuracy;
- the shares of all-correct / mixed / all-wrong groups, stacked (only mixed groups give
  GRPO a gradient: what SSR and Forced Rethinking are about);
- reflection rate; Forced Rethinking attempts and kept continuations (when on);
- response length (mean, max); policy entropy; KL to the reference (when ``kl_coef > 0``);
- clip fraction (when the ratio can leave 1: several mini-batches per step, or the
  released SSR replay); step time by phase (rollout, rethink, update, other), stacked.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import metric_names as M

COLORS = {
    "correct": "#2e7d32",
    "mixed": "#f9a825",
    "wrong": "#c62828",
    "a": "#1f77b4",
    "b": "#ff7f0e",
    "c": "#2ca02c",
    "d": "#9467bd",
    "grey": "#9e9e9e",
}


def smoothing_weight(n: int) -> float:
    """EMA weight for a curve of ``n`` points: about a tenth of the run's steps, at most
    0.9 (a window of ~10 steps), none for a handful of points."""
    if n < 8:
        return 0.0
    return min(0.9, max(0.0, 1.0 - 10.0 / n))


def smooth(values: Sequence[float | None], weight: float) -> list[float | None]:
    """Exponential moving average, debiased as TensorBoard does (the first points are not
    pulled towards 0); None (a step that did not log the value) is kept as None and skipped."""
    out: list[float | None] = []
    last, norm = 0.0, 0.0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(None)
            continue
        last = weight * last + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(last / norm if norm > 0 else v)
    return out


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    series: tuple[tuple[str, str], ...]  # (metric key, label)
    kind: str = "line"  # line | eval | groups | time | rethink


PANELS: tuple[Panel, ...] = (
    Panel("eval", "held-out (dev) accuracy (greedy, 95% CI)", ((M.EVAL_ACCURACY, "accuracy"),), "eval"),
    Panel("reward", "reward and training accuracy", ((M.REWARD_MEAN, "reward (mean)"), (M.ACCURACY, "train accuracy"))),
    Panel(
        "groups",
        "groups: all correct / mixed / all wrong",
        ((M.ALL_CORRECT, "all correct"), (M.ALL_WRONG, "all wrong")),
        "groups",
    ),
    Panel("reflection", "reflection rate (responses with a self-check)", ((M.REFLECTION_RATE, "reflection rate"),)),
    Panel(
        "rethink",
        "Forced Rethinking per step",
        ((M.RETHINK_ATTEMPTS, "attempts"), (M.RETHINK_ACCEPTED, "kept")),
        "rethink",
    ),
    Panel("length", "response length (tokens)", ((M.LENGTH_MEAN, "mean"), (M.LENGTH_MAX, "max"))),
    Panel("entropy", "policy entropy (nats/token)", ((M.ENTROPY, "entropy"),)),
    Panel("kl", "KL to the reference policy", ((M.LOSS_KL, "KL"),)),
    Panel("clip", "clipped-token fraction", ((M.CLIP_FRAC_LOW, "low"), (M.CLIP_FRAC_HIGH, "high"))),
    Panel(
        "time",
        "step time by phase (s)",
        ((M.TIME_ROLLOUT, "rollout"), (M.TIME_RETHINK, "rethink"), (M.TIME_UPDATE, "update")),
        "time",
    ),
)


def _get(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def ratio_can_move(cfg: Mapping[str, Any]) -> bool:
    """Whether the importance ratio can leave 1: replayed samples (released SSR) or more
    than one optimizer step per rollout batch (the later ones train on stale log-probs)."""
    if _get(cfg, "ssr.mode") == "released":
        return True
    mini = _get(cfg, "optim.mini_batch_size")
    if mini is None:
        return False
    n = int(_get(cfg, "rollout.queries_per_step", 0) or 0) * int(_get(cfg, "rollout.group_size", 0) or 0)
    batch = _get(cfg, "ssr.batch_size") or n
    if _get(cfg, "ssr.mode") == "off":
        batch = n
    return int(mini) < int(batch)


def movable(panel: Panel, cfg: Mapping[str, Any]) -> bool:
    """Whether ``panel``'s quantity can change during a run with config ``cfg`` (the
    saved ``config.yaml`` as a mapping; missing keys count as the defaults')."""
    if panel.key == "eval":
        return int(_get(cfg, "eval_every", 1) or 0) > 0
    if panel.key == "rethink":
        return bool(_get(cfg, "rethink.enabled", True))
    if panel.key == "kl":
        return float(_get(cfg, "algo.kl_coef", 0.0) or 0.0) > 0
    if panel.key == "clip":
        return ratio_can_move(cfg)
    return True


def step_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The per-step training rows (not the evaluation-only rows nor the step-0 header)."""
    return [r for r in rows if r.get(M.STEP, 0) > 0 and (M.REWARD_MEAN in r or M.UPDATE_SKIPPED in r)]


def eval_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per evaluation (those with a confidence interval), by step."""
    by_step = {r[M.STEP]: r for r in rows if r.get(M.EVAL_ACCURACY) is not None and M.EVAL_CI_LOW in r}
    return [by_step[s] for s in sorted(by_step)]


def series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float | None]]:
    xs, ys = [], []
    for r in rows:
        xs.append(int(r[M.STEP]))
        v = r.get(key)
        ys.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None)
    return xs, ys


def has_data(panel: Panel, rows: Sequence[Mapping[str, Any]]) -> bool:
    if panel.kind == "eval":
        return bool(eval_rows(rows))
    return any(r.get(k) is not None for r in step_rows(rows) for k, _ in panel.series)


def panels_for(cfg: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[Panel]:
    """The panels a run shows: movable in its configuration and with data logged."""
    return [p for p in PANELS if movable(p, cfg) and has_data(p, rows)]


# -- drawing -------------------------------------------------------------------------------


def _fill(ys: Sequence[float | None]) -> list[float]:
    """None -> 0 for stacked areas (a step without rethinking spent 0 s in it)."""
    return [0.0 if y is None else y for y in ys]


def _draw(ax, panel: Panel, rows: Sequence[Mapping[str, Any]]) -> None:
    steps = step_rows(rows)
    if panel.kind == "eval":
        ev = eval_rows(rows)
        xs = [int(r[M.STEP]) for r in ev]
        ys = [float(r[M.EVAL_ACCURACY]) for r in ev]
        lo = [float(r.get(M.EVAL_CI_LOW, y)) for r, y in zip(ev, ys)]
        hi = [float(r.get(M.EVAL_CI_HIGH, y)) for r, y in zip(ev, ys)]
        ax.fill_between(xs, lo, hi, color=COLORS["a"], alpha=0.18, linewidth=0, label="95% CI")
        ax.errorbar(
            xs,
            ys,
            yerr=[[y - a for y, a in zip(ys, lo)], [b - y for y, b in zip(ys, hi)]],
            marker="o",
            color=COLORS["a"],
            capsize=3,
            label="accuracy",
        )
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
        return
    xs = [int(r[M.STEP]) for r in steps]
    w = smoothing_weight(len(xs))
    if panel.kind == "groups":
        _, ac = series(steps, M.ALL_CORRECT)
        _, aw = series(steps, M.ALL_WRONG)
        ac_s, aw_s = _fill(smooth(ac, w)), _fill(smooth(aw, w))
        mixed = [max(0.0, 1.0 - a - b) for a, b in zip(ac_s, aw_s)]
        ax.stackplot(
            xs,
            aw_s,
            mixed,
            ac_s,
            colors=[COLORS["wrong"], COLORS["mixed"], COLORS["correct"]],
            labels=["all wrong", "mixed", "all correct"],
            alpha=0.85,
        )
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of groups")
        return
    if panel.kind == "time":
        parts = [(label, _fill(smooth(series(steps, k)[1], w))) for k, label in panel.series]
        parts = [(label, ys) for label, ys in parts if any(ys)]
        total = _fill(smooth(series(steps, M.TIME_STEP)[1], w))
        other = [max(0.0, t - sum(ys[i] for _, ys in parts)) for i, t in enumerate(total)]
        parts.append(("other", other))
        by_label = {"rollout": COLORS["a"], "rethink": COLORS["d"], "update": COLORS["b"], "other": COLORS["grey"]}
        colors = [by_label[label] for label, _ in parts]
        ax.stackplot(xs, *[ys for _, ys in parts], labels=[label for label, _ in parts], colors=colors, alpha=0.85)
        _, raw_total = series(steps, M.TIME_STEP)
        ax.plot(xs, raw_total, color="black", alpha=0.2, linewidth=0.8, label="step (raw)")
        return
    for (key, label), color in zip(panel.series, (COLORS["a"], COLORS["b"], COLORS["c"])):
        _, ys = series(steps, key)
        if all(y is None for y in ys):
            continue
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        ax.plot(*zip(*pts), color=color, alpha=0.25, linewidth=0.8)
        sm = [(x, y) for x, y in zip(xs, smooth(ys, w)) if y is not None]
        ax.plot(*zip(*sm), color=color, linewidth=1.8, label=label)


def figure_png(
    cfg: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], *, columns: int = 3, dpi: int = 80
) -> bytes | None:
    """The run's panels as one PNG (None when there is nothing to draw yet)."""
    panels = panels_for(cfg, rows)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(5.2 * columns, 3.3 * n_rows), squeeze=False)
    w = smoothing_weight(len(step_rows(rows)))
    last_step = max((int(r.get(M.STEP, 0)) for r in rows), default=0)
    from matplotlib.ticker import MaxNLocator

    for ax, panel in zip(axes.flat, panels):
        _draw(ax, panel, rows)
        if last_step > 0:  # one step axis for every panel (an early run's single evaluation included)
            pad = max(0.5, 0.02 * last_step)
            ax.set_xlim(-pad, last_step + pad)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if len(labels) > 1:
            ax.legend(fontsize=7, loc="best", framealpha=0.7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    note = (
        f"smoothed: exponential moving average, weight {w:.2f} (raw values faint)"
        if w > 0
        else "raw values (too few steps to smooth)"
    )
    fig.text(0.995, 0.003, note, ha="right", va="bottom", fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.015, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def write_png(cfg: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], out: str | Path) -> Path | None:
    data = figure_png(cfg, rows, dpi=90)
    if data is None:
        return None
    out = Path(out)
    out.write_bytes(data)
    return out
