"""benchmarks/toy_ablation.py's analysis (the trainings take hours): on synthetic run
directories in the trainer's output format, the table holds the paired difference with
its interval, the budget to reach GRPO's final dev accuracy, the dev AUC and the budget
columns, and the plot is written; the same tables fill docs/results.md's section from the
saved runs alone (``--from-results --write-doc``)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rethinker import metric_names as M

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("toy_ablation", ROOT / "benchmarks" / "toy_ablation.py")
ta = importlib.util.module_from_spec(_spec)
sys.modules["toy_ablation"] = ta
_spec.loader.exec_module(ta)
sys.path.insert(0, str(ROOT / "benchmarks"))  # where the script finds _doc when run

N_ITEMS, STEPS = 400, 4


def _fake_run(d: Path, seed: int, dev: list[float], n_right: int, zero_adv: float) -> Path:
    """A finished run: 4 steps of 64 samples, dev every 2 steps, test at 0 and 4."""
    d.mkdir(parents=True)
    rows = [{"step": 0, "eval/accuracy": dev[0], "eval/n": 100}, {"step": 0, "test/accuracy": 0.5, "test/n": N_ITEMS}]
    for s in range(1, STEPS + 1):
        rows.append(
            {
                "step": s,
                M.REWARD_MEAN: 0.5,
                M.BUDGET_SAMPLES: 64 * s,
                M.ROLLOUT_SAMPLES: 64,
                M.ROLLOUT_TOKENS: 1000,
                M.RETHINK_TOKENS: 100,
                M.OPTIMIZER_STEPS: 1,
                M.ZERO_ADV_BEFORE_RETHINK: zero_adv,
                "reflection_rate": 0.1,
                M.TIME_STEP: 2.0,
            }
        )
        if s % 2 == 0:
            rows.append({"step": s, "eval/accuracy": dev[s // 2], "eval/n": 100})
    rows.append({"step": STEPS, "test/accuracy": n_right / N_ITEMS, "test/n": N_ITEMS, "test/reflection_rate": 0.2})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = [
        {"id": f"toy-test-0-{i:06d}", "category": "color" if i < N_ITEMS // 2 else "count", "correct": i < n_right}
        for i in range(N_ITEMS)
    ]
    (d / f"test-predictions-{STEPS}.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    return d


def test_table_and_plot_from_finished_runs(tmp_path):
    results = {
        "GRPO": [ta.summarize(_fake_run(tmp_path / f"g{s}", s, [0.5, 0.55, 0.6], 240, 0.5)) for s in range(3)],
        "GRPO+SSR": [ta.summarize(_fake_run(tmp_path / f"s{s}", s, [0.5, 0.6, 0.65], 260, 0.7)) for s in range(3)],
    }
    assert all(ta.finished(tmp_path / f"g{s}") for s in range(3))
    r = results["GRPO+SSR"][0]
    assert r["samples"] == 256 and r["tokens"] == 4400 and r["opt_steps"] == 4 and r["steps"] == 4
    assert r["dev"] == [(0, 0.5), (128, 0.6), (256, 0.65)]
    text = ta.table(results, [0, 1, 2], STEPS)
    ssr = next(line for line in text.splitlines() if line.startswith("| GRPO+SSR |"))
    assert "| 65.0 ± 0.0 |" in ssr  # 260 / 400 right on every seed
    diff = re.search(r"\| \+5\.0 \[\+([\d.]+), \+([\d.]+)\] \|", ssr)  # 20 more puzzles right on every seed
    assert diff and 0 < float(diff.group(1)) < 5 < float(diff.group(2)) < 10  # items resampled: an interval
    assert "0.1K, 0.1K, 0.1K" in ssr  # 128 samples to reach GRPO's final dev 0.60
    assert "0.50 ± 0.00 -> 0.70 ± 0.00" not in ssr and "0.70 ± 0.00" in ssr
    grpo = next(line for line in text.splitlines() if line.startswith("| GRPO |"))
    assert "| 60.0 ± 0.0 | - |" in grpo
    assert "3 paired seeds" in text and "400 puzzles" in text
    # per kind: the first 200 puzzles are colour ones, all right; of the 200 counting ones
    # GRPO gets 40 right and SSR 60
    kinds = text[text.index("per kind") :]
    assert "| variant | color | count |" in kinds
    assert "| GRPO | 100.0 | 20.0 |" in kinds and "| GRPO+SSR | 100.0 | 30.0 |" in kinds
    ta.plot(results, tmp_path / "ablation.png")
    assert (tmp_path / "ablation.png").stat().st_size > 10_000


DOC = (
    "# Results\n\nProse.\n\n<!-- results:toy_ablation:begin -->\nold table\n"
    "<!-- results:toy_ablation:end -->\n\nMore.\n"
)


def _section(doc: Path) -> str:
    return doc.read_text().split("<!-- results:toy_ablation:begin -->")[1].split("<!-- results:toy_ablation:end -->")[0]


def test_write_doc_fills_the_section_from_synthetic_runs(tmp_path):
    results = {
        "GRPO": [ta.summarize(_fake_run(tmp_path / f"g{s}", s, [0.5, 0.55, 0.6], 240, 0.5)) for s in range(2)],
        "GRPO+SSR": [ta.summarize(_fake_run(tmp_path / f"s{s}", s, [0.5, 0.6, 0.65], 260, 0.7)) for s in range(2)],
    }
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text(DOC)
    text = ta.table(results, [0, 1], STEPS) + "\n\n1 thread(s) per run ..."
    ta.write_doc(doc, text, results)
    section = _section(doc)
    assert "old table" not in section and doc.read_text().endswith("\n\nMore.\n")
    assert section.lstrip().startswith("*Written by `python benchmarks/")
    assert ta.table(results, [0, 1], STEPS) in section and "thread(s)" not in section  # the tables, no timing
    assert "| GRPO+SSR | 65.0 ± 0.0 |" in section and "| GRPO | 100.0 | 20.0 |" in section
    assert section.rstrip().endswith("](images/toy_ablation.png)")
    assert (doc.parent / "images" / "toy_ablation.png").stat().st_size > 10_000


def test_from_results_writes_the_doc_without_training(tmp_path):
    out = tmp_path / "runs"
    for s in range(2):
        _fake_run(ta.run_dir_of(out, "GRPO", s), s, [0.5, 0.55, 0.6], 240, 0.5)
    doc = tmp_path / "results.md"
    doc.write_text(DOC)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "toy_ablation.py"), "--seeds", "2", "--steps", str(STEPS)]
    cmd += ["--only", "GRPO+SSR", "--out", str(out), "--from-results", "--write-doc", str(doc)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "grpo-ssr-seed0" in res.stderr and "grpo-ssr-seed1" in res.stderr
    assert "old table" in _section(doc)  # nothing trained, nothing written
    for s in range(2):
        _fake_run(ta.run_dir_of(out, "GRPO+SSR", s), s, [0.5, 0.6, 0.65], 260, 0.7)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "$ " not in res.stdout  # no training command was started
    section = _section(doc)
    assert "2 paired seeds" in section and "| GRPO+SSR | 65.0 ± 0.0 |" in section
    assert "--from-results" in section and "--write-doc" not in section
    bad = tmp_path / "bad.md"
    bad.write_text("# no section\n")
    res = subprocess.run([*cmd[:-1], str(bad)], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "<!-- results:toy_ablation:begin --> is missing" in res.stderr


def test_unfinished_run_is_not_reused(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "metrics.jsonl").write_text(json.dumps({"step": 0, "test/accuracy": 0.5}) + "\n")
    assert not ta.finished(d)  # only the step-0 test: the run did not reach its end
    assert ta.slug("GRPO+SSR(released,age<=4)") == "grpo-ssr-released-age--4"


@pytest.mark.parametrize("name", list(ta.VARIANTS))
def test_each_variant_is_one_flag_set_the_trainer_accepts(name):
    from rethinker.train.config import parse_overrides, resolve

    cfg = resolve(None, parse_overrides(ta.VARIANTS[name]))
    assert cfg.ssr.mode in ("off", "paper", "released")
    assert cfg.rethink.enabled == ("Rethink" in name)
    assert cfg.rollout.dynamic_sampling == ("Dyn" in name)
    assert (cfg.ssr.max_age == 4) == ("released" in name)


PRE_REGISTERED = ("E1", "E2", "E2-24", "E2-saturated-mix")


@pytest.mark.parametrize(
    "exp, name", [(e, n) for e in PRE_REGISTERED for n in ta.EXPERIMENTS[e].variants], ids=lambda x: str(x)
)
def test_each_pre_registered_variant_is_a_flag_set_the_trainer_accepts(exp, name):
    """E1 and E2 as docs/experiments.md states them: one change each, common flags on all;
    E2-24 is E2's runs on more seeds."""
    from rethinker.train.config import parse_overrides, resolve

    e = ta.EXPERIMENTS[exp]
    cfg = resolve(None, parse_overrides([*e.variants[name], *e.common]))
    assert (cfg.rethink_at_test, cfg.optim.log_update_norm) == (exp == "E1", exp.startswith("E2"))
    assert cfg.rethink.enabled == (name != "GRPO" and exp == "E1")
    changed = {
        "Released recipe": (cfg.algo.sft_coef, cfg.reward.reflection_shaping) == (0.05, True),
        "Mask wrong first pass": cfg.rethink.first_pass_loss == "mask-wrong",
        "Append": cfg.rethink.placement == "append",
        "Verify only": cfg.rethink.only_correct,
    }
    assert [k for k, v in changed.items() if v] == ([name] if name in changed else [])
    assert e.section in (ROOT / "docs" / "results.md").read_text()
    assert cfg.data.toy_kinds == (None if exp != "E2-saturated-mix" else ta.SATURATED_MIX.split(","))


