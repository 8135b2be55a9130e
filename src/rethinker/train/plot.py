"""The curves of a run's ``metrics.jsonl`` as a PNG (``rethinker plot RUN_DIR``).

The figure is ``rethinker.report.curves``' (smoothed with the raw values faint, only the
panels that can move in the run's configuration, the group shares stacked): the same
one ``rethinker report`` puts in ``report.html``."""

from __future__ import annotations

from pathlib import Path

from ..report.curves import write_png
from ..report.run_report import read_config
from .metrics import read_metrics


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "curves.png"
    if write_png(read_config(run_dir)[0], read_metrics(run_dir), out) is None:
        raise ValueError(f"{run_dir}: nothing to plot yet")
    return out
