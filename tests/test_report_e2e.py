"""The sample log and the pages from real runs of the toy policy: a tiny training run
and a tiny evaluation."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from trainrun import ENV, kill_after_checkpoint, tiny_args

from rethinker import metric_names as M
from rethinker.cli import main

TINY = tiny_args(
    {"--max-steps": "3", "--eval-every": "3", "--save-every": "1", "--keep-checkpoints": "3",
     "--rollout.queries-per-step": "3", "--log-samples": "2"}
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--output-dir", str(out), *TINY],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_training_run_logs_samples_and_writes_its_page(tiny_run):
    out = tiny_run
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [(r["step"], r["query"]) for r in rows] == [(s, q) for s in (1, 2, 3) for q in (0, 1)]
    metrics = {
        r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if M.REWARD_MEAN in r
    }
    for r in rows:
        assert len(r["responses"]) == 4 and r["id"].startswith("toy-train")
        assert all(name and (out / "samples" / name).is_file() for name in r["images"])
        for x in r["responses"]:
            assert x["reason"] and x["rule"] and isinstance(x["ssr_draws"], int) and x["tokens"] > 0
            rt = x.get("rethink")
            if rt and rt["kept"]:
                assert x["text"].endswith(rt["trigger"] + rt["continuation"]) or "text_chars" in x
    # SSR (paper mode) draws as many samples as the step has, over all its queries
    for s in (1, 2, 3):
        drawn = sum(x["ssr_draws"] for r in rows if r["step"] == s for x in r["responses"])
        assert drawn <= metrics[s][M.SSR_SELECTED]
    page = (out / "report.html").read_text()
    assert re.findall(r'<div class="item" data-step="(\d+)"', page) == ["3", "3", "2", "2", "1", "1"]
    assert "finished (3 steps)" in page
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_killed_and_resumed_run_logs_the_same_samples(tiny_run, tmp_path):
    """Resumable like metrics.jsonl: the lines of steps after the last checkpoint are
    dropped, and the resumed steps log what an uninterrupted run logs."""
    out = tmp_path / "killed"
    kill_after_checkpoint(out, TINY, step=1)
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--resume", str(out)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "samples.jsonl").read_text() == (tiny_run / "samples.jsonl").read_text()


def test_evaluation_writes_its_page(tmp_path):
    out = tmp_path / "ev"
    assert (
        main(
            [
                "eval",
                "--benchmark",
                "toy",
                "--limit",
                "5",
                "--output-dir",
                str(out),
                "--max-new-tokens",
                "12",
                "--batch-size",
                "5",
                "--quiet",
            ]
        )
        == 0
    )
    page = (out / "report.html").read_text()
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert [i["id"] for i in items] == [p["id"] for p in preds]
    assert len(re.findall(r'<div class="item" ', page)) == 5
    assert page.count('class="thumb ') == 5
    for p in preds:
        assert f"· {p['id']}</div>" in page
    # within each category the wrong ones come first
    order = re.findall(r'data-group="toy / (\w+)"><div class="qhead">.*?data-tags="(\w+)"', page, flags=re.S)
    for cat in {c for c, _ in order}:
        tags = [t for c, t in order if c == cat]
        assert tags == sorted(tags, key=lambda t: t == "correct")
