"""benchmarks/gpu_step.py runs on GPU sessions only; its code path (and its --write-doc) runs here on a tiny
random model on the CPU, so it cannot rot between them."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_step_script_runs_on_a_tiny_shape(tmp_path):
    out, doc = tmp_path / "r.json", tmp_path / "results.md"
    doc.write_text("# R\n\n<!-- results:gpu_step:begin -->\nOLD-SECTION\n<!-- results:gpu_step:end -->\n")
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "gpu_step.py"),
        "--shape",
        "tiny",
        "--device",
        "cpu",
        "--seq",
        "128",
        "--image",
        "112",
        "--queries",
        "4",
        "--group",
        "2",
        "--new-tokens",
        "4",
        "--repeats",
        "1",
        "--matmul",
        "128",
        "--json",
        str(out),
        "--write-doc",
        str(doc),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| rollout 4 x G=2 x <= 4 tokens |" in res.stdout
    section = doc.read_text().split("gpu_step:begin -->")[1]  # the printed table, in the doc's section
    assert "OLD-SECTION" not in section and "| rollout 4 x G=2 x <= 4 tokens |" in section
    r = json.loads(out.read_text())
    # 4 sequences of 128 tokens in the update, 4 x 2 samples of <= 4 tokens in the rollout
    assert r["update"]["distinct"]["tokens"] == 4 * 128
    assert r["update"]["grouped"]["queries"] == 1 and r["update"]["grouped"]["group"] == 4
    for name in ("rethinker", "transformers generate"):
        assert 8 <= r["rollout"][name]["tokens"] <= 32
    assert r["update"]["distinct"]["flops"] > 6 * 4 * 128 * 100_000  # > 6 x tokens x (text matmul params)
    assert 0 < r["mfu"]
