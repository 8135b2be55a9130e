"""The pre-registered experiments' rules (benchmarks/experiment_analysis.py) on synthetic
summaries whose answers are known: who helps, what round 2 runs, whether a policy learned
to correct itself, and the Adam hypothesis's two predictions; the runner archives each
run's summary and an interim analysis uses only complete seeds."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rethinker import metric_names as M

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import experiment_analysis as ea  # noqa: E402

_spec = importlib.util.spec_from_file_location("toy_ablation", ROOT / "benchmarks" / "toy_ablation.py")
ta = importlib.util.module_from_spec(_spec)
sys.modules["toy_ablation"] = ta
_spec.loader.exec_module(ta)

N = 200
IDS = [f"t{i:03d}" for i in range(N)]


def _summary(n_right: int, dev: float, n_after: int | None = None, seed: int = 0, curves=None) -> dict:
    """A run: the first ``n_right`` (shifted by the seed) test puzzles right; after the
    forced trigger the first ``n_after``; the base policy 100 right, 90 after."""
    right = {i: int((k + seed) % N < n_right) for k, i in enumerate(IDS)}
    after = {i: int((k + seed) % N < (n_after if n_after is not None else n_right)) for k, i in enumerate(IDS)}
    return {
        "test_correct": right,
        "test_after": after,
        "base_correct": {i: int(k < 100) for k, i in enumerate(IDS)},
        "base_after": {i: int(k < 90) for k, i in enumerate(IDS)},
        "dev": [(0, 0.5), (100, dev)],
        "curves": curves or {},
    }


def _results(spec: dict[str, tuple[int, float]], seeds: int = 3, after: dict[str, int] | None = None) -> dict:
    after = after or {}
    return {n: [_summary(r, d, after.get(n), s) for s in range(seeds)] for n, (r, d) in spec.items()}


def test_spearman_matches_known_values():
    x = np.arange(10.0)
    assert ea.spearman(x, x**3) == pytest.approx(1.0)
    assert ea.spearman(x, -x) == pytest.approx(-1.0)
    # ties get average ranks: ranks of y are [1.5, 1.5, 3, 4] -> Pearson of ranks
    assert ea.spearman(np.array([1, 2, 3, 4.0]), np.array([5, 5, 6, 7.0])) == pytest.approx(0.9486832980505138)
    with pytest.raises(ValueError, match=">= 3 points"):
        ea.spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0]))


def test_e1_decision_helps_hurts_and_round2():
    res = _results(
        {
            "GRPO": (120, 0.60),
            "GRPO+SSR+Rethink": (110, 0.55),
            "Released recipe": (120, 0.555),  # same test as GRPO; dev +0.5 over the method: not enough
            "Mask wrong first pass": (140, 0.58),  # +20 puzzles of 200 on every seed: helps
            "Append": (100, 0.57),  # hurts
            "Verify only": (141, 0.59),  # helps, best dev
        }
    )
    text = ea.e1_decision(res)
    line = {ln.split(":")[0][2:]: ln for ln in text.splitlines() if ln.startswith("- ")}
    assert line["Mask wrong first pass"].startswith("- Mask wrong first pass: test +10.0 [")
    assert line["Mask wrong first pass"].endswith("final dev 58.0% -> helps")
    assert line["Append"].startswith("- Append: test -10.0 [") and line["Append"].endswith("-> hurts")
    assert line["Released recipe"].startswith("- Released recipe: test +0.0 [")
    assert line["Released recipe"].endswith("-> no detectable difference")
    assert "chosen (highest mean final dev among those that help): **Verify only**" in text
    # round 2: dev >= 0.55 + 0.01: Mask (0.58), Append (0.57), Verify (0.59) qualify -> two best by dev
    assert (
        ea.round2(res) == "Verify only + Mask wrong first pass (the two best of Verify only, Mask wrong first "
        "pass, Append)"
    )
    one = _results({"GRPO": (120, 0.6), "GRPO+SSR+Rethink": (110, 0.55), "Append": (110, 0.561)})
    assert ea.round2(one) == "Append + the released recipe's flags (the only change that qualifies)"
    none = _results({"GRPO": (120, 0.6), "GRPO+SSR+Rethink": (110, 0.55), "Append": (110, 0.559)})
    assert ea.round2(none).startswith("nothing (no change reaches 56.0% mean final dev")
    assert ea.round2_parts(res)[0] == ("Verify only", "Mask wrong first pass")
    assert ea.round2_parts(one)[0] == ("Append", "Released recipe") and ea.round2_parts(none)[0] == ()
    alone = _results({"GRPO": (120, 0.6), "GRPO+SSR+Rethink": (110, 0.55), "Released recipe": (110, 0.57)})
    assert ea.round2_parts(alone)[0] == () and "loss change only" in ea.round2(alone)
    assert "no variant helps" in ea.e1_decision(none)


def test_rethink_at_test_learned_to_correct_only_above_the_base_policy():
    # GRPO: 120 right before, 120 after (no change); the method: 110 -> 150 (+20 points)
    res = _results({"GRPO": (120, 0.6), "GRPO+SSR+Rethink": (110, 0.55)}, after={"GRPO+SSR+Rethink": 150})
    text = ea.rethink_at_test_table(res)
    base = next(line for line in text.splitlines() if line.startswith("| base policy |"))
    assert "| 50.0 | 45.0 | 0 | 10 | -5.0 [" in base
    method = next(line for line in text.splitlines() if line.startswith("| GRPO+SSR+Rethink |"))
    assert "| 55.0 | 75.0 | 40.0 | 0.0 | +20.0 [" in method and "| +25.0 [" in method and method.endswith("| yes |")
    grpo = next(line for line in text.splitlines() if line.startswith("| GRPO |"))
    assert "| +0.0 [+0.0, +0.0] | +5.0 [" in grpo and grpo.endswith("| no |")  # above the base, but no gain
    res["GRPO"][0].pop("test_after")
    res["GRPO"][0].pop("base_after")
    assert "--rethink-at-test was off" in ea.rethink_at_test_table(res)


def _curves(zero, grad, upd):
    steps = range(1, len(zero) + 1)
    return {
        M.ZERO_ADV_BEFORE_RETHINK: list(zip(steps, zero)),
        M.GRAD_NORM: list(zip(steps, grad)),
        M.PARAM_DELTA_NORM: list(zip(steps, upd)),
    }


def test_e2_mechanism_holds_and_is_rejected():
    rng = np.random.default_rng(0)
    zero = np.linspace(0.3, 0.8, 40)
    flat = 1.0 + 0.01 * rng.standard_normal(40)  # no trend: |rho| small
    grpo = [_summary(120, 0.6, curves=_curves(zero, 2.0 - 2 * zero, flat)) for _ in range(2)]
    ssr = [_summary(121, 0.6, curves=_curves(zero, 2.0 - 2 * zero, flat * 1.05)) for _ in range(2)]
    text = ea.e2_mechanism({"GRPO": grpo, "GRPO+SSR": ssr})
    assert "gradient norm vs zero-advantage share -1.00" in text and "1.050" in text
    assert text.endswith("the hypothesis holds")
    falling = [_summary(120, 0.6, curves=_curves(zero, 2.0 - 2 * zero, 2.0 - zero)) for _ in range(2)]
    text = ea.e2_mechanism({"GRPO": falling, "GRPO+SSR": ssr})
    assert "update norm vs zero-advantage share -1.00" in text and text.endswith("the hypothesis rejected")
    assert "log-update-norm was off" in ea.e2_mechanism({"GRPO": [_summary(1, 0.5)], "GRPO+SSR": [_summary(1, 0.5)]})
    short = [_summary(120, 0.6, curves=_curves(zero[:2], 2.0 - 2 * zero[:2], flat[:2]))]
    assert "on 2 steps only: too few" in ea.e2_mechanism({"GRPO": short, "GRPO+SSR": short})


#: 40 steps of a run whose zero-advantage share rises, with 10 warm-up steps then decay
ZERO = np.linspace(0.3, 0.8, 40)
LR = np.r_[np.linspace(1e-5, 1e-4, 10), np.linspace(1e-4, 1e-5, 30)]


def _lr_run(grad, upd, with_lr: bool = True) -> dict:
    lr = {M.LR: list(zip(range(1, 41), LR))} if with_lr else {}
    return _summary(120, 0.6, curves=_curves(ZERO, grad, upd) | lr)


def test_e2_replication_rechecks_both_observations():
    def runs(grad, upd):
        return [_lr_run(grad, upd) for _ in range(2)]

    shrinking = LR * (2.0 - 2 * ZERO)  # update / lr falls as the share rises
    ssr = runs(np.full(40, 3.0), shrinking * 1.05)
    text = ea.e2_replication({"GRPO": runs(np.ones(40), shrinking), "GRPO+SSR": ssr})
    assert "over 30 steps after warm-up" in text and "learning rate vs zero-advantage share -1.00" in text
    assert "3.00x" in text and "1.050" in text and text.count("-> replicated") == 2
    # the update norm tracks the learning rate alone (flat once divided by it), and SSR's
    # update is 30% larger: neither observation replicates
    noise = 1.0 + 0.01 * np.random.default_rng(0).standard_normal(40)
    text = ea.e2_replication({"GRPO": runs(np.ones(40), LR * noise), "GRPO+SSR": runs(np.full(40, 3.0), LR * 1.3)})
    assert text.count("-> not replicated") == 2 and "mean update norm 1.30" in text
    bare = [_summary(120, 0.6, curves=_curves(ZERO, np.ones(40), np.ones(40)))]  # archived before "lr" was kept
    assert "lack the learning rate" in ea.e2_replication({"GRPO": bare, "GRPO+SSR": bare})


def test_e2_24_rechecks_on_the_held_out_seeds_alone():
    """E2-24's analyses: E2's verdict and mechanism on every seed, the re-check on seeds >= 10
    only (the seeds 0-9 the observations came from would confirm themselves)."""
    shrink = LR * (2.0 - 2 * ZERO)
    seeds = [8, 9, 10, 11]  # 8 and 9 before the held-out range, archived without "lr"
    grad = 2.0 - 2 * ZERO
    grpo = [_lr_run(grad, shrink, with_lr=s >= 10) for s in seeds]
    ssr = [_lr_run(3 * grad, shrink, with_lr=s >= 10) for s in seeds]
    text = ta.analyses("E2-24", {"GRPO": grpo, "GRPO+SSR": ssr}, seeds)
    assert "GRPO+SSR vs GRPO on test: +0.0 [+0.0, +0.0]" in text and "the hypothesis" in text
    assert "re-check on 2 held-out seed(s)" in text and "gradient norm 3.00x" in text
    assert text.count("-> replicated") == 2
    assert "no held-out seed finished yet" in ta.analyses("E2-24", {"GRPO": grpo[:2], "GRPO+SSR": ssr[:2]}, seeds[:2])


def test_e2_verdict_bands():
    assert "SSR helps" in ea.e2_verdict(_results({"GRPO": (100, 0.5), "GRPO+SSR": (120, 0.5)}))
    same = ea.e2_verdict(_results({"GRPO": (100, 0.5), "GRPO+SSR": (100, 0.5)}, seeds=3))
    assert "+0.0 [+0.0, +0.0]" in same and "no effect worth having" in same
    worse = ea.e2_verdict(_results({"GRPO": (100, 0.5), "GRPO+SSR": (90, 0.5)}))
    assert "-5.0 [-8.0, -2.3]" in worse and "SSR is worse (the interval lies below zero" in worse
    spread = {"GRPO": [_summary(100, 0.5, seed=s) for s in range(3)]}
    spread["GRPO+SSR"] = [_summary(r, 0.5, seed=s) for s, r in enumerate((80, 110, 115))]
    wide = ea.e2_verdict(spread)  # -10, +5, +7.5 points: the interval spans zero and the band
    assert "inconclusive (the interval is neither above zero nor within the band)" in wide


def _fake_finished(d: Path, n_right: int, with_after: bool = True, dev: float = 0.6) -> None:
    d.mkdir(parents=True)
    rows = [{"step": 0, "eval/accuracy": 0.5, "eval/n": 10}, {"step": 0, "test/accuracy": 0.5}]
    rows += [{"step": s, M.REWARD_MEAN: 0.5, M.BUDGET_SAMPLES: 64 * s, M.ZERO_ADV_BEFORE_RETHINK: 0.5,
              "reflection_rate": 0.0} for s in (1, 2)]  # fmt: skip
    rows += [{"step": 2, "eval/accuracy": dev, "eval/n": 10}, {"step": 2, "test/accuracy": n_right / N}]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for step, right in ((0, 100), (2, n_right)):
        preds = [
            {"id": i, "category": "count", "correct": k < right}
            | ({"correct_after_rethink": k < right - 5} if with_after else {})
            for k, i in enumerate(IDS)
        ]
        (d / f"test-predictions-{step}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))


def test_archive_and_interim_analysis(tmp_path):
    out, archive = tmp_path / "runs", tmp_path / "archive"
    names = list(ta.EXPERIMENTS["E1"].variants)
    for name in names:
        _fake_finished(ta.run_dir_of(out, name, 0), 120)
    _fake_finished(ta.run_dir_of(out, "GRPO", 1), 120)  # seed 1: only GRPO so far
    summary = ta.summarize(ta.run_dir_of(out, "GRPO", 0))
    assert summary["test_after"]["t000"] == 1 and sum(summary["test_after"].values()) == 115
    assert sum(summary["base_correct"].values()) == 100 and sum(summary["base_after"].values()) == 95
    cmd = [sys.executable, str(ROOT / "benchmarks" / "toy_ablation.py"), "--experiment", "E1", "--seeds", "2"]
    cmd += ["--steps", "2", "--out", str(out), "--archive", str(archive), "--from-results"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "released-recipe-seed1" in res.stderr
    res = subprocess.run([*cmd, "--interim"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "INTERIM: 1 of 2 planned seeds finished; this table decides nothing." in res.stdout
    assert "decision" not in res.stdout and "1 paired seeds" in res.stdout
    assert sorted(p.name for p in archive.iterdir()) == sorted(
        [f"{ta.slug(n)}-seed0.json.gz" for n in names] + ["grpo-seed1.json.gz"]
    )
    for name in names:  # the archive alone is enough: the run folders may be gone
        (ta.run_dir_of(out, name, 0) / "metrics.jsonl").unlink()
    res = subprocess.run([*cmd[:5], "1", *cmd[6:]], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "INTERIM" not in res.stdout and "test-time rethinking" in res.stdout and "round 2:" in res.stdout


def test_saturated_verdict_says_when_the_regime_was_not_reached():
    res = _results({"GRPO": (120, 0.6), "GRPO+SSR": (121, 0.6)}, seeds=3)
    for run, share in zip(res["GRPO"], (0.85, 0.8, 0.78)):
        run["zero_adv_half"] = share
    text = ea.saturated_verdict(res)
    assert text.startswith("saturated regime: GRPO continuation's second-half zero-advantage share 0.81 (per seed: ")
    assert "0.85, 0.80, 0.78) -> inside the saturated regime (>= 0.8)" in text and "GRPO+SSR vs GRPO" in text
    res["GRPO"][0]["zero_adv_half"] = 0.6
    assert "-> outside the saturated regime (< 0.8): the line below is not evidence" in ea.saturated_verdict(res)


def test_round2_runs_the_combination_the_rule_picks(tmp_path):
    out, archive = tmp_path / "runs", tmp_path / "archive"
    rights = {"GRPO": 120, "GRPO+SSR+Rethink": 110, "Released recipe": 110}
    rights |= {"Mask wrong first pass": 130, "Append": 125, "Verify only": 110}
    for name, right in rights.items():
        _fake_finished(ta.run_dir_of(out, name, 0), right, dev=0.5 + (right - 110) / 1000)
    with pytest.raises(SystemExit, match="round 1 is not finished: .*grpo-seed1"):
        ta._round2(ta.EXPERIMENTS["E1"].variants, out, archive, [0, 1], _exit)
    variants = ta._round2(ta.EXPERIMENTS["E1"].variants, out, archive, [0], _exit)
    # dev: mask 0.52, append 0.515 are >= the method's 0.5 + 0.01; the two best are combined
    name = "Mask wrong first pass + Append"
    assert list(variants)[-1] == name and len(variants) == 7
    assert variants[name] == [
        *ta._SSR_RETHINK,
        "--rethink.first-pass-loss",
        "mask-wrong",
        "--rethink.placement",
        "append",
    ]
    cmd = [sys.executable, str(ROOT / "benchmarks" / "toy_ablation.py"), "--experiment", "E1", "--seeds", "1"]
    cmd += ["--steps", "2", "--out", str(out), "--archive", str(archive), "--round2", "--from-results"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "mask-wrong-first-pass---append-seed0" in res.stderr
    _fake_finished(ta.run_dir_of(out, name, 0), 140)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"- {name}: test +10.0 [" in res.stdout and "| Mask wrong first pass + Append | 70.0" in res.stdout


def test_saturated_runs_start_from_the_grpo_final_policies(tmp_path):
    start = tmp_path / "E2"
    assert ta.start_flags(None, 1) == []
    assert ta.start_flags(start, 1) == ["--model", str(start / "grpo-seed1" / "final"), "--preset", "toy"]
    (start / "grpo-seed0" / "final").mkdir(parents=True)
    (start / "grpo-seed0" / "final" / "config.json").write_text("{}")
    ta._check_start(start, [0], _exit)
    with pytest.raises(SystemExit, match="final policies are missing: .*grpo-seed1/final$"):
        ta._check_start(start, [0, 1], _exit)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "toy_ablation.py"), "--experiment", "E2-saturated"]
    cmd += ["--out", str(tmp_path / "sat"), "--archive", str(tmp_path / "arch"), "--start-from", str(start)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # seeds 0-2: 1 and 2 are missing
    assert res.returncode != 0 and "grpo-seed1/final" in res.stderr and "$ " not in res.stdout
    res = subprocess.run([*cmd[:3], "E2", "--start-from", str(start)], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "starts from the toy policy" in res.stderr


def _exit(message: str):
    raise SystemExit(message)
