"""Reading and writing records: parquet, JSONL/JSON and ``datasets`` saved directories.

``read_records`` turns any such file into ``Record`` objects (``docs/records.md``). A
malformed row never crashes the load and is never dropped silently: it lands in
``LoadResult.skipped`` as ``(row_index, id, reason)``. Duplicate ids are a counted error
(the first occurrence is kept). A file that cannot be read at all raises ``DataError``.

A column mapping renames a file's own spellings onto the record's names::

    {"qid": "id", "image": "images", "PassRate_32BTrained": "pass_rates.32B-trained"}

Targets are a record field, ``pass_rates.NAME`` or ``meta.NAME``; several columns mapped
to ``images`` are joined in mapping order. Columns that are neither canonical nor mapped
are kept in ``meta`` (when JSON-serializable), so nothing is lost.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from ..files import parse_object_line, replacing
from ..records import MAX_IMAGE_PIXELS, ImageRef, Record, RecordError, image_problem

#: The record's canonical field names (the columns ``write_records`` writes).
FIELDS = (
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
)

ROW_FILE_SUFFIXES = (".parquet", ".jsonl", ".json")


#: Rows per parquet row group in the files rethinker writes: a streamed reader holds one
#: group at a time (the ``datasets`` library writes image datasets in groups of 100).
PARQUET_ROW_GROUP_ROWS = 64


class DataError(ValueError):
    """A whole file (not one row) cannot be read: missing, unknown format, corrupt."""


class Excluded(Exception):
    """A well-formed row that lies outside a reader's scope (e.g. a MEGA-Bench task no
    rule-based judge can score): counted in ``LoadResult.excluded``, not as bad input."""


class Skip(NamedTuple):
    """One row left out of a load, and why."""

    row: int
    id: str | None
    reason: str


#: Short names for skip reasons, in the order they are tested (first match wins).
REASON_KINDS = (
    ("duplicate id", "duplicate id"),
    ("without id", "missing id"),
    ("missing answer", "missing answer"),
    ("empty question", "empty question"),
    ("image file not found", "missing image"),
    ("no image", "missing image"),
    ("image", "unreadable image"),
    ("not among", "bad answer"),
    ("not a letter", "bad answer"),
    ("choices", "bad choices"),
    ("json", "malformed row"),
)


def reason_kind(reason: str) -> str:
    """Map a skip reason to a short kind (``missing answer``, ``duplicate id`` ...)."""
    low = reason.lower()
    for needle, kind in REASON_KINDS:
        if needle in low:
            return kind
    return "malformed row"


@dataclass
class LoadResult:
    """Records read from one source, plus the rows that were left out and why."""

    records: list[Record] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    source: str = ""
    #: rows deliberately left out by the reader's scope (not bad input), with why
    excluded: list[Skip] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def n_rows(self) -> int:
        return len(self.records) + len(self.skipped) + len(self.excluded)

    def coverage(self) -> float:
        """Share of well-formed rows the reader kept: kept / (kept + excluded)."""
        kept = len(self.records)
        return kept / (kept + len(self.excluded)) if kept + len(self.excluded) else 0.0

    def skip_counts(self) -> dict[str, int]:
        """Skipped rows per reason kind (see ``reason_kind``)."""
        return dict(Counter(reason_kind(s.reason) for s in self.skipped))

    def add(self, row: int, record: Record | None = None, *, rid: Any = None, reason: str = "") -> None:
        """Keep ``record``, or count row ``row`` as skipped for ``reason``."""
        if record is not None:
            self.records.append(record)
        else:
            self.skipped.append(Skip(row, None if rid is None else str(rid), reason))


# ------------------------------------------------------------------------------------
# images


def check_image(ref: ImageRef, base_dir: str | Path | None = None, *, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Cheap readability check of one image: the file exists, PIL recognizes the format,
    the size is within ``max_pixels`` and non-empty, and ``verify()`` passes (chunk
    checksums, no full decode). Returns a reason on failure, ``None`` when fine."""
    return image_problem(ref, base_dir, max_pixels=max_pixels)


def _strip_record_prefix(msg: str) -> str:
    if msg.startswith("record ") and ": " in msg:
        return msg.split(": ", 1)[1]
    return msg


