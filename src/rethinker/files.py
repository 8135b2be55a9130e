"""Small file helpers shared across the package: atomic writes and JSON-lines reading.

A file is written atomically by writing a sibling ``NAME.tmp`` and renaming it onto
``NAME`` (``os.replace``), so a reader (or a crash) never sees half of it. JSONL files
here are appended to line by line by a run that may be killed mid-write, so a reader
must decide what to do with a torn last line: skip it, skip it with a warning, or raise.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: What a line that is not JSON (a write cut short) does: passed over silently, passed
#: over with a warning on stderr, or the ``json.JSONDecodeError`` is raised.
TORN_LINE_ACTIONS = ("skip", "warn", "raise")


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary sibling path to write in the block; renamed onto ``path`` when the
    block ends without an error (after an error ``path`` is untouched)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    yield tmp
    os.replace(tmp, path)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file."""
    with replacing(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")


def _lines(path: Path, torn: str, errors: str) -> Iterator[tuple[str, Any]]:
    """``(line, value)`` for each non-blank line of a JSONL file that parses."""
    if torn not in TORN_LINE_ACTIONS:
        raise ValueError(f"torn must be one of {TORN_LINE_ACTIONS}, got {torn!r}")
    for line in path.read_text(encoding="utf-8", errors=errors).splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            if torn == "raise":
                raise
            if torn == "warn":
                print(f"warning: skipped a torn line in {path}", file=sys.stderr)
            continue
        yield line, value


def read_jsonl(path: str | Path, *, torn: str = "skip", missing_ok: bool = False, errors: str = "strict") -> list[Any]:
    """The JSON values of a JSONL file's lines, in order (blank lines are passed over).

    ``torn``: what a line that is not JSON does (``TORN_LINE_ACTIONS``). ``missing_ok``:
    an absent file reads as ``[]`` instead of raising ``FileNotFoundError``. ``errors``:
    how bytes that are not UTF-8 are decoded (``"replace"`` for a file another process
    may be writing)."""
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    return [value for _, value in _lines(path, torn, errors)]


def filter_jsonl(path: str | Path, keep: Callable[[Any], bool]) -> None:
    """Rewrite a JSONL file atomically with only the lines whose value ``keep`` accepts
    (each kept line byte for byte); lines that are not JSON (torn) are dropped."""
    path = Path(path)
    kept = [line for line, value in _lines(path, "skip", "strict") if keep(value)]
    write_atomic(path, "".join(line + "\n" for line in kept))


def parse_object_line(line: str | bytes) -> dict[str, Any] | ValueError:
    """One JSONL line of a data file: the object it holds, or a ``ValueError`` saying why
    it holds none (for the caller to count as an unreadable row)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        return ValueError(f"malformed json line: {exc}")
    return obj if isinstance(obj, dict) else ValueError(f"json line is a {type(obj).__name__}, not an object")
