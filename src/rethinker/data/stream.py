"""Records read on demand, so that host memory does not grow with the data set.

``open_records(path)`` validates a parquet or JSONL file once, row by row (the checks of
``read_records``: every field, every image's header, duplicate ids), and afterwards keeps
only where each good row is: its row number (parquet) or byte offset (JSONL), and its
id (``StreamedRecords.ids``, so that a caller needs no pass over the file for them).
Indexing the result reads that row again, with its images, when the trainer's sampler
asks for it. A parquet file is read one row group at a time (the last ``cache_groups`` groups are
kept), so memory is bounded by the row-group size: rethinker writes groups of
``PARQUET_ROW_GROUP_ROWS`` rows, the ``datasets`` library groups of 100 for image data.

Other sources (JSON, ``datasets`` folders, folders of files) are read whole by
``read_records``; ``open_records`` returns those records as they are.
"""

from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import pyarrow as pa
import pyarrow.parquet as pq

from ..files import parse_object_line
from ..records import Record
from .io import DataError, LoadResult, Skip, check_row, id_column, read_records, record_converter


class StreamedRecords(Sequence[Record]):
    """The good rows of one file, read on demand (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        positions: Sequence[int],
        convert,
        id_field: str,
        base_dir: str | Path,
        reader: _RowReader,
        ids: Sequence[str],
    ):
        self.path = path
        self._positions = positions
        self._ids = ids
        self._convert = convert
        self._id_field = id_field
        self._base_dir = base_dir
        self._reader = reader

    def __len__(self) -> int:
        return len(self._positions)

    @property
    def ids(self) -> list[str]:
        """The records' ids, in order, as validated when the file was opened (no row is read)."""
        return list(self._ids)

    @overload
    def __getitem__(self, i: int) -> Record: ...

    @overload
    def __getitem__(self, i: slice) -> StreamedRecords: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return StreamedRecords(
                self.path, self._positions[i], self._convert, self._id_field, self._base_dir, self._reader, self._ids[i]
            )
        raw = self._reader.row(self._positions[i])
        rec, _, reason, _ = check_row(
            raw, self._convert, base_dir=self._base_dir, check_images=False, id_field=self._id_field
        )
        if rec is None:  # the file changed since it was validated
            raise DataError(f"{self.path}: row {self._positions[i]} no longer reads as a record ({reason})")
        return rec

    def __iter__(self) -> Iterator[Record]:
        for i in range(len(self)):
            yield self[i]


class MappedRecords(Sequence[Record]):
    """``fn(record)`` for each record of ``base``, computed when asked for (a streamed
    source stays streamed through it)."""

    def __init__(self, base: Sequence[Record], fn):
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return MappedRecords(self.base[i], self.fn)
        return self.fn(self.base[i])

    def __iter__(self) -> Iterator[Record]:
        return (self.fn(r) for r in self.base)


class _RowReader:
    def row(self, position: int) -> dict[str, Any]:
        raise NotImplementedError


class _ParquetRows(_RowReader):
    """Rows of a parquet file by row number, one row group read at a time (LRU of groups)."""

    def __init__(self, path: Path, cache_groups: int):
        self.file = pq.ParquetFile(path)
        meta = self.file.metadata
        self.starts = [0]
        for g in range(meta.num_row_groups):
            self.starts.append(self.starts[-1] + meta.row_group(g).num_rows)
        self.cache: OrderedDict[int, Any] = OrderedDict()
        self.cache_groups = max(1, cache_groups)

    def row(self, position: int) -> dict[str, Any]:
        g = bisect.bisect_right(self.starts, position) - 1
        table = self.cache.get(g)
        if table is None:
            table = self.file.read_row_group(g)
            self.cache[g] = table
            while len(self.cache) > self.cache_groups:
                self.cache.popitem(last=False)
                pa.default_memory_pool().release_unused()  # hand the evicted group's buffers back
        else:
            self.cache.move_to_end(g)
        return table.slice(position - self.starts[g], 1).to_pylist()[0]

    def scan(self) -> Iterator[dict[str, Any]]:
        for g in range(self.file.metadata.num_row_groups):
            for batch in self.file.iter_batches(batch_size=64, row_groups=[g]):
                yield from batch.to_pylist()


class _JsonlRows(_RowReader):
    """Rows of a JSONL file by byte offset."""

    def __init__(self, path: Path):
        self.path = path

    def row(self, position: int) -> dict[str, Any]:
        with open(self.path, "rb") as fh:
            fh.seek(position)
            return json.loads(fh.readline())

    def scan(self) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
        with open(self.path, "rb") as fh:
            offset = 0
            for line in fh:
                start, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                yield start, parse_object_line(line)


def open_records(
    path: str | Path,
    mapping: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
    *,
    cache_groups: int = 2,
) -> LoadResult:
    """A ``LoadResult`` whose ``records`` are read on demand for a parquet or JSONL file
    (``StreamedRecords``), and read whole (``read_records``) for any other source. The
    skipped rows are those ``read_records`` skips, with the same reasons."""
    p = Path(path)
    if base_dir is None:
        base_dir = p if p.is_dir() else p.parent
    suffix = p.suffix.lower() if p.is_file() else ""
    if suffix not in (".parquet", ".jsonl"):
        return read_records(p, mapping, base_dir)
    convert, id_field = record_converter(mapping), id_column(mapping)
    result = LoadResult(source=str(p))
    positions: list[int] = []
    ids: list[str] = []
    seen: dict[str, int] = {}
    if suffix == ".parquet":
        try:
            reader: _RowReader = _ParquetRows(p, cache_groups)
            rows: Iterator[tuple[int, Any]] = enumerate(reader.scan())  # type: ignore[attr-defined]
        except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            raise DataError(f"{p}: unreadable parquet ({exc})") from None
    else:
        reader = _JsonlRows(p)
        rows = reader.scan()  # type: ignore[attr-defined]
    try:
        for i, (position, raw) in enumerate(rows):
            if isinstance(raw, Exception):
                result.add(i, rid=None, reason=str(raw))
                continue
            rec, rid, reason, excluded = check_row(raw, convert, base_dir=base_dir, id_field=id_field)
            if excluded:
                result.excluded.append(Skip(i, None if rid is None else str(rid), reason))
            elif rec is None:
                result.add(i, rid=rid, reason=reason)
            elif rec.id in seen:
                result.add(i, rid=rec.id, reason=f"duplicate id (first at row {seen[rec.id]})")
            else:
                seen[rec.id] = i
                positions.append(position)
                ids.append(rec.id)
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: unreadable ({exc})") from None
    result.records = StreamedRecords(p, positions, convert, id_field, base_dir, reader, ids)  # type: ignore[assignment]
    return result
