"""benchmarks/forced_trigger.py: verdicts before and after a forced trigger read from
``rethinker eval``'s predictions, archived, and checked against the trainer's own test
verdicts."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import forced_trigger as ft  # noqa: E402
import toy_ablation as ta  # noqa: E402

IDS = [f"t{i}" for i in range(10)]


def _predictions(path: Path, right: int, right_after: int) -> Path:
    rows = [
        {"id": i, "correct": k < right, "rethought": {"response": "...", "correct": k < right_after}}
        for k, i in enumerate(IDS)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _archive(archive: Path, name: str, seed, right: int, right_after: int, tmp: Path) -> None:
    got = ft.verdicts(_predictions(tmp / f"{name}-{seed}.jsonl", right, right_after))
    ta.write_json_gz(ft.archive_file(archive, name, seed), got)


def test_verdicts_read_before_and_after_and_refuse_rows_without_a_continuation(tmp_path):
    got = ft.verdicts(_predictions(tmp_path / "p.jsonl", right=6, right_after=3))
    assert sum(got["correct"].values()) == 6 and sum(got["after"].values()) == 3
    assert got["correct"]["t5"] == 1 and got["after"]["t5"] == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "t0", "correct": True}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: no verdict after the trigger"):
        ft.verdicts(bad)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="no predictions"):
        ft.verdicts(tmp_path / "empty.jsonl")


def test_the_eval_command_is_the_trainers_test_split():
    cmd = ft.eval_command(Path("runs/x/final"), Path("out"))
    flags = dict(zip(cmd[4::2], cmd[5::2]))
    assert cmd[3] == "eval" and flags["--model"] == "runs/x/final"
    assert "--toy-items 2000 --toy-seed 0 --max-new-tokens 48 --rethink-at-test" in " ".join(cmd)
    assert "--model" not in ft.eval_command(None, Path("out"))  # the base policy: the packaged one


def test_table_and_agreement_from_the_archives(tmp_path):
    archive, trained = tmp_path / "forced", tmp_path / "trained"
    _archive(archive, ft.BASE, None, right=5, right_after=3, tmp=tmp_path)
    for seed in (0, 1):
        _archive(archive, "GRPO", seed, right=8, right_after=6, tmp=tmp_path)
        _archive(archive, "GRPO+SSR", seed, right=7, right_after=7, tmp=tmp_path)
    results = ft.load(archive, ["GRPO", "GRPO+SSR"], [0, 1])
    table = ft.ea.rethink_at_test_table(results)
    assert "| base policy | 50.0 | 30.0 | 0 | 2 |" in table
    assert "| GRPO | 80.0 | 60.0 | 0.0 | 2.0 |" in table and "| GRPO+SSR | 70.0 | 70.0 | 0.0 | 0.0 |" in table
    # the trainer's verdicts: GRPO seed 0 the same, seed 1 one puzzle apart; SSR not archived
    same = {i: int(k < 8) for k, i in enumerate(IDS)}
    ta.save_archived(trained, "GRPO", 0, {"test_correct": same, "test_final": 0.8})
    ta.save_archived(trained, "GRPO", 1, {"test_correct": same | {"t7": 0}, "test_final": 0.7})
    text = ft.agreement(results, trained)
    assert "1 of 2 policies give the same verdict" in text and "largest accuracy difference 10.00 points" in text
    assert "no archived training summary" in ft.agreement(results, tmp_path / "none")
