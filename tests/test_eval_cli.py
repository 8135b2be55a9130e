"""``rethinker eval`` end to end on the real toy policy: files, consistent numbers,
resumability (counted generate calls of the real engine), bad input counted."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from rethinker.cli import main
from rethinker.data.io import write_records
from rethinker.eval.suite import PredictionLog
from rethinker.records import ImageRef
from rethinker.rollout.hf import TransformersEngine
from rethinker.toyworld.puzzles import generate

KEYS = {"id", "benchmark", "prompt", "response", "extracted", "correct", "reason", "category"}


@pytest.fixture
def generated(monkeypatch):
    """Counts the queries the real engine is asked to generate for."""
    seen: list[str] = []
    real = TransformersEngine.generate

    def counting(self, queries, params):
        seen.extend(q.text for q in queries)
        return real(self, queries, params)

    monkeypatch.setattr(TransformersEngine, "generate", counting)
    return seen


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def toy_eval(out: Path, limit: int, *extra: str) -> int:
    return main(
        [
            "eval",
            "--benchmark",
            "toy",
            "--limit",
            str(limit),
            "--output-dir",
            str(out),
            "--max-new-tokens",
            "12",
            "--batch-size",
            "4",
            "--quiet",
            *extra,
        ]
    )


def test_toy_eval_files_numbers_and_resume(tmp_path, generated, capsys):
    out = tmp_path / "ev"
    assert toy_eval(out, 4) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:3] == ["benchmark", "items", "skipped"]
    assert any(line.startswith("toy ") for line in printed.splitlines())
    assert len(generated) == 4

    preds = lines(out / "predictions.jsonl")
    assert [p["id"] for p in preds] == [r.id for r in generate(4, seed=0, split="test")]
    assert all(KEYS <= set(p) and p["benchmark"] == "toy" for p in preds)
    assert all("Please reason step by step" in p["prompt"] for p in preds)
    summary = json.loads((out / "summary.json").read_text())
    toy = summary["toy"]
    assert (toy["n_items"], toy["n_skipped"]) == (4, 0)
    assert toy["accuracy"] == pytest.approx(sum(p["correct"] for p in preds) / 4)
    cats: dict[str, list[bool]] = {}
    for p in preds:
        cats.setdefault(p["category"], []).append(p["correct"])
    assert toy["by_category"] == {c: pytest.approx(sum(v) / len(v)) for c, v in cats.items()}
    with open(out / "summary.csv") as fh:
        overall = next(r for r in csv.DictReader(fh) if r["group"] == "overall")
    assert (overall["benchmark"], int(overall["n"]), float(overall["accuracy"])) == ("toy", 4, toy["accuracy"])
    assert "| toy | overall | 4 | 0 |" in (out / "summary.md").read_text()

    # resume: the summary is lost, more items are asked for; the 4 judged ones are not re-run
    (out / "summary.json").unlink()
    assert toy_eval(out, 6) == 0
    assert len(generated) == 6  # only the 2 new items went through the engine
    preds2 = lines(out / "predictions.jsonl")
    assert preds2[:4] == preds and len(preds2) == 6
    toy2 = json.loads((out / "summary.json").read_text())["toy"]
    assert toy2["n_items"] == 6
    assert toy2["accuracy"] == pytest.approx(sum(p["correct"] for p in preds2) / 6)

    # a smaller selection summarizes only its items, from the file, without generating
    assert toy_eval(out, 3) == 0
    assert len(generated) == 6
    assert json.loads((out / "summary.json").read_text())["toy"]["n_items"] == 3

    # other settings are refused rather than mixed into the same predictions
    assert toy_eval(out, 6, "--max-new-tokens", "20") == 2
    assert "other settings" in capsys.readouterr().err
    assert len(lines(out / "predictions.jsonl")) == 6


def test_bad_input_is_counted_and_unreadable_files_reported(tmp_path, capsys):
    good = generate(2, seed=5, split="test")
    bad_image = generate(1, seed=6, split="test")[0]
    bad_image.id, bad_image.images = "bad-image", [ImageRef(bytes=b"\x89PNG not really")]
    missing_file = generate(1, seed=7, split="test")[0]
    missing_file.id, missing_file.images = "missing-file", [ImageRef(path="nowhere/img.png")]
    sliver = generate(1, seed=8, split="test")[0]  # decodable, but 500:1 is more than the processor takes
    buf = io.BytesIO()
    Image.new("RGB", (1000, 2), (255, 0, 0)).save(buf, format="PNG")
    sliver.id, sliver.images = "sliver", [ImageRef(bytes=buf.getvalue())]
    path = tmp_path / "items.jsonl"
    write_records(path, [*good, bad_image, missing_file, sliver])
    no_answer = json.loads(path.read_text().splitlines()[0])
    no_answer.update(id="no-answer", answer="")
    with open(path, "a") as fh:
        fh.write(json.dumps(no_answer) + "\n")
        fh.write("{not json\n")
    out = tmp_path / "ev"
    rc = main(
        [
            "eval",
            "--benchmark",
            "records",
            "--data",
            str(path),
            "--benchmark",
            "mathvista",
            "--data",
            str(tmp_path / "no-such-dir"),
            "--output-dir",
            str(out),
            "--max-new-tokens",
            "8",
            "--quiet",
        ]
    )
    assert rc == 1  # an unreadable benchmark is reported, the others still run
    summary = json.loads((out / "summary.json").read_text())
    rec = summary["records"]
    assert (rec["n_items"], rec["n_skipped"]) == (2, 5)
    assert rec["skipped_by_reason"] == {
        "malformed row": 1,
        "missing answer": 1,
        "missing image": 1,
        "unreadable image": 2,
    }
    assert {i for i, _ in rec["skipped_items"]} == {"bad-image", "missing-file", "no-answer", "sliver", None}
    assert "aspect ratio" in dict((i, r) for i, r in rec["skipped_items"] if i)["sliver"]
    assert "no such file" in summary["mathvista"]["error"] and summary["mathvista"]["n_items"] == 0
    assert len(lines(out / "predictions.jsonl")) == 2
    assert "skipped" in capsys.readouterr().out


def test_usage_errors(tmp_path, capsys):
    assert main(["eval", "--benchmark", "mathvista", "--output-dir", str(tmp_path)]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert main(["eval", "--benchmark", "nope", "--output-dir", str(tmp_path)]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--data", "x", "--output-dir", str(tmp_path)])  # --data before any --benchmark


def test_torn_last_line_is_cut_and_its_item_rerun(tmp_path):
    path = tmp_path / "predictions.jsonl"
    rows = [{"id": str(i), "benchmark": "toy", "correct": True} for i in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": "2", "bench')
    log = PredictionLog(path)
    assert set(log.done) == {("toy", "0"), ("toy", "1")} and log.n_bad_lines == 1
    log.append({"id": "2", "benchmark": "toy", "correct": False})
    log.close()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["0", "1", "2"]


def test_limit_counts_only_the_bad_rows_before_the_cut():
    from rethinker.data.io import LoadResult, Skip
    from rethinker.eval.suite import skips_before_cut

    recs = generate(3, seed=1, split="test")  # kept at rows 0, 2, 5
    loaded = LoadResult(
        records=recs,
        skipped=[Skip(1, "a", "missing answer"), Skip(4, "b", "no image")],
        excluded=[Skip(3, "c", "out of scope")],
    )
    assert [s.row for s in skips_before_cut(loaded, 1)] == []
    assert [s.row for s in skips_before_cut(loaded, 2)] == [1]
    assert [s.row for s in skips_before_cut(loaded, 2, excluded=True)] == []
    assert [s.row for s in skips_before_cut(loaded, 3)] == [1, 4]
    assert [s.row for s in skips_before_cut(loaded, 3, excluded=True)] == [3]
    assert [s.row for s in skips_before_cut(loaded, None)] == [1, 4]
    assert skips_before_cut(loaded, 0) == []


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_streamed_records_are_read_once_per_run(tmp_path, monkeypatch, suffix):
    """A fresh ``rethinker eval`` of a streamed file reads each row once after the
    open-time validation scan (items.jsonl and thumbnails are stored in the same pass, the
    ids come from the scan); a resumed run reads only the rows still to judge and the
    judged ones missing from items.jsonl."""
    from collections import Counter

    from rethinker.data import stream
    from rethinker.report.eval_report import save_items

    recs = generate(70, seed=11, split="test")  # parquet: row groups of 64 and 6
    path = tmp_path / f"recs{suffix}"
    write_records(path, recs)
    reader = stream._ParquetRows if suffix == ".parquet" else stream._JsonlRows
    reads: Counter = Counter()
    scans = [0]
    real_row, real_scan = reader.row, reader.scan

    def row(self, position):
        reads[position] += 1
        return real_row(self, position)

    def scan(self):
        scans[0] += 1
        return real_scan(self)

    monkeypatch.setattr(reader, "row", row)
    monkeypatch.setattr(reader, "scan", scan)
    positions = stream.open_records(path).records._positions
    scans[0] = 0

    def run(*extra: str) -> dict[int, int]:
        reads.clear()
        scans[0] = 0
        assert (
            main(
                [
                    "eval",
                    "--benchmark",
                    "records",
                    "--data",
                    str(path),
                    "--output-dir",
                    str(out),
                    "--max-new-tokens",
                    "4",
                    "--batch-size",
                    "16",
                    "--quiet",
                    *extra,
                ]
            )
            == 0
        )
        assert scans[0] == 1  # the validation when the file is opened: one pass
        return {positions.index(p): n for p, n in reads.items()}

    out = tmp_path / "ev"
    assert run("--limit", "40") == {i: 1 for i in range(40)}  # fresh: each record read once
    items_path = out / "items.jsonl"
    kept = [x for x in items_path.read_text().splitlines() if json.loads(x)["id"] not in (recs[3].id, recs[20].id)]
    items_path.write_text("".join(x + "\n" for x in kept))
    # resumed: the 30 records still to judge, and the 2 judged ones whose items are gone
    assert run() == {i: 1 for i in [3, 20, *range(40, 70)]}
    assert run() == {}  # all judged, all items there: no row read
    assert len(lines(out / "predictions.jsonl")) == 70

    stored = lines(items_path)
    assert sorted(r["id"] for r in stored) == sorted(r.id for r in recs)
    assert save_items(tmp_path / "whole", "records", recs, tmp_path) == 70  # the same items, read whole
    assert sorted(stored, key=lambda r: r["id"]) == sorted(
        lines(tmp_path / "whole" / "items.jsonl"), key=lambda r: r["id"]
    )


def test_rethink_at_test_reports_the_answers_a_forced_trigger_changes(tmp_path, capsys):
    out = tmp_path / "rt"
    args = ["eval", "--benchmark", "toy", "--toy-items", "16", "--output-dir", str(out), "--quiet"]
    assert main([*args, "--rethink-at-test"]) == 0
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and all(r["rethought"]["response"].startswith(r["response"] + "\n\nWait") for r in rows)
    rt = json.loads((out / "summary.json").read_text())["toy"]["rethinking"]
    before = sum(r["correct"] for r in rows)
    after = sum(r["rethought"]["correct"] for r in rows)
    assert (rt["accuracy_before"], rt["accuracy_after"]) == (before / 16, after / 16)
    assert after - before == rt["wrong_to_right"] - rt["right_to_wrong"]
    assert "test-time rethinking, toy:" in capsys.readouterr().out
    assert main(args) == 2  # predictions made with the trigger are not mixed with plain ones
