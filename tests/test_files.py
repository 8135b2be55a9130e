"""rethinker.files: atomic writes and JSON-lines reading."""

import json

import pytest

from rethinker.files import filter_jsonl, parse_object_line, read_jsonl, replacing, write_atomic


def test_write_atomic_text_and_bytes(tmp_path):
    write_atomic(tmp_path / "a.txt", "héllo\n")
    write_atomic(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]  # no temp file left


def test_replacing_leaves_the_file_alone_after_an_error(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert path.read_text() == "old"


def test_read_jsonl_torn_lines(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n\n[2]\n{"step": 3, "rew')
    assert read_jsonl(path) == [{"step": 1}, [2]]
    assert capsys.readouterr().err == ""
    assert read_jsonl(path, torn="warn") == [{"step": 1}, [2]]
    assert f"skipped a torn line in {path}" in capsys.readouterr().err
    with pytest.raises(json.JSONDecodeError):
        read_jsonl(path, torn="raise")
    with pytest.raises(ValueError, match="torn must be one of"):
        read_jsonl(path, torn="ignore")


def test_read_jsonl_missing_and_undecodable(tmp_path):
    path = tmp_path / "absent.jsonl"
    assert read_jsonl(path, missing_ok=True) == []
    with pytest.raises(FileNotFoundError):
        read_jsonl(path)
    path.write_bytes(b'{"t": "\xff"}\n')
    assert read_jsonl(path, errors="replace") == [{"t": "\ufffd"}]
    with pytest.raises(UnicodeDecodeError):
        read_jsonl(path)


def test_filter_jsonl_keeps_lines_verbatim(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"step": 1,  "x": 1.50}\n{"step": 2}\n{"step": 3, "to')
    filter_jsonl(path, lambda row: row["step"] <= 1)
    assert path.read_text() == '{"step": 1,  "x": 1.50}\n'


def test_parse_object_line():
    assert parse_object_line(b'{"a": 1}\n') == {"a": 1}
    assert str(parse_object_line("[1]")) == "json line is a list, not an object"
    assert str(parse_object_line('{"a": ')).startswith("malformed json line: ")
