"""Paired comparisons of runs (rethinker.report.compare): bootstrap intervals that keep
the pairing, budget to reach a target, area under a curve."""

from __future__ import annotations

import numpy as np
import pytest

from rethinker.report.compare import area_under_curve, budget_to_reach, paired_bootstrap


def test_paired_bootstrap_recovers_a_known_difference():
    rng = np.random.default_rng(0)
    b = (rng.random((5, 2000)) < 0.6).astype(int)
    a = b.copy()
    flip = rng.random((5, 2000)) < 0.05  # a is right on 5% more items, paired with b
    a[flip & (b == 0)] = 1
    d, lo, hi = paired_bootstrap(a, b, n_boot=2000)
    assert d == pytest.approx((a - b).mean())
    assert 0 < lo < d < hi and hi - lo < 0.02  # pairing: the shared item spread cancels


def test_pairing_narrows_the_interval_against_unpaired_data():
    rng = np.random.default_rng(1)
    easy = rng.random(2000) < 0.6  # items both variants get right or wrong alike
    a = np.tile(easy, (5, 1)).astype(int)
    b = a.copy()
    b[:, :40] = 1 - b[:, :40]
    _, lo, hi = paired_bootstrap(a, b, n_boot=2000)
    _, lo_u, hi_u = paired_bootstrap(a, b[:, rng.permutation(2000)], n_boot=2000)
    assert hi - lo < (hi_u - lo_u) / 3


def test_seed_spread_widens_the_interval():
    """A difference that holds on one seed and reverses on another is not significant,
    however many items there are."""
    b = np.zeros((4, 1000), dtype=int)
    a = np.zeros((4, 1000), dtype=int)
    a[0, :300] = 1
    a[1, :300] = 1
    b[2, :250] = 1
    b[3, :250] = 1
    d, lo, hi = paired_bootstrap(a, b, n_boot=3000)
    assert d == pytest.approx(0.025)
    assert lo < 0 < hi


def test_identical_runs_differ_by_exactly_zero():
    a = np.ones((3, 10), dtype=int)
    assert paired_bootstrap(a, a, n_boot=100) == (0.0, 0.0, 0.0)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="seeds, items"):
        paired_bootstrap(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="seeds, items"):
        paired_bootstrap(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(np.ones((2, 3)), np.ones((2, 3)), level=1.5)


def test_budget_to_reach_and_area():
    curve = [(0, 0.5), (1000, 0.55), (2000, 0.62), (3000, 0.6)]
    assert budget_to_reach(curve, 0.6) == 2000
    assert budget_to_reach(curve, 0.5) == 1000  # the start does not count
    assert budget_to_reach(curve, 0.7) is None
    assert area_under_curve([(0, 0.0), (10, 1.0)]) == pytest.approx(0.5)
    assert area_under_curve(curve) == pytest.approx((0.525 + 0.585 + 0.61) / 3)
    with pytest.raises(ValueError):
        area_under_curve([(0, 0.5)])
