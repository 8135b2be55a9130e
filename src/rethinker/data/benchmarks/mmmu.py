"""MMMU (MMMU/MMMU, validation: 900 items in 30 subjects) and MMMU-Pro (MMMU/MMMU_Pro,
test: ``standard (10 options)`` 1,730 items and ``vision`` 1,730 screenshots).

MMMU publishes one folder per subject (``Accounting/validation-*.parquet``; the merged
copy ``lmms-lab/MMMU`` has ``data/validation-*.parquet``) with ``id, question, options
(a Python list written as text), explanation, image_1 .. image_7, img_type, answer,
topic_difficulty, question_type (multiple-choice | open), subfield``. Questions and
options reference images as ``<image N>``. MMMU-Pro standard has the same fields plus
``subject`` (no ``question_type``: all multiple choice); MMMU-Pro vision has ``id, image,
options, answer, subject`` with the question and options drawn in the screenshot.

Options are parsed from the dataset field with ``ast.literal_eval`` (a dataset field,
never model output). Record images: ``image_1`` .. ``image_7`` in order (so ``<image N>``
is ``images[N-1]``). Category: the subject (from the id ``validation_Art_Theory_12`` for
MMMU; the ``subject`` field for MMMU-Pro).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...records import RecordError
from ..io import LoadResult
from .common import (
    check_letter,
    image_cell,
    image_columns,
    load_benchmark,
    numeric_type,
    parse_option_list,
    require_text,
    subset_path,
)

MMMU_SOURCE = "MMMU/MMMU"
PRO_SOURCE = "MMMU/MMMU_Pro"

#: The question of an MMMU-Pro vision item (its question and options are in the image).
VISION_QUESTION = "Answer the multiple-choice question shown in the image with the letter of the correct option."

_ID_RE = re.compile(r"^(?:dev|validation|test)_(.+)_\d+$")


def subject_of(item_id: str) -> str | None:
    """``validation_Art_Theory_12`` -> ``Art_Theory``."""
    m = _ID_RE.match(item_id)
    return m.group(1) if m else None


def _images(row: Mapping[str, Any]) -> list[Any]:
    return [image_cell(v) for v in image_columns(row, "image_", 7)]


def convert_mmmu(row: Mapping[str, Any], *, source: str = MMMU_SOURCE) -> dict[str, Any]:
    rid = require_text(row, "id")
    question = require_text(row, "question")
    answer = require_text(row, "answer")
    choices = parse_option_list(row.get("options"))
    qtype = row.get("question_type") or ("multiple-choice" if choices else "open")
    images = _images(row)
    if not images:
        raise RecordError("no image")
    if qtype == "multiple-choice":
        if not choices:
            raise RecordError("multiple-choice item without options")
        answer = check_letter(answer, len(choices))
        answer_type = "multiple_choice"
    else:
        choices = []
        answer_type = numeric_type(answer) if answer.strip() else None
        if answer_type == "expression":
            answer_type = "text"
    subject = row.get("subject") or subject_of(rid)
    meta = {k: row.get(k) for k in ("subfield", "topic_difficulty", "img_type") if row.get(k) is not None}
    meta.update(question_type=qtype, subject=subject)
    return {
        "id": rid,
        "question": question,
        "answer": answer,
        "images": images,
        "choices": choices or None,
        "answer_type": answer_type,
        "category": subject,
        "source": source,
        "meta": meta,
    }


def convert_pro_vision(row: Mapping[str, Any]) -> dict[str, Any]:
    rid = require_text(row, "id")
    answer = require_text(row, "answer")
    options = parse_option_list(row.get("options"))
    if not options:
        raise RecordError("item without options")
    image = image_cell(row.get("image"))
    if image is None:
        raise RecordError("no image")
    return {
        "id": rid,
        "question": VISION_QUESTION,
        "answer": check_letter(answer, len(options)),
        "images": [image],
        "choices": None,  # the options are in the screenshot, not in the text
        "answer_type": "multiple_choice",
        "category": row.get("subject") or None,
        "source": PRO_SOURCE,
        "meta": {"options": options, "n_options": len(options), "subject": row.get("subject")},
    }


def load_mmmu(path: str | Path, split: str | None = None, **kw: Any) -> LoadResult:
    """Read MMMU ``validation`` (default): the hub folder of subject folders, the merged
    ``data/`` folder, or one parquet file."""
    return load_benchmark(path, split or "validation", convert_mmmu, id_field="id", **kw)


def load_mmmu_pro_standard(path: str | Path, split: str | None = None, **kw: Any) -> LoadResult:
    """Read MMMU-Pro ``standard (10 options)`` (the repository folder or that config folder)."""
    p = subset_path(path, ["standard (10 options)"])
    return load_benchmark(p, split or "test", lambda r: convert_mmmu(r, source=PRO_SOURCE), id_field="id", **kw)


def load_mmmu_pro_vision(path: str | Path, split: str | None = None, **kw: Any) -> LoadResult:
    """Read MMMU-Pro ``vision`` (the repository folder or that config folder)."""
    p = subset_path(path, ["vision"])
    return load_benchmark(p, split or "test", convert_pro_vision, id_field="id", **kw)
