"""Metrics: one JSON line per training step in ``metrics.jsonl``, the console, and the
optional tensorboard / wandb sinks (``report_to``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import metric_names as M
from ..algo.advantages import group_stats

if TYPE_CHECKING:
    from ..algo.ssr import Selection
    from .experience import Experience

from ..files import filter_jsonl, read_jsonl


def _clean(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class MetricsLogger:
    def __init__(
        self,
        run_dir: str | Path,
        report_to: list[str] | None = None,
        config: dict | None = None,
        resume_step: int | None = None,
    ):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        self._fh = open(self.path, "a", encoding="utf-8")
        self.sinks: list[Any] = []
        self._sent: dict[str, Any] = {}  # what went to the sinks at the current step
        self._sent_step: Any = None
        for name in report_to or []:
            if name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                # a resumed run appends a new event file: purge_step hides the points the
                # killed attempt logged after its checkpoint (-1: a restart from step 0)
                purge = None if resume_step is None else max(resume_step + 1, 0)
                writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge)
                self.sinks.append(("tensorboard", writer))
            elif name == "wandb":
                import wandb

                self.sinks.append(("wandb", wandb.init(dir=str(run_dir), config=config, resume="allow")))
            elif name not in ("none", ""):
                raise ValueError(f"report_to: unknown sink {name!r} (tensorboard, wandb)")

    def _truncate_after(self, step: int) -> None:
        """Drop lines logged after ``step`` by a run that was killed before its next checkpoint."""
        filter_jsonl(self.path, lambda row: row.get("step", 0) <= step)  # a torn last line goes too

    def log(self, row: dict[str, Any]) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        self._fh.write(json.dumps(row, sort_keys=False) + "\n")
        self._fh.flush()
        if self.sinks:
            self._send(row)

    def _send(self, row: dict[str, Any]) -> None:
        """The numbers of ``row`` to the sinks; a value a row of the same step already sent
        (the step row repeats the evaluation's accuracy) is not sent twice."""
        step = row.get("step", 0)
        if step != self._sent_step:
            self._sent, self._sent_step = {}, step
        nums = {
            k: v
            for k, v in row.items()
            if isinstance(v, (int, float)) and k != "step" and (k not in self._sent or self._sent[k] != v)
        }
        self._sent.update(nums)
        if not nums:
            return
        for kind, sink in self.sinks:
            if kind == "tensorboard":
                for k, v in nums.items():
                    sink.add_scalar(k, v, step)
            else:
                sink.log(nums, step=step)

    def close(self) -> None:
        self._fh.close()
        for kind, sink in self.sinks:
            if kind == "tensorboard":
                sink.close()
            else:
                sink.finish()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(run_dir) / "metrics.jsonl", torn="warn")


def step_row(
    step: int,
    exp: Experience,
    upd: dict[str, Any],
    selection: Selection | None,
    *,
    group_size: int,
    correct_reward: float,
    lr: float,
) -> dict[str, Any]:
    """One ``metrics.jsonl`` line of a training step: collection, update, SSR and group
    statistics (no SSR statistics when the step had nothing to select from, no group
    statistics when it generated nothing)."""
    row: dict[str, Any] = {M.STEP: step, **exp.metrics, **upd}
    if selection is not None:
        row.update(selection.metrics)
    if exp.generated:
        g = group_stats(torch.tensor(exp.generated, dtype=torch.float64), group_size, correct_reward)
        row.update(
            {M.ALL_CORRECT: g.all_correct_share, M.ALL_WRONG: g.all_wrong_share, M.ZERO_ADVANTAGE: g.zero_adv_share}
        )
    row.update({M.SKIPPED_BAD: exp.skipped, M.LR: lr})
    return row


def console_line(row: dict[str, Any]) -> str:
    keys = [
        (M.REWARD_MEAN, "reward"),
        (M.ACCURACY, "acc"),
        (M.EFFECTIVE_BEFORE_SSR, "eff"),
        (M.REFLECTION_RATE, "refl"),
        (M.RETHINK_ACCEPTED, "rethink"),
        (M.LOSS_POLICY, "loss"),
        (M.TIME_STEP, "s/step"),
        (M.EVAL_ACCURACY, "EVAL"),
    ]
    parts = []
    for k, short in keys:
        v = row.get(k)
        if v is not None:
            parts.append(f"{short}={v:.3f}" if isinstance(v, float) else f"{short}={v}")
    return " ".join(parts)
