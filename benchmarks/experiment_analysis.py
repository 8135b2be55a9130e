"""The pre-registered experiments' analyses (``docs/experiments.md``), as pure functions of
the runs' summaries (``toy_ablation.summarize``): each turns the rule written down before
the runs into a table and a verdict, so that nothing is decided by hand.

- ``rethink_at_test_table``: E1's direct measure of self-correction (greedy answers before
  and after a forced trigger, per variant and for the base policy).
- ``e1_decision``: which variants help against GRPO, which one the rule would choose (dev
  decides), and what round 2 runs.
- ``e2_verdict`` and ``e2_mechanism``: SSR's effect against the "no effect worth having"
  band, and the Adam hypothesis's two predictions (Spearman correlations over steps, the
  update-norm ratio).
- ``saturated_verdict``: E2's continuation runs, inside or outside the saturated regime.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rethinker import metric_names as M  # noqa: E402
from rethinker.report.compare import paired_bootstrap  # noqa: E402

REFERENCE = "GRPO"
METHOD = "GRPO+SSR+Rethink"
#: E1's changed variants, the only candidates of round 2
E1_CHANGES = ("Released recipe", "Mask wrong first pass", "Append", "Verify only")
#: round 2: a change qualifies with a mean final dev accuracy this far above the method's
ROUND2_MARGIN = 0.01
#: E2: SSR "has no effect worth having" when its interval lies within +-this (accuracy)
NO_EFFECT_BAND = 0.015
#: E2's hypothesis: |Spearman| of the update norm with the zero-advantage share at most this,
#: the gradient norm's below minus this, and SSR's update norm within UPDATE_RATIO_TOL of GRPO's
RHO_BAND = 0.3
UPDATE_RATIO_TOL = 0.10
#: E2's saturated regime: the GRPO continuation's second-half zero-advantage share (mean over
#: seeds) at least this, as in the paper's 72B run
SATURATED_SHARE = 0.8


def _interval(d: float, lo: float, hi: float) -> str:
    return f"{d * 100:+.1f} [{lo * 100:+.1f}, {hi * 100:+.1f}]"


def _matrix(runs: list[dict], key: str, ids: list[str]) -> np.ndarray:
    return np.array([[r[key][i] for i in ids] for r in runs], dtype=np.float64)


def final_dev(run: dict) -> float:
    return float(run["dev"][-1][1])


def mean_final_dev(runs: list[dict]) -> float:
    return float(np.mean([final_dev(r) for r in runs]))


# --------------------------------------------------------------------------- E1


def rethink_at_test_table(results: dict[str, list[dict]]) -> str:
    """Greedy test accuracy before and after the forced trigger, per variant (mean over
    seeds) and for the base policy; the after-minus-before difference with its paired
    interval, and that difference minus the base policy's. A policy has learned to correct
    itself when both intervals lie above zero."""
    ref = results[REFERENCE]
    if "test_after" not in ref[0] or "base_after" not in ref[0]:
        return "(no test-time rethinking in these runs: --rethink-at-test was off)"
    ids = sorted(ref[0]["test_correct"])
    base_before = np.array([ref[0]["base_correct"][i] for i in ids], dtype=np.float64)[None, :]
    base_after = np.array([ref[0]["base_after"][i] for i in ids], dtype=np.float64)[None, :]
    lines = [
        "| policy | test acc before % | after % | wrong -> right | right -> wrong | after - before, points "
        "[95% CI] | minus the base policy's [95% CI] | learned to correct itself |",
        "|---|---|---|---|---|---|---|---|",
    ]
    d, lo, hi = paired_bootstrap(base_after, base_before)
    lines.append(
        f"| base policy | {base_before.mean() * 100:.1f} | {base_after.mean() * 100:.1f} | "
        f"{int(((base_after - base_before) > 0).sum())} | {int(((base_after - base_before) < 0).sum())} | "
        f"{_interval(d, lo, hi)} | - | - |"
    )
    for name, runs in results.items():
        before, after = _matrix(runs, "test_correct", ids), _matrix(runs, "test_after", ids)
        change = after - before
        d, lo, hi = paired_bootstrap(after, before)
        dd, dlo, dhi = paired_bootstrap(change, np.repeat(base_after - base_before, len(runs), axis=0))
        learned = "yes" if lo > 0 and dlo > 0 else "no"
        lines.append(
            f"| {name} | {before.mean() * 100:.1f} | {after.mean() * 100:.1f} | "
            f"{(change > 0).sum(1).mean():.1f} | {(change < 0).sum(1).mean():.1f} | {_interval(d, lo, hi)} | "
            f"{_interval(dd, dlo, dhi)} | {learned} |"
        )
    return (
        "test-time rethinking (greedy answer, then the trigger and a greedy continuation; counts are per "
        "run, mean over seeds)\n\n" + "\n".join(lines)
    )


def _versus_reference(results: dict[str, list[dict]]) -> dict[str, tuple[float, float, float]]:
    ids = sorted(results[REFERENCE][0]["test_correct"])
    ref = _matrix(results[REFERENCE], "test_correct", ids)
    return {
        name: paired_bootstrap(_matrix(runs, "test_correct", ids), ref)
        for name, runs in results.items()
        if name != REFERENCE
    }


def e1_decision(results: dict[str, list[dict]]) -> str:
    """E1's decision rule applied: helps = the test difference's interval above zero;
    among helpers the highest mean final dev accuracy is chosen; round 2 from the dev rule."""
    diffs = _versus_reference(results)
    helps = [n for n, (_, lo, _) in diffs.items() if lo > 0]
    lines = ["decision (the rule of docs/experiments.md, E1)", ""]
    for name, (d, lo, hi) in diffs.items():
        verdict = "helps" if lo > 0 else ("hurts" if hi < 0 else "no detectable difference")
        dev = mean_final_dev(results[name]) * 100
        lines.append(f"- {name}: test {_interval(d, lo, hi)} points vs GRPO, final dev {dev:.1f}% -> {verdict}")
    if helps:
        chosen = max(helps, key=lambda n: mean_final_dev(results[n]))
        lines.append(f"- chosen (highest mean final dev among those that help): **{chosen}**")
    else:
        lines.append("- no variant helps: Forced Rethinking stays off in the toy preset")
    lines.append(f"- round 2: {round2(results)}")
    return "\n".join(lines)


def round2_parts(results: dict[str, list[dict]]) -> tuple[tuple[str, ...], str]:
    """Round 2 by the fixed rule (dev accuracy only): the round-1 variants whose flags it
    combines (none, or two), and why."""
    if METHOD not in results:
        return (), f"not applicable ({METHOD} was not run)"
    bar = mean_final_dev(results[METHOD]) + ROUND2_MARGIN
    qualify = sorted(
        (n for n in E1_CHANGES if n in results and mean_final_dev(results[n]) >= bar),
        key=lambda n: -mean_final_dev(results[n]),
    )
    if not qualify:
        return (), f"no change reaches {bar * 100:.1f}% mean final dev, {METHOD}'s + 1.0"
    if len(qualify) >= 2:
        return (qualify[0], qualify[1]), f"the two best of {', '.join(qualify)}"
    if qualify[0] == "Released recipe":
        return (), "only the released recipe qualifies; the rule combines it with a loss change only"
    return (qualify[0], "Released recipe"), "the only change that qualifies, with the released recipe's flags"


def round2(results: dict[str, list[dict]]) -> str:
    """What round 2 runs by the fixed rule, in words."""
    parts, why = round2_parts(results)
    if not parts:
        return f"nothing ({why})"
    if parts[1] == "Released recipe":
        return f"{parts[0]} + the released recipe's flags (the only change that qualifies)"
    return f"{parts[0]} + {parts[1]} ({why})"


def round2_name(parts: tuple[str, ...]) -> str:
    """The round-2 variant's name: its parts joined."""
    return " + ".join(parts)


