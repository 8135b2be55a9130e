"""data.io: parquet / JSONL / datasets round trips, column mapping, counted bad rows."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rethinker.data.io import DataError, LoadResult, apply_mapping, read_records, reason_kind, write_records
from rethinker.records import ImageRef, Record, load_image


def png(color=(255, 0, 0), size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def sample_records() -> list[Record]:
    return [
        Record(
            id="q1",
            question="What is 2+3?",
            answer="5",
            images=[ImageRef(bytes=png())],
            answer_type="integer",
            category="arithmetic",
            source="toy",
            pass_rates={"7B-base": 0.25, "32B-trained": 0.75},
            meta={"split": "train", "n": 3},
        ),
        Record(
            id="q2",
            question="Which colour?",
            answer="B",
            images=[ImageRef(bytes=png((0, 0, 255))), ImageRef(bytes=png((0, 255, 0)))],
            choices=["red", "blue"],
            answer_type="multiple_choice",
            precision=None,
            category="colour",
            pass_rates={"7B-base": 0.5},
        ),
        Record(
            id="q3", question="Area?", answer="3.14", images=[ImageRef(bytes=png())], answer_type="float", precision=2
        ),
    ]


def test_parquet_round_trip(tmp_path):
    recs = sample_records()
    out = tmp_path / "d.parquet"
    assert write_records(out, recs) == 3
    res = read_records(out)
    assert res.skipped == []
    assert [r.id for r in res.records] == ["q1", "q2", "q3"]
    a, b, c = res.records
    assert a.pass_rates == {"7B-base": 0.25, "32B-trained": 0.75}
    assert b.pass_rates == {"7B-base": 0.5}  # absent model stays absent, not NaN/None
    assert c.pass_rates is None
    assert a.meta == {"split": "train", "n": 3}
    assert b.choices == ["red", "blue"] and b.answer_type == "multiple_choice"
    assert c.precision == 2 and c.answer_type == "float"
    assert load_image(b.images[1]).getpixel((0, 0)) == (0, 255, 0)


def test_parquet_columns_follow_records_md(tmp_path):
    out = tmp_path / "d.parquet"
    write_records(out, sample_records())
    schema = pq.read_schema(out)
    assert schema.names == [
        "id",
        "question",
        "answer",
        "images",
        "choices",
        "answer_type",
        "precision",
        "category",
        "source",
        "pass_rates",
        "meta",
    ]
    assert schema.field("images").type == pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    assert schema.field("meta").type == pa.string()
    row = pq.read_table(out).to_pylist()[0]
    assert json.loads(row["meta"]) == {"split": "train", "n": 3}


def test_map_layout_round_trip(tmp_path):
    out = tmp_path / "m.parquet"
    write_records(out, sample_records(), pass_rates_layout="map")
    assert pq.read_schema(out).field("pass_rates").type == pa.map_(pa.string(), pa.float64())
    res = read_records(out)
    assert res.records[0].pass_rates == {"7B-base": 0.25, "32B-trained": 0.75}
    assert res.records[1].pass_rates == {"7B-base": 0.5}


def test_datasets_reads_parquet_with_image_features(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "d.parquet"
    write_records(out, sample_records())
    ds = datasets.load_dataset("parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == 3
    assert ds[1]["images"][1].getpixel((0, 0)) == (0, 255, 0)  # decoded as PIL images
    assert ds[0]["pass_rates"] == {"32B-trained": 0.75, "7B-base": 0.25}
    # and a datasets save_to_disk directory reads back into records
    ds.save_to_disk(str(tmp_path / "saved"))
    res = read_records(tmp_path / "saved")
    assert [r.id for r in res.records] == ["q1", "q2", "q3"] and res.skipped == []
    assert res.records[0].pass_rates == {"7B-base": 0.25, "32B-trained": 0.75}
    assert load_image(res.records[1].images[0]).getpixel((0, 0)) == (0, 0, 255)


def test_jsonl_round_trip_base64_and_paths(tmp_path):
    recs = sample_records()
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "p.png").write_bytes(png((1, 2, 3)))
    recs.append(Record(id="q4", question="Path image?", answer="7", images=[ImageRef(path="img/p.png")]))
    out = tmp_path / "d.jsonl"
    write_records(out, recs)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["images"][0].startswith("data:image/png;base64,")
    assert lines[3]["images"] == ["img/p.png"]
    res = read_records(out)
    assert res.skipped == [] and len(res) == 4
    assert load_image(res.records[3].images[0], tmp_path).getpixel((0, 0)) == (1, 2, 3)
    assert res.records[0].meta == {"split": "train", "n": 3}


def test_write_repoints_relative_paths(tmp_path):
    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / "images" / "a.png").write_bytes(png((9, 9, 9)))
    rec = Record(id="a", question="q?", answer="1", images=[ImageRef(path="images/a.png")])
    out = tmp_path / "out" / "sel.parquet"
    write_records(out, [rec], base_dir=tmp_path / "src")
    res = read_records(out)
    assert res.records[0].images[0].path == "../src/images/a.png"
    assert load_image(res.records[0].images[0], out.parent).getpixel((0, 0)) == (9, 9, 9)
    write_records(out, [rec], base_dir=tmp_path / "src", embed_images=True)
    assert read_records(out).records[0].images[0].bytes == png((9, 9, 9))


def _bad_rows() -> list[dict]:
    ok = {"bytes": png(), "path": None}
    return [
        {"id": "good1", "question": "What is 1+1?", "answer": "2", "images": [ok], "choices": None},
        {"id": "noans", "question": "What is 1+2?", "answer": None, "images": [ok], "choices": None},
        {"id": "emptyq", "question": "   ", "answer": "3", "images": [ok], "choices": None},
        {"id": "good1", "question": "dup", "answer": "4", "images": [ok], "choices": None},
        {
            "id": "badimg",
            "question": "Look",
            "answer": "5",
            "images": [{"bytes": b"not an image", "path": None}],
            "choices": None,
        },
        {
            "id": "nofile",
            "question": "Look",
            "answer": "6",
            "images": [{"bytes": None, "path": "missing.png"}],
            "choices": None,
        },
        {"id": "good2", "question": "Pick", "answer": "A", "images": [ok], "choices": ["x", "y"]},
    ]


def test_bad_parquet_rows_are_counted_with_reasons(tmp_path):
    out = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(_bad_rows()), out)
    res = read_records(out)
    assert [r.id for r in res.records] == ["good1", "good2"]
    got = {(s.row, s.id, reason_kind(s.reason)) for s in res.skipped}
    assert got == {
        (1, "noans", "missing answer"),
        (2, "emptyq", "empty question"),
        (3, "good1", "duplicate id"),
        (4, "badimg", "unreadable image"),
        (5, "nofile", "missing image"),
    }
    assert res.n_rows == 7
    assert res.skip_counts() == {
        "missing answer": 1,
        "empty question": 1,
        "duplicate id": 1,
        "unreadable image": 1,
        "missing image": 1,
    }
    assert "first at row 0" in next(s.reason for s in res.skipped if s.row == 3)


def test_bad_jsonl_rows_are_counted(tmp_path):
    out = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"id": "a", "question": "q", "answer": "1"}),
        "{not json",
        json.dumps({"id": "b", "question": "q", "answer": "B", "choices": [1, 2]}),
        json.dumps({"id": "c", "question": "q", "answer": "B", "choices": "['x', 'y']"}),
        json.dumps([1, 2]),
        json.dumps({"id": "d", "question": "q", "answer": "1", "images": ["data:image/png;base64,@@@"]}),
        json.dumps({"id": "e", "question": "q", "answer": "1", "pass_rates": {"7B-base": "high"}}),
        "",
        json.dumps({"id": "f", "question": "q", "answer": 12}),  # numeric answers become text
    ]
    out.write_text("\n".join(lines) + "\n")
    res = read_records(out)
    assert [r.id for r in res.records] == ["a", "f"]
    assert res.records[1].answer == "12"
    kinds = {s.row: reason_kind(s.reason) for s in res.skipped}
    assert kinds == {
        1: "malformed row",
        2: "bad choices",
        3: "bad choices",
        4: "malformed row",
        5: "unreadable image",
        6: "malformed row",
    }
    assert len(res.skipped) + len(res.records) == 8  # the blank line is not a row


def test_require_images(tmp_path):
    out = tmp_path / "d.jsonl"
    out.write_text(json.dumps({"id": "a", "question": "q", "answer": "1"}) + "\n")
    res = read_records(out, require_images=True)
    assert res.records == [] and reason_kind(res.skipped[0].reason) == "missing image"


def test_column_mapping_virl_style(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.jpg").write_bytes(png())
    rows = [
        {
            "qid": "v1",
            "question": "<image>Find x.",
            "answer": "\\boxed{3}",
            "PassRate_32BTrained": 0.5,
            "PassRate_7BBase": 0.125,
            "category": "(GradeSchool) Geometric",
            "source": "Geometry3K",
            "image": ["images/x.jpg"],
        }
    ]
    out = tmp_path / "v.parquet"
    pq.write_table(pa.Table.from_pylist(rows), out)
    mapping = {
        "qid": "id",
        "image": "images",
        "PassRate_32BTrained": "pass_rates.32B-trained",
        "PassRate_7BBase": "pass_rates.7B-base",
    }
    res = read_records(out, mapping)
    assert res.skipped == []
    r = res.records[0]
    assert (r.id, r.answer, r.category, r.source) == ("v1", "\\boxed{3}", "(GradeSchool) Geometric", "Geometry3K")
    assert r.pass_rates == {"32B-trained": 0.5, "7B-base": 0.125}
    assert r.images == [ImageRef(path="images/x.jpg")]


def test_mapping_joins_image_columns_and_keeps_unknowns_in_meta():
    row = {
        "qid": 1,
        "image_2": {"bytes": b"2", "path": None},
        "image_1": {"bytes": b"1", "path": None},
        "image_3": None,
        "topic": "Art",
        "blob": b"\x00",
    }
    out = apply_mapping(
        row, {"qid": "id", "image_1": "images", "image_2": "images", "image_3": "images", "topic": "meta.subject"}
    )
    assert [im["bytes"] for im in out["images"]] == [b"1", b"2"]
    assert out["meta"] == {"subject": "Art"}  # bytes are not JSON: not copied to meta
    assert out["id"] == 1


def test_whole_file_errors_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError, match="unreadable parquet"):
        read_records(bad)
    with pytest.raises(DataError, match="unknown format"):
        (tmp_path / "x.csv").write_text("a,b\n")
        read_records(tmp_path / "x.csv")


def test_hub_style_directory_with_split(tmp_path):
    d = tmp_path / "hub" / "data"
    d.mkdir(parents=True)
    write_records(d / "test-00000-of-00001.parquet", sample_records()[:1])
    write_records(d / "testmini-00000-of-00001.parquet", sample_records()[1:])
    assert [r.id for r in read_records(tmp_path / "hub", split="testmini").records] == ["q2", "q3"]
    assert [r.id for r in read_records(tmp_path / "hub", split="test").records] == ["q1"]
    with pytest.raises(DataError, match="split 'val'"):
        read_records(tmp_path / "hub", split="val")


def test_load_result_counts():
    res = LoadResult()
    res.add(0, Record(id="a", question="q", answer="1"))
    res.add(1, rid=7, reason="missing answer")
    assert len(res) == 1 and res.n_rows == 2 and res.skipped[0].id == "7"
