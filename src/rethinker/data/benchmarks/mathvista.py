"""MathVista (AI4Math/MathVista): testmini (1,000 items) and test (5,141, no answers).

Published parquet ``data/testmini-*.parquet`` with ``pid, question, image (path),
decoded_image (embedded), choices, unit, precision, answer, question_type
(multi_choice | free_form), answer_type (text | integer | float | list), metadata
{category, context, grade, img_height, img_width, language, skills, source, split, task},
query``. The JSON release (``testmini.json`` + ``images/``) has the same fields.

Record: the question is MathVista's own query without its ``Choices:`` block (the
options are rendered by ``rethinker.prompt`` as ``A. ...`` lines): ``Hint: ...`` line,
``Question: ...`` with ``(Unit: ...)`` when there is a unit. Multiple-choice answers
become the option letter (the published answer is the option text, kept in
``meta["answer_text"]``). Category: ``metadata.task`` (the benchmark's task split).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...records import RecordError
from ..io import LoadResult
from .common import image_cell, letter_of, load_benchmark, none_text, require_text

SOURCE = "AI4Math/MathVista"
DEFAULT_SPLIT = "testmini"

#: MathVista's hints, by (question_type, answer_type, precision), as its build_query writes them.
HINTS = {
    "multi_choice": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, "
    "at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, "
    "e.g., 1, 2, 3, at the end.",
    "float1": "Hint: Please answer the question requiring a floating-point number with one decimal place and "
    "provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float2": "Hint: Please answer the question requiring a floating-point number with two decimal places and "
    "provide the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
    "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}


def hint_for(row: Mapping[str, Any]) -> str:
    """The hint line: the first line of the published ``query`` when it is a hint, else
    rebuilt from the question and answer types as MathVista does."""
    query = row.get("query") or ""
    first = query.split("\n", 1)[0]
    if first.startswith("Hint:"):
        return first
    if row.get("question_type") == "multi_choice":
        return HINTS["multi_choice"]
    at = row.get("answer_type")
    if at == "float":
        return HINTS["float2" if _precision(row) == 2 else "float1"]
    return HINTS.get(at or "", "")


def _precision(row: Mapping[str, Any]) -> int | None:
    p = row.get("precision")
    if p is None or (isinstance(p, float) and p != p):
        return None
    return int(p)


def convert(row: Mapping[str, Any]) -> dict[str, Any]:
    pid = require_text(row, "pid")
    question = require_text(row, "question")
    answer = require_text(row, "answer")
    qtype = row.get("question_type")
    choices = list(row.get("choices") or [])
    if not all(isinstance(c, str) for c in choices):
        raise RecordError("choices must be strings")
    meta = dict(row.get("metadata") or {})
    meta.pop("img_height", None), meta.pop("img_width", None)
    meta.update(question_type=qtype, published_answer_type=row.get("answer_type"), unit=none_text(row.get("unit")))
    if qtype == "multi_choice":
        if not choices:
            raise RecordError("multiple-choice item without choices")
        if answer.strip():
            meta["answer_text"] = answer
            answer = letter_of(answer, choices)
        answer_type, precision = "multiple_choice", None
    else:
        choices = []
        answer_type, precision = row.get("answer_type") or None, _precision(row)
    unit = none_text(row.get("unit"))
    text = f"Question: {question}" + (f" (Unit: {unit})" if unit else "")
    hint = hint_for(row)
    image = image_cell(row.get("decoded_image")) or image_cell(row.get("image"))
    return {
        "id": pid,
        "question": f"{hint}\n{text}" if hint and question.strip() else question,
        "answer": answer,
        "images": [image] if image is not None else [],
        "choices": choices or None,
        "answer_type": answer_type,
        "precision": precision,
        "category": meta.get("task") or None,
        "source": SOURCE,
        "meta": meta,
    }


def load_mathvista(path: str | Path, split: str | None = None, **kw: Any) -> LoadResult:
    """Read MathVista (a hub folder, a parquet file, or ``testmini.json`` beside ``images/``)."""
    return load_benchmark(path, split or DEFAULT_SPLIT, convert, id_field="pid", **kw)
