"""The stable command-line interface users' scripts rely on (issue texts)."""

import subprocess
import sys

from rethinker.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "rethinker", *args], capture_output=True, text=True, timeout=600)


def test_toy_data_and_model_commands(tmp_path):
    out = tmp_path / "test.parquet"
    r = _run("toy", "data", "--split", "test", "--output", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    from rethinker.data.io import read_records

    res = read_records(out)
    assert len(res.records) == 500 and not res.skipped
    assert all(rec.id.startswith("toy-test-") and rec.images for rec in res.records)
    r = _run("toy", "model", "--output-dir", str(tmp_path / "policy"))
    assert r.returncode == 0, r.stderr[-2000:]
    from transformers import AutoModelForImageTextToText, AutoProcessor

    AutoProcessor.from_pretrained(tmp_path / "policy")
    AutoModelForImageTextToText.from_pretrained(tmp_path / "policy")


def test_top_level_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert main(["fly"]) == 2
