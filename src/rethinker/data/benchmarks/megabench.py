"""MEGA-Bench (TIGER-Lab/MEGA-Bench): 505 tasks; configs ``core`` (440 tasks, 6,531
queries), ``open`` (65 open-ended tasks), and ``*_single_image`` variants; split ``test``.

Published fields: ``id, task_name, task_description, global_media, example_text,
example_media, query_text, query_media, answer, metric_info, eval_context,
taxonomy_tree_path, application, input_format, output_format`` — the media columns, the
answer and ``metric_info`` are Python literals written as text (lists of paths inside the
separately published ``data.zip``; ``{'answer': '11'}``;
``{'field_score_function': {'answer': 'exact_str_match'}, 'aggregation': {...},
'response_parse_function': 'answer_string'}``).

Only tasks a rule-based judge can score are kept: one answer field scored by one of
``RULE_METRICS`` (exact / case-insensitive / simple string match, numeric match), image
media only. Every other query is counted in ``LoadResult.excluded`` with its reason, so
coverage is reported, not hidden. Prompt: ``task_description``, ``example_text`` and
``query_text`` joined by newlines (as MEGA-Bench's lmms-eval task does).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...records import RecordError
from ..io import Excluded, LoadResult
from .common import MAX_OPTIONS_TEXT, load_benchmark, number_bare_placeholders, require_text, subset_path

SOURCE = "TIGER-Lab/MEGA-Bench"

#: field_score_function -> the record's answer_type for the judge.
RULE_METRICS = {
    "exact_str_match": "text",
    "exact_str_match_case_insensitive": "text",
    "simple_str_match": "text",
    "general_numerical_match": "float",
}

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")


def literal(text: Any, what: str) -> Any:
    """A dataset field written as a Python literal -> value (``ast.literal_eval`` on a
    size-bounded dataset field, never on model output)."""
    if not isinstance(text, str):
        return text
    if len(text) > MAX_OPTIONS_TEXT:
        raise RecordError(f"{what} text too long ({len(text)} characters)")
    try:
        return ast.literal_eval(text.strip()) if text.strip() else None
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise RecordError(f"{what} is not a literal ({type(exc).__name__})") from None


def convert(row: Mapping[str, Any]) -> dict[str, Any]:
    rid = require_text(row, "id")
    task = require_text(row, "task_name")
    metric_info = literal(row.get("metric_info"), "metric_info") or {}
    if not isinstance(metric_info, dict):
        raise RecordError("metric_info is not a dict")
    scores = metric_info.get("field_score_function") or {}
    if len(scores) != 1:
        raise Excluded(f"{len(scores)} answer fields (rule judge scores one)")
    ((field, metric),) = scores.items()
    if metric not in RULE_METRICS:
        raise Excluded(f"metric {metric} is not rule-scorable here")
    media: list[str] = []
    for col in ("global_media", "example_media", "query_media"):
        value = literal(row.get(col), col) or []
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            raise RecordError(f"{col} is not a list of paths")
        media += value
    if any(m.lower().endswith(VIDEO_SUFFIXES) for m in media):
        raise Excluded("video input")
    answer_obj = literal(require_text(row, "answer"), "answer")
    if not isinstance(answer_obj, dict) or field not in answer_obj:
        raise RecordError(f"answer has no field {field!r}")
    answer = answer_obj[field]
    if isinstance(answer, (list, dict)):
        raise Excluded("structured answer")
    answer = "" if answer is None else str(answer)
    output_format = row.get("output_format")
    answer_type = "multiple_choice" if output_format == "multiple_choice" else RULE_METRICS[metric]
    parts = [row.get("task_description") or "", row.get("example_text") or "", row.get("query_text") or ""]
    question = number_bare_placeholders("\n".join(parts).strip())
    return {
        "id": rid,
        "question": question,
        "answer": answer,
        "images": media,
        "answer_type": answer_type,
        "category": row.get("application") or None,
        "source": SOURCE,
        "meta": {
            "task_name": task,
            "metric": metric,
            "answer_field": field,
            "output_format": output_format,
            "input_format": row.get("input_format"),
            "taxonomy_tree_path": row.get("taxonomy_tree_path"),
            "response_parse_function": metric_info.get("response_parse_function"),
            "n_global_media": len(literal(row.get("global_media"), "global_media") or []),
        },
    }


def load_megabench(
    path: str | Path, split: str | None = None, *, config: str = "core", media_dir: str | Path | None = None, **kw: Any
) -> LoadResult:
    """Read MEGA-Bench ``config`` (default ``core``) from the repository folder or that
    config folder; media paths resolve against ``media_dir`` (where ``data.zip`` was
    extracted; default: the repository folder). ``excluded`` lists what is out of scope."""
    root = Path(path)
    p = subset_path(root, [config])
    base = Path(media_dir) if media_dir is not None else (root if root.is_dir() else root.parent)
    return load_benchmark(p, split or "test", convert, id_field="id", base_dir=base, **kw)