def make_record(
    row: Mapping[str, Any],
    *,
    base_dir: str | Path | None = None,
    check_images: bool = True,
    require_images: bool = False,
) -> tuple[Record | None, str]:
    """Build and validate one record from a canonical row: ``(record, "")`` or
    ``(None, reason)``. Checks what ``Record.from_dict`` does plus: ``choices`` a list of
    strings (a bare string is refused, never split into characters), every image
    readable (``check_image``), at least one image when ``require_images``."""
    choices = row.get("choices")
    if choices is not None and (isinstance(choices, (str, bytes)) or not isinstance(choices, (list, tuple))):
        return None, f"choices must be a list of strings, got {type(choices).__name__}"
    if choices is not None and not all(isinstance(c, str) for c in choices):
        return None, "choices must be strings"
    try:
        rec = Record.from_dict(dict(row))
    except RecordError as exc:
        return None, _strip_record_prefix(str(exc))
    if require_images and not rec.images:
        return None, "no image"
    if check_images:
        for k, ref in enumerate(rec.images):
            bad = check_image(ref, base_dir)
            if bad:
                return None, f"image {k + 1}: {bad}"
    return rec, ""


# ------------------------------------------------------------------------------------
# raw rows


def _is_hf_saved_dir(p: Path) -> bool:
    return (p / "dataset_dict.json").is_file() or ((p / "state.json").is_file() and (p / "dataset_info.json").is_file())


def _split_files(p: Path, split: str | None) -> list[Path]:
    files = sorted(
        f
        for f in p.rglob("*")
        if f.suffix in ROW_FILE_SUFFIXES
        and f.is_file()
        and not any(part.startswith(".") for part in f.relative_to(p).parts)
    )
    if split is None:
        return files

    def matches(f: Path) -> bool:
        rel = f.relative_to(p)
        stem = f.name.split(".")[0]
        return stem == split or stem.startswith(f"{split}-") or stem.startswith(f"{split}_") or split in rel.parts[:-1]

    return [f for f in files if matches(f)]


