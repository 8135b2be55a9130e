"""MATH-Vision (MathLLMs/MathVision): test (3,040 items) and testmini (304).

Published parquet ``data/{test,testmini}-*.parquet`` with ``id, question, options (list),
image (path), decoded_image (embedded), answer, solution, level (1-5), subject``. The
question references its image as ``<image1>``; multiple-choice items have options (often
just the letters ``A``..``E`` when the options are drawn in the image) and a letter
answer; free-form items have ``options == []``.

Record: ``<imageN>`` rewritten as ``<image N>``; choices = options; category = subject;
``meta["level"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...records import RecordError
from ..io import LoadResult
from .common import (
    check_letter,
    decimals,
    image_cell,
    load_benchmark,
    normalize_placeholders,
    numeric_type,
    parse_option_list,
    require_text,
)

SOURCE = "MathLLMs/MathVision"
DEFAULT_SPLIT = "test"


def convert(row: Mapping[str, Any]) -> dict[str, Any]:
    rid = require_text(row, "id")
    question = normalize_placeholders(require_text(row, "question"), r"<image(\d+)>")
    answer = require_text(row, "answer")
    choices = parse_option_list(row.get("options"))
    if choices:
        if answer.strip():
            answer = check_letter(answer, len(choices))
        answer_type, precision = "multiple_choice", None
    else:
        answer_type = numeric_type(answer) if answer.strip() else None
        precision = decimals(answer) if answer_type == "float" else None
    image = image_cell(row.get("decoded_image")) or image_cell(row.get("image"))
    if image is None:
        raise RecordError("no image")
    level = row.get("level")
    return {
        "id": rid,
        "question": question,
        "answer": answer,
        "images": [image],
        "choices": choices or None,
        "answer_type": answer_type,
        "precision": precision,
        "category": row.get("subject") or None,
        "source": SOURCE,
        "meta": {"level": int(level) if level is not None else None, "subject": row.get("subject")},
    }


def load_mathvision(path: str | Path, split: str | None = None, **kw: Any) -> LoadResult:
    """Read MATH-Vision ``test`` (default) or ``testmini`` from a hub folder or a parquet file."""
    return load_benchmark(path, split or DEFAULT_SPLIT, convert, id_field="id", **kw)
