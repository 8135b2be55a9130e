"""ViRL39K (TIGER-Lab/ViRL39K): the 38,870 training queries VL-Rethinker was trained on.

Published as one parquet (``39Krelease.parquet``) beside ``images.zip``. Fields:
``qid, question, answer (in \\boxed{}), PassRate_32BTrained, PassRate_7BBase, category,
source, image`` (a list of relative paths ``images/...``). The 7B pass rate is annotated
for about half the queries only; a missing, NaN or negative value means "not
annotated" and is left out of ``pass_rates``.

Record: ``qid`` -> id; ``image`` -> images; ``PassRate_32BTrained`` ->
``pass_rates["32B-trained"]``; ``PassRate_7BBase`` -> ``pass_rates["7B-base"]``; bare
``<image>`` tokens in the question numbered ``<image 1>``, ``<image 2>`` ...
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .benchmarks.common import number_bare_placeholders
from .io import DataError, LoadResult, apply_mapping, build_records, iter_rows, parse_pass_rates
from .stream import open_records

SOURCE = "TIGER-Lab/ViRL39K"

MAPPING = {
    "qid": "id",
    "image": "images",
    "PassRate_32BTrained": "pass_rates.32B-trained",
    "PassRate_7BBase": "pass_rates.7B-base",
}

#: ``--model-size`` -> the pass-rate column that describes a model of that size.
MODEL_SIZES = {"7B": "7B-base", "32B": "32B-trained"}


def _annotated(value: Any) -> Any:
    """A pass-rate cell, or None when it means 'not annotated' (None, NaN, negative)."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value  # let parse_pass_rates report it
    return None if math.isnan(f) or f < 0 else value


def convert(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = dict(raw)
    for col in ("PassRate_32BTrained", "PassRate_7BBase"):
        if col in raw:
            raw[col] = _annotated(raw[col])
    row = apply_mapping(raw, MAPPING)
    row["pass_rates"] = parse_pass_rates(row.get("pass_rates"))
    if isinstance(row.get("question"), str):
        row["question"] = number_bare_placeholders(row["question"])
    row.setdefault("source", None)
    return row


def extract_images(archive: str | Path, dest: str | Path) -> int:
    """Extract an image archive (``images.zip``) under ``dest``; members that would land
    outside ``dest`` (absolute paths, ``..``) are refused. Returns the number of files."""
    dest = Path(dest).resolve()
    n = 0
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            target = (dest / member.filename).resolve()
            if dest not in target.parents and target != dest:
                raise DataError(f"{archive}: member {member.filename!r} would extract outside {dest}")
            if member.is_dir():
                continue
            zf.extract(member, dest)
            n += 1
    return n


def find_parquet(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted(path.glob("*.parquet"))
    if not files:
        raise DataError(f"{path}: no parquet file")
    if len(files) > 1:
        release = [f for f in files if "release" in f.name.lower()]
        if len(release) == 1:
            return release[0]
        raise DataError(f"{path}: several parquet files ({[f.name for f in files]}); name one")
    return files[0]


def load_virl39k(
    path: str | Path,
    split: str | None = None,
    *,
    image_dir: str | Path | None = None,
    extract: bool = True,
    check_images: bool = True,
) -> LoadResult:
    """Read ViRL39K from its parquet (or the folder holding it). Image paths resolve
    against ``image_dir`` (default: the parquet's folder). When that folder has no
    ``images/`` but has ``images.zip``, the archive is extracted there first (``extract``)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    parquet = find_parquet(p)
    base = Path(image_dir) if image_dir is not None else parquet.parent
    archive = base / "images.zip"
    if extract and not (base / "images").exists() and archive.is_file():
        extract_images(archive, base)
    return build_records(
        iter_rows(parquet), convert, base_dir=base, check_images=check_images, id_field="qid", source=str(parquet)
    )


def load_any(path: str | Path, mapping: dict[str, str] | None = None) -> LoadResult:
    """ViRL39K's release parquet through its reader; anything else through
    ``open_records`` (a parquet or JSONL file is read on demand)."""
    p = Path(path)
    if mapping is None and p.suffix == ".parquet" and p.is_file():
        names = set(pq.read_schema(p).names)
        if {"qid", "PassRate_32BTrained"} <= names:
            return load_virl39k(p)
    return open_records(p, mapping)