def iter_rows(
    path: str | Path, split: str | None = None, batch_size: int = 256
) -> Iterator[dict[str, Any] | Exception]:
    """Yield the raw rows of a file, in order: a dict per row, or the exception that made
    a row unreadable (a malformed JSONL line) so the caller can count it.

    Accepts a ``.parquet``, ``.jsonl`` or ``.json`` file (a list of objects, or an object
    of objects as in MathVista's ``testmini.json``), a ``datasets`` ``save_to_disk``
    directory (``split`` picks from a DatasetDict), or a directory of such files as on
    the hub (``split`` keeps ``{split}-*.parquet``, ``{split}.jsonl`` or files under a
    ``{split}/`` folder). Images stay encoded (``{bytes, path}`` dicts), never decoded.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if p.is_dir():
        yield from _iter_dir_rows(p, split, batch_size)
        return
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        yield from _iter_parquet_rows(p, batch_size)
    elif suffix == ".jsonl":
        yield from _iter_jsonl_rows(p)
    elif suffix == ".json":
        yield from _iter_json_rows(p)
    else:
        raise DataError(f"{p}: unknown format {suffix!r} (expected .parquet, .jsonl, .json or a dataset directory)")


def _iter_dir_rows(p: Path, split: str | None, batch_size: int) -> Iterator[dict[str, Any] | Exception]:
    """A ``save_to_disk`` directory, or a directory of data files (``split`` picks them)."""
    if _is_hf_saved_dir(p):
        yield from _iter_hf_saved(p, split, batch_size)
        return
    files = _split_files(p, split)
    if not files:
        raise DataError(f"{p}: no parquet/jsonl/json files" + (f" for split {split!r}" if split else ""))
    for f in files:
        yield from iter_rows(f, None, batch_size)


def _iter_parquet_rows(p: Path, batch_size: int) -> Iterator[dict[str, Any]]:
    try:
        pf = pq.ParquetFile(p)
        for batch in pf.iter_batches(batch_size=batch_size):
            yield from batch.to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise DataError(f"{p}: unreadable parquet ({exc})") from None


def _iter_jsonl_rows(p: Path) -> Iterator[dict[str, Any] | Exception]:
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            yield parse_object_line(line)


def _iter_json_rows(p: Path) -> Iterator[dict[str, Any] | Exception]:
    """A list of objects, or an object of objects (MathVista's ``testmini.json``)."""
    try:
        with open(p, encoding="utf-8") as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: malformed json ({exc})") from None
    items: Iterable[Any]
    if isinstance(obj, list):
        items = obj
    elif isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        items = obj.values()
    else:
        raise DataError(f"{p}: expected a list of objects or an object of objects")
    for it in items:
        yield it if isinstance(it, dict) else ValueError(f"json item is a {type(it).__name__}, not an object")


def _iter_hf_saved(p: Path, split: str | None, batch_size: int) -> Iterator[dict[str, Any]]:
    import datasets

    ds = datasets.load_from_disk(str(p))
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise DataError(f"{p}: a dataset with splits {sorted(ds)}; name one with split=")
            split = next(iter(ds))
        if split not in ds:
            raise DataError(f"{p}: no split {split!r} (has {sorted(ds)})")
        ds = ds[split]
    # Arrow batches keep images encoded as {bytes, path} structs.
    for table in ds.with_format("arrow").iter(batch_size=batch_size):
        yield from table.to_pylist()


# ------------------------------------------------------------------------------------
# column mapping


def _json_safe(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def parse_pass_rates(value: Any) -> dict[str, float] | None:
    """Accept a dict, arrow map (list of pairs), list of ``{key, value}`` structs, or a
    struct with ``None`` for absent models; drop missing / NaN values; a value outside
    [0, 1] is a RecordError."""
    if value is None:
        return None
    if isinstance(value, list):
        pairs = [(d["key"], d["value"]) if isinstance(d, dict) else tuple(d) for d in value]
        value = dict(pairs)
    if not isinstance(value, dict):
        raise RecordError(f"pass_rates must be a mapping, got {type(value).__name__}")
    out = {}
    for k, v in value.items():
        if v is None:
            continue
        f = float(v)
        if math.isnan(f):
            continue
        if not 0.0 <= f <= 1.0:
            raise RecordError(f"pass rate {k!r} = {f} is outside [0, 1]")
        out[str(k)] = f
    return out or None


def apply_mapping(row: Mapping[str, Any], mapping: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Rename a raw row onto the record's names (see the module docstring)."""
    mapping = dict(mapping or {})
    out: dict[str, Any] = {}
    meta = _row_meta(row, mapping)
    rates: dict[str, Any] = {}
    images_mapped = False
    for col, value in row.items():
        target = mapping.get(col, col if col in FIELDS else None)
        if target is None:
            if _json_safe(value):
                meta.setdefault(col, value)
            continue
        if target == "meta":
            continue
        if target.startswith("pass_rates."):
            rates[target.split(".", 1)[1]] = value
        elif target.startswith("meta."):
            meta[target.split(".", 1)[1]] = value
        elif target == "images" and col in mapping:
            images_mapped = True
        elif target == "pass_rates":
            rates.update(parse_pass_rates(value) or {})
        else:
            out[target] = value
    if images_mapped:
        out["images"] = _mapped_images(row, mapping)
    if rates:
        out["pass_rates"] = parse_pass_rates(rates)
    out["meta"] = meta
    return out


def _row_meta(row: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """The row's own ``meta`` column (a dict, or its JSON text) unless a column is mapped onto it."""
    meta: dict[str, Any] = {}
    raw_meta = row.get("meta") if "meta" not in mapping else None
    if isinstance(raw_meta, str):
        raw_meta = json.loads(raw_meta) if raw_meta.strip() else {}
    if isinstance(raw_meta, dict):
        meta.update(raw_meta)
    return meta


def _mapped_images(row: Mapping[str, Any], mapping: Mapping[str, str]) -> list[Any]:
    """The columns mapped onto ``images``, joined in mapping order (lists flattened, nulls dropped)."""
    images: list[Any] = []
    for col, target in mapping.items():
        value = row.get(col)
        if target != "images" or value is None:
            continue
        if isinstance(value, (list, tuple)):
            images.extend(v for v in value if v is not None)
        else:
            images.append(value)
    return images


# ------------------------------------------------------------------------------------
# read / write


def check_row(
    raw: Mapping[str, Any],
    convert: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    *,
    base_dir: str | Path | None = None,
    check_images: bool = True,
    require_images: bool = False,
    id_field: str = "id",
) -> tuple[Record | None, Any, str, bool]:
    """One raw row through ``convert`` and ``make_record``: ``(record, id, reason,
    excluded)``; ``record`` is None when the row is skipped (``reason``) or excluded by the
    reader's scope (``excluded``). Never raises for a bad row."""
    rid = raw.get(id_field)
    try:
        row = convert(raw)
    except Excluded as exc:
        return None, rid, str(exc), True
    except RecordError as exc:
        return None, rid, _strip_record_prefix(str(exc)), False
    except KeyError as exc:
        return None, rid, f"malformed row: missing field {exc}", False
    except (TypeError, ValueError, SyntaxError) as exc:
        return None, rid, f"malformed row: {exc}", False
    rec, reason = make_record(row, base_dir=base_dir, check_images=check_images, require_images=require_images)
    return rec, (row.get("id", rid) if rec is None else rec.id), reason, False


def build_records(
    rows: Iterable[Mapping[str, Any] | Exception],
    convert: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    *,
    base_dir: str | Path | None = None,
    check_images: bool = True,
    require_images: bool = False,
    id_field: str = "id",
    source: str = "",
) -> LoadResult:
    """The shared driver of every reader: ``convert`` turns one raw row into a canonical
    row (it raises ``Excluded`` for out-of-scope rows, or ``RecordError`` / ``KeyError``
    / ``ValueError`` / ``TypeError`` for bad ones); the result is validated by
    ``make_record``; duplicate ids after the first are skipped. Nothing raises out of
    here for a bad row."""
    result = LoadResult(source=source)
    seen: dict[str, int] = {}
    for i, raw in enumerate(rows):
        if isinstance(raw, Exception):
            result.add(i, rid=None, reason=str(raw))
            continue
        rec, rid, reason, excluded = check_row(
            raw, convert, base_dir=base_dir, check_images=check_images, require_images=require_images, id_field=id_field
        )
        if excluded:
            result.excluded.append(Skip(i, None if rid is None else str(rid), reason))
            continue
        if rec is None:
            result.add(i, rid=rid, reason=reason)
            continue
        if rec.id in seen:
            result.add(i, rid=rec.id, reason=f"duplicate id (first at row {seen[rec.id]})")
            continue
        seen[rec.id] = i
        result.add(i, rec)
    return result


def record_converter(mapping: Mapping[str, str] | None = None) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The row conversion of ``read_records``: the column mapping, then pass rates parsed."""

    def convert(raw: Mapping[str, Any]) -> dict[str, Any]:
        row = apply_mapping(raw, mapping)
        row["pass_rates"] = parse_pass_rates(row.get("pass_rates"))
        return row

    return convert


def id_column(mapping: Mapping[str, str] | None) -> str:
    """The raw column that holds the record id under ``mapping``."""
    return next((c for c, t in (mapping or {}).items() if t == "id"), "id")


def read_records(
    path: str | Path,
    mapping: Mapping[str, str] | None = None,
    base_dir: str | Path | None = None,
    *,
    split: str | None = None,
    check_images: bool = True,
    require_images: bool = False,
) -> LoadResult:
    """Read records from a parquet / JSONL / JSON file, a hub-style directory of them, or
    a ``datasets`` saved directory. Relative image paths resolve against ``base_dir``
    (default: the file's folder, or the directory itself). Bad rows are skipped and
    counted with a reason; duplicate ids are skipped after the first."""
    p = Path(path)
    if base_dir is None:
        base_dir = p if p.is_dir() else p.parent
    return build_records(
        iter_rows(p, split),
        record_converter(mapping),
        base_dir=base_dir,
        check_images=check_images,
        require_images=require_images,
        id_field=id_column(mapping),
        source=str(p),
    )


def _hf_features_metadata(pass_rate_names: list[str]) -> bytes:
    """The ``huggingface`` schema metadata that makes ``datasets`` read ``images`` as a
    list of Image features (built by the installed ``datasets`` itself)."""
    import datasets

    string = datasets.Value("string")
    feats: dict[str, Any] = {
        "id": string,
        "question": string,
        "answer": string,
        "images": datasets.List(datasets.Image()) if hasattr(datasets, "List") else datasets.Sequence(datasets.Image()),
        "choices": datasets.List(string) if hasattr(datasets, "List") else datasets.Sequence(string),
        "answer_type": string,
        "precision": datasets.Value("int64"),
        "category": string,
        "source": string,
        "pass_rates": (
            {n: datasets.Value("float64") for n in pass_rate_names} if pass_rate_names else datasets.Value("null")
        ),
        "meta": string,
    }
    return datasets.Features(feats).arrow_schema.metadata[b"huggingface"]


def record_schema(pass_rate_names: list[str], *, pass_rates_layout: str = "struct", hf_metadata: bool = True):
    """The parquet schema of the record.

    ``pass_rates`` is written as a struct with one float64 field per model name (absent
    values null) by default, because ``datasets`` cannot read arrow ``map`` columns;
    ``pass_rates_layout="map"`` writes ``map<string, double>`` (pyarrow reads both;
    ``read_records`` accepts both)."""
    if pass_rates_layout == "map":
        rates_type = pa.map_(pa.string(), pa.float64())
    elif pass_rates_layout == "struct":
        rates_type = pa.struct([(n, pa.float64()) for n in pass_rate_names]) if pass_rate_names else pa.null()
    else:
        raise ValueError(f"pass_rates_layout must be 'struct' or 'map', not {pass_rates_layout!r}")
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
            ("choices", pa.list_(pa.string())),
            ("answer_type", pa.string()),
            ("precision", pa.int64()),
            ("category", pa.string()),
            ("source", pa.string()),
            ("pass_rates", rates_type),
            ("meta", pa.string()),
        ]
    )
    if hf_metadata and pass_rates_layout == "struct":
        schema = schema.with_metadata({b"huggingface": _hf_features_metadata(pass_rate_names)})
    return schema


def _relocate(ref: ImageRef, base_dir: Path | None, out_dir: Path, embed: bool) -> ImageRef:
    if ref.bytes is not None or ref.path is None:
        return ref
    src = Path(ref.path)
    if base_dir is not None and not src.is_absolute():
        src = base_dir / src
    if embed:
        try:
            return ImageRef(bytes=src.read_bytes(), path=ref.path)
        except OSError as exc:
            raise RecordError(f"cannot embed image {ref.path}: {exc}") from None
    if base_dir is None:
        return ref
    return ImageRef(path=os.path.relpath(src.resolve(), out_dir.resolve()))


def write_records(
    path: str | Path,
    records: Iterable[Record],
    *,
    base_dir: str | Path | None = None,
    embed_images: bool = False,
    pass_rates_layout: str = "struct",
) -> int:
    """Write records to ``.parquet`` or ``.jsonl`` (chosen by suffix); returns the count.

    Parquet: the columns of ``record_schema`` (images as ``{bytes, path}`` structs, meta
    as JSON text) with ``datasets`` metadata, so ``datasets.load_dataset("parquet", ...)``
    reads it with ``images`` as Image features, in row groups of
    ``PARQUET_ROW_GROUP_ROWS``. JSONL: one object per record, images as
    ``data:image/...;base64,`` text when they hold bytes, else their path.

    Records are written as they come (a ``Sequence``, e.g. streamed records, is read
    twice: once for the pass-rate names, once to write), so memory does not grow with
    the file. Images held as paths relative to ``base_dir`` are re-pointed relative to
    the output file's folder (or read and embedded with ``embed_images``)."""
    p = Path(path)
    recs: Sequence[Record] = records if isinstance(records, Sequence) else list(records)
    out_dir = p.parent
    bd = Path(base_dir) if base_dir is not None else None

    def row_of(r: Record) -> dict[str, Any]:
        d = r.to_dict()
        d["images"] = [_relocate(im, bd, out_dir, embed_images).to_dict() for im in r.images]
        return d

    p.parent.mkdir(parents=True, exist_ok=True)
    suffix = p.suffix.lower()
    n = 0
    if suffix == ".parquet":
        names = sorted({k for r in recs for k in (r.pass_rates or {})})
        schema = record_schema(names, pass_rates_layout=pass_rates_layout)
        with replacing(p) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            batch: list[dict[str, Any]] = []
            for r in recs:
                d = row_of(r)
                pr = d["pass_rates"]
                if pass_rates_layout == "map":
                    d["pass_rates"] = list(pr.items()) if pr else None
                else:
                    d["pass_rates"] = {k: (pr or {}).get(k) for k in names} if (pr and names) else None
                batch.append(d)
                if len(batch) == PARQUET_ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    n, batch = n + len(batch), []
            if batch or n == 0:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
    elif suffix == ".jsonl":
        with replacing(p) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for r in recs:
                d = row_of(r)
                d["images"] = [_image_to_json(im) for im in d["images"]]
                d["meta"] = json.loads(d["meta"])
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
                n += 1
    else:
        raise DataError(f"{p}: can write .parquet or .jsonl, not {suffix!r}")
    return n


def _image_to_json(im: dict[str, Any]) -> str:
    data = im.get("bytes")
    if data is None:
        return im["path"]
    return f"data:{_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"


def _mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:3] == b"GIF":
        return "image/gif"
    return "application/octet-stream"