def test_a_killed_run_goes_on_from_its_checkpoint(tmp_path, monkeypatch):
    """The runner starts a run with checkpoints every 50 steps, resumes one that has a
    checkpoint (the trainer is exact across kills), and deletes a finished run's checkpoints."""
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        run_dir = tmp_path / "grpo-seed3"
        (run_dir / "checkpoint-300").mkdir(parents=True)
        (run_dir / "final").mkdir(exist_ok=True)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(ta.subprocess, "run", fake_run)
    ta.run_variant("GRPO", ["--ssr", "off"], 3, 300, 1, tmp_path, [])
    assert "--resume" not in calls[0] and calls[0][calls[0].index("--save-every") + 1] == "50"
    assert calls[0][-2:] == ["--ssr", "off"] and calls[0][calls[0].index("--seed") + 1] == "3"
    run_dir = tmp_path / "grpo-seed3"
    assert not list(run_dir.glob("checkpoint-*")) and (run_dir / "final").is_dir()
    (run_dir / "checkpoint-100").mkdir()  # killed after step 100 on a second try
    ta.run_variant("GRPO", ["--ssr", "off"], 3, 300, 1, tmp_path, [])
    assert calls[1][3:] == ["train", "--resume", str(run_dir), "--no-progress"]
    assert not list(run_dir.glob("checkpoint-*"))


def test_table_head_names_each_seeds_starting_policy_when_they_differ(tmp_path):
    """E1's seeds share the toy policy (one base accuracy); E2-saturated's seeds continue from
    their own E2 policies, so the head gives the mean and every seed's, not seed 0's alone."""
    results = {
        n: [ta.summarize(_fake_run(tmp_path / f"{n}{s}", s, [0.5, 0.55, 0.6], 240, 0.5)) for s in range(3)]
        for n in ("GRPO", "GRPO+SSR")
    }
    for r in results["GRPO"]:
        r["test_base"] = 0.5
    assert "(base policy 50.0%)" in ta.table(results, [0, 1, 2], STEPS)
    for r, base in zip(results["GRPO"], (0.6385, 0.64, 0.6775)):
        r["test_base"] = base
    head = ta.table(results, [0, 1, 2], STEPS).splitlines()[0]
    assert head.endswith("(starting policies 65.2%, per seed 63.8, 64.0, 67.8)"), head