# --------------------------------------------------------------------------- E2


def e2_verdict(results: dict[str, list[dict]], name: str = "GRPO+SSR") -> str:
    d, lo, hi = _versus_reference(results)[name]
    if lo > 0:
        verdict = "SSR helps"
    elif -NO_EFFECT_BAND <= lo and hi <= NO_EFFECT_BAND:
        verdict = f"no effect worth having (the interval lies within +-{NO_EFFECT_BAND * 100:.1f} points)"
    elif hi < 0:  # the rule's third outcome, named by where the interval lies
        verdict = "SSR is worse (the interval lies below zero; by the rule neither 'helps' nor 'no effect')"
    else:
        verdict = "inconclusive (the interval is neither above zero nor within the band)"
    return f"{name} vs GRPO on test: {_interval(d, lo, hi)} points -> {verdict}"


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank)."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        for value in np.unique(v):  # average the ranks of ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"need two equal series of >= 3 points, got {len(x)} and {len(y)}")
    rx, ry = ranks(x), ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def _seed_mean(runs: list[dict], key: str) -> np.ndarray:
    n = min(len(r["curves"].get(key, ())) for r in runs)
    if n == 0:
        return np.full(0, np.nan)
    vals = np.array([[np.nan if v is None else v for _, v in r["curves"][key][:n]] for r in runs], dtype=np.float64)
    with warnings.catch_warnings():  # a step no seed updated on (SSR with nothing to draw) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(vals, axis=0)


