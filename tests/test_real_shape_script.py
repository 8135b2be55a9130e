"""benchmarks/real_shape.py takes minutes at the 3B shape; its code path (one full GRPO step
with Forced Rethinking, the memory plan beside the measured peak RSS) runs here on the
tiny shape in seconds, so the script cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

from rethinker import metric_names as M

ROOT = Path(__file__).resolve().parents[1]


def test_real_shape_script_runs_on_the_tiny_shape(tmp_path):
    out, doc = tmp_path / "r.json", tmp_path / "results.md"
    doc.write_text("# R\n\n<!-- results:real_shape:begin -->\nOLD-SECTION\n<!-- results:real_shape:end -->\n")
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "real_shape.py"),
        "--shape",
        "tiny",
        "--lora-rank",
        "8",
        "--new-tokens",
        "16",
        "--json",
        str(out),
        "--write-doc",
        str(doc),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| Forced Rethinking |" in res.stdout and "plan predicts" in res.stdout
    section = doc.read_text().split("real_shape:begin -->")[1]  # the printed tables, in the doc's section
    assert "OLD-SECTION" not in section and "| Forced Rethinking |" in section and "plan predicts" in section
    r = json.loads(out.read_text())
    assert len(r["prompt_lengths"]) == 2  # one single-image query, one two-image query
    assert 0 < r["metrics"][M.ROLLOUT_TOKENS] <= 2 * 2 * 16
    assert M.RETHINK_ATTEMPTS in r["metrics"]
    assert r["update"][M.OPTIMIZER_STEPS] == 1 and r["update"][M.UPDATE_TOKENS] > 0
    assert r["rss_peak"] >= r["runtime"] > 0
    assert r["plan"]["peak"] > r["runtime"] and abs(r["plan_error"]) < 1
