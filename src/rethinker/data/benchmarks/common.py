"""Helpers the benchmark readers share: finding a split's files, image columns, option
lists stored as text, placeholder spelling, answer types.

Every function here takes dataset fields (trusted-format published data), never model
output. ``parse_option_list`` is the only place that evaluates text, with
``ast.literal_eval`` on a size-bounded dataset field and a type check on the result.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ...records import RecordError
from ..io import DataError, LoadResult, build_records, iter_rows

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

#: Longest option-list text ``parse_option_list`` accepts (MMMU's longest is ~2 kB).
MAX_OPTIONS_TEXT = 20_000

_INT_RE = re.compile(r"[-+]?\d+")
_FLOAT_RE = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")


def parse_option_list(text: Any, *, field_name: str = "options") -> list[str]:
    """A dataset's option list written as Python literal text (MMMU: ``"['$63,020', ...]"``)
    -> list of strings. Lists pass through. Anything else is a RecordError."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    elif isinstance(text, str):
        if len(text) > MAX_OPTIONS_TEXT:
            raise RecordError(f"{field_name} text too long ({len(text)} characters)")
        stripped = text.strip()
        if not stripped:
            return []
        try:
            items = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise RecordError(f"{field_name} is not a list literal ({type(exc).__name__})") from None
        if not isinstance(items, (list, tuple)):
            raise RecordError(f"{field_name} is a {type(items).__name__}, not a list")
    elif text is None:
        return []
    else:
        raise RecordError(f"{field_name} is a {type(text).__name__}, not a list")
    if not all(isinstance(o, str) for o in items):
        raise RecordError(f"choices must be strings ({field_name} holds {sorted({type(o).__name__ for o in items})})")
    return [o for o in items]


def letter_of(answer: str, choices: list[str]) -> str:
    """The letter of ``answer`` among ``choices`` (exact text match, then whitespace- and
    case-insensitive). RecordError when it is not (or ambiguously) among them."""
    hits = [i for i, c in enumerate(choices) if c == answer]
    if not hits:
        norm = " ".join(answer.split()).lower()
        hits = [i for i, c in enumerate(choices) if " ".join(c.split()).lower() == norm]
    if len(hits) != 1:
        raise RecordError(f"answer {answer!r} is {'not among' if not hits else 'ambiguous among'} the choices")
    return LETTERS[hits[0]]


def check_letter(answer: str, n_choices: int) -> str:
    """A multiple-choice answer must be one of the first ``n_choices`` letters (an empty
    answer stays empty, for the record's own "missing answer" check)."""
    a = answer.strip()
    if not a:
        return ""
    if len(a) != 1 or a not in LETTERS[:n_choices]:
        raise RecordError(
            f"answer {answer!r} is not a letter among A-{LETTERS[n_choices - 1]}"
            if n_choices
            else f"answer {answer!r} given but no options"
        )
    return a


def numeric_type(answer: str) -> str:
    """``integer`` / ``float`` when the answer is a plain number, else ``expression``."""
    a = (
        answer.strip().replace(",", "")
        if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", answer.strip())
        else answer.strip()
    )
    if _INT_RE.fullmatch(a):
        return "integer"
    if _FLOAT_RE.fullmatch(a):
        return "float"
    return "expression"


def decimals(answer: str) -> int | None:
    """Digits after the decimal point of a plain number (``"1.25"`` -> 2)."""
    a = answer.strip()
    if _FLOAT_RE.fullmatch(a) and "." in a and "e" not in a.lower():
        return len(a.split(".", 1)[1])
    return None


def normalize_placeholders(text: str, pattern: str) -> str:
    """Rewrite a benchmark's own image placeholder spelling as docs/records.md's ``<image N>``.
    ``pattern`` is a regex with one group capturing N (``<image_(\\d+)>`` for EMMA)."""
    return re.sub(pattern, lambda m: f"<image {int(m.group(1))}>", text)


def number_bare_placeholders(text: str, token: str = "<image>") -> str:
    """Number bare ``<image>`` tokens in order: ``<image 1>``, ``<image 2>`` ..."""
    parts = text.split(token)
    out = parts[0]
    for k, part in enumerate(parts[1:], start=1):
        out += f"<image {k}>" + part
    return out


def image_columns(row: Mapping[str, Any], prefix: str = "image_", n: int = 7) -> list[Any]:
    """The non-empty ``image_1`` .. ``image_n`` cells, in order."""
    out = []
    for k in range(1, n + 1):
        v = row.get(f"{prefix}{k}")
        if v is None or v == "" or (isinstance(v, dict) and v.get("bytes") is None and not v.get("path")):
            continue
        out.append(v)
    return out


def image_cell(value: Any) -> Any:
    """One image cell as published: a ``{bytes, path}`` struct (embedded) or a path.
    A struct without bytes keeps its path."""
    if isinstance(value, dict):
        if value.get("bytes") is None and not value.get("path"):
            return None
        return value
    if isinstance(value, str) and not value.strip():
        return None
    return value


def none_text(value: Any) -> str:
    """Dataset text where ``None`` / ``"none"`` / NaN mean absent -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    s = str(value)
    return "" if s.strip().lower() in ("none", "nan") else s


def require_text(row: Mapping[str, Any], key: str) -> str:
    """A text field that must be present: RecordError naming it when absent."""
    if key not in row:
        raise RecordError(f"missing field {key!r}")
    value = row[key]
    return "" if value is None else str(value)


def subset_path(path: str | Path, names: list[str]) -> Path:
    """``path`` itself, or its sub-folder named like one of ``names`` (a hub config
    folder such as ``standard (10 options)``) when it has one."""
    p = Path(path)
    if p.is_dir():
        for name in names:
            if (p / name).is_dir():
                return p / name
    return p


def load_benchmark(
    path: str | Path,
    split: str | None,
    convert: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    *,
    id_field: str,
    base_dir: str | Path | None = None,
    require_images: bool = True,
    check_images: bool = True,
    rows: Iterator[Any] | None = None,
) -> LoadResult:
    """Run one benchmark's row converter over a file or hub folder (``split`` picks the
    split's files in a folder; a single file is read whole)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if base_dir is None:
        base_dir = p if p.is_dir() else p.parent
    if rows is None:
        rows = iter_rows(p, split if p.is_dir() else None)
    return build_records(
        rows,
        convert,
        base_dir=base_dir,
        check_images=check_images,
        require_images=require_images,
        id_field=id_field,
        source=str(p),
    )
