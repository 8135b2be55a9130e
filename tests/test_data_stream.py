"""Streamed records: the same records and skips as read_records, read on demand with a
bounded number of parquet row groups in memory, and files written a row group at a time."""

import io
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rethinker.data.io import PARQUET_ROW_GROUP_ROWS, read_records, write_records
from rethinker.data.stream import MappedRecords, StreamedRecords, open_records
from rethinker.records import ImageRef, Record
from rethinker.toyworld.puzzles import generate


def _bad_rows():
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, format="PNG")  # 64 MP: beyond the bomb limit
    return [
        Record(id="bad-bytes", question="What colour?", answer="red", images=[ImageRef(bytes=b"not an image")]),
        Record(id="bomb", question="What colour?", answer="red", images=[ImageRef(bytes=buf.getvalue())]),
        Record(id="missing-file", question="What colour?", answer="red", images=[ImageRef(path="nowhere.png")]),
    ]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    good = generate(150, seed=3, split="train")
    recs = good[:70] + _bad_rows() + good[70:] + [good[5]]  # bad rows mid-file, a duplicate id last
    write_records(d / "t.parquet", recs)
    table = pq.read_table(d / "t.parquet").to_pylist()
    table.insert(100, {**table[0], "id": "no-answer", "answer": None})
    pq.write_table(
        pa.Table.from_pylist(table, schema=pq.read_schema(d / "t.parquet")),
        d / "t.parquet",
        row_group_size=PARQUET_ROW_GROUP_ROWS,
    )
    write_records(d / "t.jsonl", recs)
    with open(d / "t.jsonl", "a") as fh:
        fh.write("{not json\n")
    return d, good


@pytest.mark.parametrize("name", ["t.parquet", "t.jsonl"])
def test_streamed_records_equal_read_records(files, name):
    d, good = files
    whole, streamed = read_records(d / name), open_records(d / name)
    assert isinstance(streamed.records, StreamedRecords) and len(streamed.records) == len(whole.records) == 150

    def norm(skips):  # PIL names the BytesIO object's address in its message
        return [s._replace(reason=re.sub(r"0x[0-9a-f]+", "0x", s.reason)) for s in skips]

    assert norm(streamed.skipped) == norm(whole.skipped)
    assert len(streamed.skipped) == 5  # 3 bad images, the duplicate, no answer / a malformed line
    assert list(streamed.records) == whole.records == good
    assert streamed.records[-1] == good[-1] and streamed.records[7] == good[7]
    assert list(streamed.records[10:40:3]) == good[10:40:3]
    assert streamed.records.ids == [r.id for r in good]  # kept from the validation scan
    assert streamed.records[10:40:3].ids == [r.id for r in good[10:40:3]]
    assert {s.id for s in streamed.skipped} >= {"bad-bytes", "bomb", "missing-file"}


def test_parquet_rows_are_read_one_group_at_a_time(files):
    d, good = files
    assert pq.ParquetFile(d / "t.parquet").metadata.num_row_groups == 3  # 155 rows in groups of 64
    res = open_records(d / "t.parquet", cache_groups=1)
    reader = res.records._reader
    for i in (149, 0, 100, 3, 64):
        assert res.records[i] == good[i]
        assert len(reader.cache) == 1  # never more than cache_groups groups held


def test_written_files_stream_in_row_groups_and_sequences_are_read_twice(tmp_path):
    recs = generate(130, seed=4, split="train")
    src = tmp_path / "a.parquet"
    write_records(src, recs)
    meta = pq.ParquetFile(src).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [64, 64, 2]
    streamed = open_records(src).records
    rated = MappedRecords(streamed, lambda r: Record(**{**r.__dict__, "pass_rates": {"m": 0.5}}))
    assert write_records(tmp_path / "b.parquet", rated) == 130
    back = read_records(tmp_path / "b.parquet").records
    assert [r.id for r in back] == [r.id for r in recs] and all(r.pass_rates == {"m": 0.5} for r in back)
    assert write_records(tmp_path / "empty.parquet", []) == 0 and read_records(tmp_path / "empty.parquet").records == []
