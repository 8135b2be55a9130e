"""Comparing training runs the way a reviewer asks: paired differences with bootstrap
intervals, the budget needed to reach a reference accuracy, and the area under a curve.

Runs are *paired* when they share the seed (data order, initial sampling state) and are
judged on the same test items: the difference of two variants is then measured item by
item and seed by seed, which removes the spread that items and seeds share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 10_000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """The mean of ``a - b`` with a percentile bootstrap interval.

    ``a`` and ``b`` are ``[seeds, items]`` arrays of per-item scores (1/0 correctness) of
    two variants, row ``s`` of both from training seed ``s`` and column ``i`` the same test
    item. Each resample draws seeds and items with replacement (the same draw for both
    variants, so the pairing is kept), which accounts for the spread over seeds as well as
    over items. Returns ``(difference, low, high)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.size == 0:
        raise ValueError(f"need two equal, non-empty [seeds, items] arrays, got {a.shape} and {b.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be within (0, 1), got {level}")
    d = a - b
    n_seeds, n_items = d.shape
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (n_seeds * n_items))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        s = rng.integers(0, n_seeds, size=(k, n_seeds))
        i = rng.integers(0, n_items, size=(k, n_items))
        means[start : start + k] = d[s[:, :, None], i[:, None, :]].mean(axis=(1, 2))
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)


def budget_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """The first budget (samples, steps, ...) at which a ``(budget, accuracy)`` curve
    reaches ``target``; the starting point (budget 0) does not count. None if never."""
    return next((x for x, y in sorted(curve) if x > 0 and y >= target), None)


def area_under_curve(curve: Sequence[tuple[float, float]]) -> float:
    """The trapezoidal area under a ``(budget, accuracy)`` curve divided by its budget
    range: the accuracy averaged over the run (one number for "learns faster")."""
    pts = sorted(curve)
    if len(pts) < 2:
        raise ValueError("a curve needs at least two points")
    x = np.array([p[0] for p in pts], dtype=np.float64)
    y = np.array([p[1] for p in pts], dtype=np.float64)
    if x[-1] == x[0]:
        raise ValueError("a curve needs two different budgets")
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / (x[-1] - x[0]))