def _mean_ratio(runs: list[dict], reference: list[dict], key: str) -> float:
    """The mean of ``key``'s seed-averaged series in ``runs`` over that in ``reference``."""
    return float(np.nanmean(_seed_mean(runs, key)) / np.nanmean(_seed_mean(reference, key)))


def e2_mechanism(results: dict[str, list[dict]], name: str = "GRPO+SSR") -> str:
    """The Adam hypothesis's predictions: in GRPO, Spearman(update norm, zero-adv share)
    within +-0.3 while Spearman(grad norm, zero-adv share) < -0.3 (seed-averaged series over
    steps); SSR's mean update norm within 10% of GRPO's. Either failing rejects it."""
    grpo = results[REFERENCE]
    zero = _seed_mean(grpo, M.ZERO_ADV_BEFORE_RETHINK)
    upd, grad = _seed_mean(grpo, M.PARAM_DELTA_NORM), _seed_mean(grpo, M.GRAD_NORM)
    n = min(len(zero), len(upd), len(grad))
    zero, upd, grad = zero[:n], upd[:n], grad[:n]
    ok = ~(np.isnan(zero) | np.isnan(upd) | np.isnan(grad))
    if ok.sum() < 3:
        if np.isnan(upd).all():
            return "(no update norms in these runs: --optim.log-update-norm was off)"
        return f"(update norms on {int(ok.sum())} steps only: too few for a rank correlation)"
    rho_upd, rho_grad = spearman(upd[ok], zero[ok]), spearman(grad[ok], zero[ok])
    ratio = _mean_ratio(results[name], grpo, M.PARAM_DELTA_NORM)
    first = -RHO_BAND <= rho_upd <= RHO_BAND and rho_grad < -RHO_BAND
    second = abs(ratio - 1) <= UPDATE_RATIO_TOL
    verdict = "holds" if first and second else "rejected"
    return "\n".join(
        [
            "mechanism (the Adam hypothesis of docs/experiments.md, E2)",
            "",
            f"- GRPO, Spearman over {int(ok.sum())} steps (seed-averaged): update norm vs zero-advantage share "
            f"{rho_upd:+.2f} (predicted within +-{RHO_BAND}), gradient norm vs zero-advantage share "
            f"{rho_grad:+.2f} (predicted below -{RHO_BAND}) -> {'as predicted' if first else 'not as predicted'}",
            f"- {name}'s mean update norm / GRPO's: {ratio:.3f} (predicted within {UPDATE_RATIO_TOL:.0%} of 1)"
            f" -> {'as predicted' if second else 'not as predicted'}",
            f"- the hypothesis {verdict}",
        ]
    )


