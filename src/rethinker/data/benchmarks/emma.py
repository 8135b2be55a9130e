"""EMMA (luckychao/EMMA): test, 2,788 items in four subject configs — Math (892),
Physics (156), Chemistry (1,176), Coding (564).

Published per config (``Math/test-*.parquet`` ...): ``pid, question, options (list or
None), answer, image_1 .. image_5, solution, subject, task, category, source, type
(Multiple Choice | Open-ended), context (background text or None)``. Questions reference
images as ``<image_1>``.

Record: ``context`` (when present) then the question; ``<image_N>`` rewritten as
``<image N>``; choices = options; category = subject (EMMA reports per subject);
``meta`` keeps task, EMMA's fine category and the original source.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...records import RecordError
from ..io import DataError, LoadResult, build_records, iter_rows
from .common import (
    check_letter,
    image_cell,
    image_columns,
    none_text,
    normalize_placeholders,
    numeric_type,
    parse_option_list,
    require_text,
)

SOURCE = "luckychao/EMMA"
SUBJECTS = ("Math", "Physics", "Chemistry", "Coding")


def convert(row: Mapping[str, Any]) -> dict[str, Any]:
    pid = require_text(row, "pid")
    question = normalize_placeholders(require_text(row, "question"), r"<image_(\d+)>")
    context = normalize_placeholders(none_text(row.get("context")), r"<image_(\d+)>")
    answer = require_text(row, "answer")
    choices = parse_option_list(row.get("options"))
    images = [image_cell(v) for v in image_columns(row, "image_", 5)]
    if not images:
        raise RecordError("no image")
    if choices:
        answer = check_letter(answer, len(choices))
        answer_type = "multiple_choice"
    else:
        answer_type = numeric_type(answer) if answer.strip() else None
    meta = {k: row.get(k) for k in ("subject", "task", "category", "source", "type")}
    return {
        "id": pid,
        "question": f"{context}\n{question}" if context.strip() else question,
        "answer": answer,
        "images": images,
        "choices": choices or None,
        "answer_type": answer_type,
        "category": row.get("subject") or None,
        "source": SOURCE,
        "meta": meta,
    }


def load_emma(
    path: str | Path, split: str | None = None, *, subjects: tuple[str, ...] = SUBJECTS, **kw: Any
) -> LoadResult:
    """Read EMMA: the repository folder (every subject folder in ``subjects`` that is
    there), one subject folder, or one parquet file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    split = split or "test"
    folders = [p / s for s in subjects if (p / s).is_dir()] if p.is_dir() else []

    def rows():
        if not folders:
            yield from iter_rows(p, split if p.is_dir() else None)
        for f in folders:
            yield from iter_rows(f, split)

    base = p if p.is_dir() else p.parent
    return build_records(
        rows(), convert, base_dir=base, id_field="pid", source=str(p), check_images=kw.get("check_images", True)
    )
