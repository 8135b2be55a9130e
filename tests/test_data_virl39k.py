"""ViRL39K reader: its parquet beside images.zip, pass-rate columns, counted bad rows.

Rows are in ViRL39K's published columns (qid, question, answer, PassRate_32BTrained,
PassRate_7BBase, category, source, image as a list of relative paths) with the data set's
category names; their text is made up for the test (SCHEMA rows)."""

from __future__ import annotations

import math
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rethinker.data.io import DataError, read_records, reason_kind, write_records
from rethinker.data.virl39k import MAPPING, extract_images, load_virl39k
from rethinker.prompt import SUFFIX, question_text
from rethinker.records import load_image


def row(
    qid,
    question="<image>Find x.",
    answer="\\boxed{3}",
    p32=0.5,
    p7=None,
    category="(GradeSchool) Geometric",
    source="MMK12",
    image=("images/a.png",),
):
    return {
        "qid": qid,
        "question": question,
        "answer": answer,
        "PassRate_32BTrained": p32,
        "PassRate_7BBase": p7,
        "category": category,
        "source": source,
        "image": list(image) if image is not None else None,
    }


@pytest.fixture
def virl_dir(tmp_path):
    d = tmp_path / "ViRL39K"
    d.mkdir()
    with zipfile.ZipFile(d / "images.zip", "w") as zf:
        for name, color in (("images/a.png", (10, 20, 30)), ("images/b.png", (40, 50, 60))):
            img = d / "tmp.png"
            Image.new("RGB", (8, 8), color).save(img)
            zf.write(img, name)
            img.unlink()
    rows = [
        row("q1", p7=0.875),
        row(
            "q2",
            "<image><image>Which figure is symmetric?\nA. left\nB. right",
            "\\boxed{B}",
            0.25,
            float("nan"),
            "Spatial Reasoning",
            "M3CoT",
            ("images/a.png", "images/b.png"),
        ),
        row(
            "q3",
            "What is 1/2 + 1/4?",
            "\\boxed{\\frac{3}{4}}",
            1.0,
            -1.0,
            "(GradeSchool) Non-Geo Math",
            "DeepScaleR",
            (),
        ),
        row("q4", answer=""),  # empty answer
        row("q5", image=("images/nope.png",)),  # image file not in the archive
        row("q6", p32=1.5),  # pass rate outside [0, 1]
        row("q1", "<image>dup", "\\boxed{1}"),  # duplicate qid
    ]
    pq.write_table(pa.Table.from_pylist(rows), d / "39Krelease.parquet")
    return d


def test_load_virl39k(virl_dir):
    res = load_virl39k(virl_dir)
    assert (virl_dir / "images" / "b.png").is_file()  # archive extracted beside the parquet
    recs = {r.id: r for r in res.records}
    assert sorted(recs) == ["q1", "q2", "q3"]
    assert {s.row: reason_kind(s.reason) for s in res.skipped} == {
        3: "missing answer",
        4: "missing image",
        5: "malformed row",
        6: "duplicate id",
    }
    q1, q2, q3 = recs["q1"], recs["q2"], recs["q3"]
    assert q1.pass_rates == {"32B-trained": 0.5, "7B-base": 0.875}
    assert q2.pass_rates == {"32B-trained": 0.25}  # NaN: not annotated
    assert q3.pass_rates == {"32B-trained": 1.0}  # negative: not annotated
    assert (q1.category, q1.source, q1.answer) == ("(GradeSchool) Geometric", "MMK12", "\\boxed{3}")
    assert q2.question.startswith("<image 1><image 2>Which")
    assert [load_image(im, virl_dir).getpixel((0, 0)) for im in q2.images] == [(10, 20, 30), (40, 50, 60)]
    assert question_text(q2) == "Which figure is symmetric?\nA. left\nB. right" + SUFFIX
    assert q3.images == [] and question_text(q3) == "What is 1/2 + 1/4?" + SUFFIX


def test_select_and_reload_keeps_images_reachable(virl_dir, tmp_path):
    res = load_virl39k(virl_dir)
    out = tmp_path / "sel" / "subset.parquet"
    write_records(out, [r for r in res.records if r.pass_rates.get("32B-trained", 0) < 1], base_dir=virl_dir)
    again = read_records(out)
    assert [r.id for r in again.records] == ["q1", "q2"] and again.skipped == []
    assert again.records[1].pass_rates == {"32B-trained": 0.25}


def test_unsafe_archive_member_is_refused(tmp_path):
    bad = tmp_path / "images.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.png", b"x")
    with pytest.raises(DataError, match="outside"):
        extract_images(bad, tmp_path / "dest")
    assert not (tmp_path / "escape.png").exists()


def test_generic_reader_with_published_mapping(virl_dir):
    extract_images(virl_dir / "images.zip", virl_dir)
    res = read_records(virl_dir / "39Krelease.parquet", MAPPING)
    # the generic reader treats a negative pass rate as malformed; the ViRL39K reader knows it means "absent"
    assert {r.id for r in res.records} == {"q1", "q2"}
    assert math.isclose(res.records[0].pass_rates["7B-base"], 0.875)


def test_missing_or_ambiguous_parquet(tmp_path):
    with pytest.raises(DataError, match="no parquet"):
        load_virl39k(tmp_path)
    for name in ("a.parquet", "b.parquet"):
        pq.write_table(pa.Table.from_pylist([row("x")]), tmp_path / name)
    with pytest.raises(DataError, match="several parquet"):
        load_virl39k(tmp_path)