#: E2 on 24 seeds: the two observations from seeds 0-9, re-checked on the held-out seeds
WARMUP_STEPS = 10  # the toy preset's warm-up; the learning-rate-normalised series starts after it
GRAD_RATIO_MIN = 1.5


def e2_replication(results: dict[str, list[dict]], name: str = "GRPO+SSR") -> str:
    """The exploratory observations of seeds 0-9 (docs/experiments.md, "E2 on 24 seeds"),
    re-checked on other seeds: (a) in GRPO, Spearman(update norm / learning rate,
    zero-advantage share) below -RHO_BAND over the steps after warm-up (seed-averaged
    series): the update shrinks with vanishing advantages; (b) SSR's mean gradient norm at
    least GRAD_RATIO_MIN x GRPO's while its mean update norm is within UPDATE_RATIO_TOL: Adam
    undoes SSR's larger gradient."""
    grpo, other = results[REFERENCE], results[name]
    zero, upd, lr = (_seed_mean(grpo, k) for k in (M.ZERO_ADV_BEFORE_RETHINK, M.PARAM_DELTA_NORM, M.LR))
    n = min(len(zero), len(upd), len(lr))
    if n == 0 or np.isnan(lr[:n]).all() or np.isnan(upd[:n]).all():
        return "(these runs' summaries lack the learning rate or the update norm: nothing to re-check)"
    zero, upd, lr = zero[WARMUP_STEPS:n], upd[WARMUP_STEPS:n], lr[WARMUP_STEPS:n]
    ok = ~(np.isnan(zero) | np.isnan(upd) | np.isnan(lr)) & (lr > 0)
    if ok.sum() < 3:
        return f"(update norms on {int(ok.sum())} steps after warm-up only: too few for a rank correlation)"
    rho = spearman(upd[ok] / lr[ok], zero[ok])

    grad_ratio, upd_ratio = (_mean_ratio(other, grpo, k) for k in (M.GRAD_NORM, M.PARAM_DELTA_NORM))
    a = rho < -RHO_BAND
    b = grad_ratio >= GRAD_RATIO_MIN and abs(upd_ratio - 1) <= UPDATE_RATIO_TOL
    seeds = len(grpo)
    return "\n".join(
        [
            f"re-check on {seeds} held-out seed(s) of the observations made on seeds 0-9",
            "",
            f"- (a) GRPO, Spearman over {int(ok.sum())} steps after warm-up (seed-averaged):"
            f" update norm / learning rate vs zero-advantage share {rho:+.2f}"
            f" (observed -0.54; replicated if below -{RHO_BAND})"
            f" -> {'replicated' if a else 'not replicated'}",
            f"- (b) {name} / GRPO: mean gradient norm {grad_ratio:.2f}x (observed 6.5x; at least {GRAD_RATIO_MIN}x),"
            f" mean update norm {upd_ratio:.3f} (observed 1.03; within {UPDATE_RATIO_TOL:.0%} of 1)"
            f" -> {'replicated' if b else 'not replicated'}",
        ]
    )


def saturated_verdict(results: dict[str, list[dict]], name: str = "GRPO+SSR") -> str:
    """E2's saturated comparison: is the GRPO continuation inside the regime (second-half
    zero-advantage share, mean over seeds, >= SATURATED_SHARE)? Outside it, SSR's difference
    is reported and is not evidence about the regime."""
    shares = [r["zero_adv_half"] for r in results[REFERENCE]]
    share = float(np.mean(shares))
    each = ", ".join(f"{s:.2f}" for s in shares)
    if share >= SATURATED_SHARE:
        regime = f"inside the saturated regime (>= {SATURATED_SHARE})"
    else:
        regime = f"outside the saturated regime (< {SATURATED_SHARE}): the line below is not evidence about it"
    return (
        f"saturated regime: GRPO continuation's second-half zero-advantage share {share:.2f} (per seed: {each})"
        f" -> {regime}\n\n{e2_verdict(results, name)}"
    )
