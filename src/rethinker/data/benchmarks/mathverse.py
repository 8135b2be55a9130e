"""MathVerse (AI4Math/MathVerse): testmini, 3,940 image items in five problem versions
(Text Dominant, Text Lite, Vision Intensive, Vision Dominant, Vision Only) plus 788
Text Only items in ``testmini_text_only.parquet``.

Published fields: ``sample_index, problem_index, problem_version, question, image,
answer, question_type (multi-choice | free-form), metadata {split, source, subject,
subfield}, query_wo, query_cot, question_for_eval``. Multiple-choice questions list their
options in the question text (``Choices:\\nA:40°\\nB:60°...``) and answer with the letter.

Record: the question as published (a Vision Only item, whose question is in the image,
gets the published ``query_cot`` instruction instead); options parsed out of the
``Choices:`` block into ``choices`` (the text keeps them, so the prompt does not repeat
them). Category: ``problem_version`` (MathVerse reports each version apart).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...records import RecordError
from ..io import LoadResult
from .common import LETTERS, check_letter, image_cell, load_benchmark, numeric_type, require_text

SOURCE = "AI4Math/MathVerse"
DEFAULT_SPLIT = "testmini"
TEXT_ONLY = "Text Only"

_CHOICE_LINE = re.compile(r"^\s*\(?([A-H])\s*[:.)：]\s*(.*?)\s*$")


def parse_choices(question: str) -> list[str]:
    """Option texts of a ``Choices:`` (or ``Choice:``) block, in letter order; [] when the
    question has none or the letters are not A, B, C ... in order."""
    m = re.search(r"(?:^|\n)\s*Choices?\s*:?\s*\n", question)
    if not m:
        return []
    out: list[str] = []
    for line in question[m.end() :].split("\n"):
        lm = _CHOICE_LINE.match(line)
        if not lm:
            if line.strip():
                break
            continue
        if lm.group(1) != LETTERS[len(out)]:
            return []
        out.append(lm.group(2))
    return out


def convert(row: Mapping[str, Any]) -> dict[str, Any]:
    sid = require_text(row, "sample_index")
    version = require_text(row, "problem_version")
    question = require_text(row, "question")
    answer = require_text(row, "answer")
    qtype = row.get("question_type")
    image = image_cell(row.get("image"))
    if version != TEXT_ONLY and image is None:
        raise RecordError("no image")
    if not question.strip():
        question = row.get("query_cot") or row.get("query_wo") or ""
    choices = parse_choices(question) if qtype == "multi-choice" else []
    if qtype == "multi-choice":
        if choices:
            answer = check_letter(answer, len(choices))
        answer_type = "multiple_choice"
    else:
        answer_type = numeric_type(answer) if answer.strip() else None
    meta = dict(row.get("metadata") or {})
    meta.update(
        problem_index=str(row.get("problem_index")),
        problem_version=version,
        question_type=qtype,
        question_for_eval=row.get("question_for_eval"),
    )
    return {
        "id": sid,
        "question": question,
        "answer": answer,
        "images": [image] if image is not None else [],
        "choices": choices or None,
        "answer_type": answer_type,
        "category": version,
        "source": SOURCE,
        "meta": meta,
    }


def load_mathverse(path: str | Path, split: str | None = None, **kw: Any) -> LoadResult:
    """Read MathVerse testmini: a hub folder (``testmini.parquet``, and
    ``testmini_text_only.parquet`` when ``split="testmini_text_only"``), a parquet file,
    or ``testmini.json`` beside its image folders."""
    p = Path(path)
    split = split or DEFAULT_SPLIT
    if p.is_dir():
        for name in (f"{split}.parquet", f"{split}.json"):
            if (p / name).is_file():
                return load_benchmark(
                    p / name, None, convert, id_field="sample_index", require_images=False, base_dir=p, **kw
                )
    return load_benchmark(p, split, convert, id_field="sample_index", require_images=False, **kw)
