"""`rethinker data stats` / `rethinker data select` on small files."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rethinker.cli import main
from rethinker.data.curate import histogram
from rethinker.data.io import read_records, write_records
from rethinker.records import ImageRef, Record


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def data_file(tmp_path):
    recs = [
        Record(
            id="a",
            question="q",
            answer="1",
            images=[ImageRef(bytes=png())],
            category="Geo",
            source="S1",
            pass_rates={"7B-base": 0.0, "32B-trained": 0.5},
        ),
        Record(id="b", question="q", answer="2", category="Geo", source="S2", pass_rates={"32B-trained": 1.0}),
        Record(
            id="c",
            question="q",
            answer="3",
            category="Chart",
            source="S1",
            pass_rates={"7B-base": 0.25, "32B-trained": 0.75},
        ),
        Record(
            id="d",
            question="q",
            answer="4",
            category="Chart",
            source="S1",
            pass_rates={"7B-base": 0.5, "32B-trained": 0.95},
        ),
    ]
    path = tmp_path / "train.parquet"
    write_records(path, recs)
    return path


def test_histogram_bins():
    assert histogram([0.0, 0.05, 0.1, 0.55, 0.999, 1.0], 10) == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert histogram([], 4) == [0, 0, 0, 0]


def test_stats_json(data_file, capsys):
    assert main(["data", "stats", str(data_file), "--json", "--bins", "4"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["n_records"] == 4 and st["n_skipped"] == 0
    assert st["by_category"] == {"Geo": 2, "Chart": 2} and st["by_source"] == {"S1": 3, "S2": 1}
    assert st["n_images"] == {"0": 3, "1": 1}
    p7 = st["pass_rates"]["7B-base"]
    assert (p7["annotated"], p7["zero"], p7["one"], p7["histogram"]) == (3, 1, 0, [1, 1, 1, 0])
    assert p7["mean"] == pytest.approx(0.25)
    assert st["pass_rates"]["32B-trained"]["histogram"] == [0, 0, 1, 3]


def test_stats_table_counts_skipped(tmp_path, capsys):
    f = tmp_path / "d.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "question": "q", "answer": "1", "category": "Geo"},
                {"id": "a", "question": "q", "answer": "1"},
                {"id": "b", "question": "q", "answer": ""},
            ]
        )
        + "\n"
    )
    assert main(["data", "stats", str(f)]) == 0
    out = capsys.readouterr().out
    assert "records: 1    skipped: 2" in out
    assert "skipped (duplicate id): 1" in out and "skipped (missing answer): 1" in out


def test_select_by_model_size_and_category(data_file, tmp_path, capsys):
    out = tmp_path / "sel.parquet"
    assert (
        main(
            [
                "data",
                "select",
                str(data_file),
                "--pass-rate-range",
                "0.1",
                "0.9",
                "--model-size",
                "7B",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert [r.id for r in read_records(out).records] == ["c", "d"]
    assert "1 without that annotation left out" in capsys.readouterr().out
    assert (
        main(
            [
                "data",
                "select",
                str(data_file),
                "--pass-rate-range",
                "0.1",
                "0.9",
                "--model-size",
                "32B",
                "--category",
                "Geo",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert [r.id for r in read_records(out).records] == ["a"]
    assert read_records(out).records[0].images[0].bytes == png()


def test_select_rejects_bad_range(data_file, tmp_path):
    assert (
        main(
            [
                "data",
                "select",
                str(data_file),
                "--pass-rate-range",
                "0.9",
                "0.1",
                "--output",
                str(tmp_path / "x.parquet"),
            ]
        )
        == 2
    )


def test_select_virl39k_release(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "x.png")
    rows = [
        {
            "qid": f"q{i}",
            "question": "<image>Find x.",
            "answer": "\\boxed{1}",
            "PassRate_32BTrained": p32,
            "PassRate_7BBase": p7,
            "category": "(GradeSchool) Geometric",
            "source": "MMK12",
            "image": ["images/x.png"],
        }
        for i, (p32, p7) in enumerate([(0.5, 0.5), (1.0, None), (0.0, 0.0)])
    ]
    src = tmp_path / "39Krelease.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    out = tmp_path / "out" / "edge.jsonl"
    assert (
        main(
            [
                "data",
                "select",
                str(src),
                "--pass-rate-range",
                "0.01",
                "0.99",
                "--model-size",
                "32B",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    res = read_records(out)
    assert [r.id for r in res.records] == ["q0"] and res.skipped == []  # image path re-pointed to ../images
    assert res.records[0].images[0].path == "../images/x.png"
