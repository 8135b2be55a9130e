"""One owner per metric name: the schema in ``rethinker.metric_names``, its generated doc,
and every producer and reader going through it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rethinker import metric_names as M
from rethinker.train.distributed import merge_metrics

ROOT = Path(__file__).resolve().parents[1]


def test_docs_metrics_md_is_generated_from_the_schema():
    assert (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8") == M.markdown(), (
        "docs/metrics.md is stale: python -m rethinker.metric_names > docs/metrics.md"
    )


def test_families_and_lookup():
    assert M.key(M.INVALID_SHARE, rule="no_box") == "reward/invalid_no_box"
    assert M.lookup("reward/invalid_no_box") is M.SCHEMA[M.INVALID_SHARE]
    assert M.lookup("rethink/rejected_length").merge == "sum"
    assert M.lookup("eval/accuracy/count_many") is M.SCHEMA[M.SPLIT_CATEGORY_ACCURACY]
    assert M.lookup("test/accuracy") is M.SCHEMA[M.SPLIT_ACCURACY]
    assert M.lookup("no/such/metric") is None and M.merge_kind("no/such/metric") == "mean"
    with pytest.raises(ValueError, match="defined twice"):
        M._m(M.ACCURACY, "again")


def test_merge_follows_the_schema():
    a = {M.RETHINK_ATTEMPTS: 4, M.RETHINK_ACCEPTED: 1, "rethink/rejected_length": 2, M.TIME_ROLLOUT: 2.0,
         M.ROLLOUT_TOKENS: 100, M.LENGTH_MAX: 9, M.ACCURACY: 0.5}  # fmt: skip
    b = {M.RETHINK_ATTEMPTS: 2, M.RETHINK_ACCEPTED: 2, "rethink/rejected_length": 1, M.TIME_ROLLOUT: 3.0,
         M.ROLLOUT_TOKENS: 50, M.LENGTH_MAX: 12, M.ACCURACY: 1.0}  # fmt: skip
    out = merge_metrics([a, b], [3, 1])
    assert (out[M.RETHINK_ATTEMPTS], out["rethink/rejected_length"], out[M.TIME_ROLLOUT]) == (6, 3, 3.0)
    assert out[M.LENGTH_MAX] == 12 and out[M.ACCURACY] == pytest.approx(0.625)
    assert out[M.RETHINK_ACCEPTANCE] == pytest.approx(0.5) and out[M.ROLLOUT_TOKENS_PER_S] == pytest.approx(50.0)


def _quoted_names() -> set[str]:
    """Every exact schema name (families excluded) that a source file outside the schema
    spells as a string literal."""
    exact = {n for n in M.SCHEMA if "{" not in n and "/" in n}
    found = set()
    src = ROOT / "src" / "rethinker"
    for path in list((src / "train").glob("*.py")) + list((src / "report").glob("*.py")) + [src / "algo" / "ssr.py"]:
        for lit in re.findall(r'"([a-z_]+/[a-z_/]+)"', path.read_text(encoding="utf-8")):
            if lit in exact:
                found.add(f"{path.name}: {lit}")
    return found


def test_no_metric_name_is_spelled_outside_the_schema():
    assert _quoted_names() == set()


@pytest.mark.slow
def test_every_key_a_run_logs_is_in_the_schema(tmp_path):
    out = tmp_path / "run"
    args = ["--max-steps", "2", "--eval-every", "2", "--save-every", "0", "--seed", "3",
            "--rollout.queries-per-step", "2", "--rollout.group-size", "4", "--data.toy-eval-size", "8",
            "--data.toy-test-size", "8", "--rethink", "on", "--rethink.skip-prob", "0",
            "--rollout.dynamic-sampling", "on", "--threads", "1"]  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--output-dir", str(out), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    keys = {k for line in (out / "metrics.jsonl").read_text().splitlines() for k in json.loads(line)}
    assert {M.RETHINK_ATTEMPTS, M.DYNAMIC_ROUNDS, "eval/accuracy", "test/accuracy"} <= keys
    assert {k for k in keys if k != M.STEP and M.lookup(k) is None} == set()
