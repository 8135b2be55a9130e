"""``OUTPUT_DIR/report.html``: an evaluation's predictions on one self-contained page.

Per benchmark and category, wrong answers first: the image, question, options,
response, extracted answer, gold answer and the judge's verdict reason, with the
summary table (accuracy, 95% interval) on top. Built from ``predictions.jsonl`` (and
``summary.json`` when there), plus ``items.jsonl`` and ``thumbs/``, which
``rethinker eval`` writes for this page (``ItemSaver``, ``save_items``): each item's question, options
and image thumbnails, stored once. Without them (older outputs) the page shows the
prompt text instead.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .html import ImageSheet, esc, fmt, page, radios, select, table
from .images import ThumbnailStore
from .run_report import read_rows
from .summary import summarize

REPORT_FILE = "report.html"
ITEMS_FILE = "items.jsonl"
THUMBS_DIR = "thumbs"
#: Items shown per benchmark by default (wrong ones first).
DEFAULT_MAX_ITEMS = 1000
NO_CATEGORY = "uncategorized"


class ItemSaver:
    """``OUTPUT_DIR/items.jsonl`` for one benchmark, added to record by record: the items
    already there are read once, on creation; ``add(rec)`` appends the question, options
    and image thumbnails of a record not there yet (thumbnails under
    ``OUTPUT_DIR/thumbs/``, one per distinct image). So a caller that reads its records
    anyway (``rethinker eval``) needs no pass of its own for them. Never raises on a bad
    image (it is left out)."""

    def __init__(self, out_dir: str | Path, benchmark: str, base_dir: str | Path | None = None):
        self.out = Path(out_dir)
        self.path = self.out / ITEMS_FILE
        self.benchmark = benchmark
        self.base_dir = base_dir
        self.seen = {(str(r.get("benchmark")), str(r.get("id"))) for r in read_rows(self.path)}
        self.store = ThumbnailStore(self.out / THUMBS_DIR)
        self.added = 0
        self._fh = None

    def missing(self, rid: Any) -> bool:
        """Whether the item of id ``rid`` is not stored yet."""
        return (self.benchmark, str(rid)) not in self.seen

    def add(self, rec: Any) -> bool:
        """Store ``rec``'s item unless it is there already; whether it was added."""
        key = (self.benchmark, str(rec.id))
        if key in self.seen:
            return False
        self.seen.add(key)
        line = json.dumps(
            {
                "benchmark": self.benchmark,
                "id": rec.id,
                "question": rec.question,
                "choices": rec.choices,
                "images": [self.store.add(ref, self.base_dir) for ref in rec.images],
            },
            ensure_ascii=False,
        )
        if self._fh is None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
            if self._fh.tell() and not _ends_with_newline(self.path):
                self._fh.write("\n")  # a line torn by an interrupted run stays apart from the new ones
        self._fh.write(line + "\n")
        self._fh.flush()  # whole lines on disk as they come: an interrupted run keeps what it stored
        self.added += 1
        return True

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ItemSaver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


def save_items(out_dir: str | Path, benchmark: str, records: Iterable[Any], base_dir: str | Path | None = None) -> int:
    """Append to ``OUTPUT_DIR/items.jsonl`` the question, options and image thumbnails of
    the records not there yet (see ``ItemSaver``); returns how many were added."""
    with ItemSaver(out_dir, benchmark, base_dir) as saver:
        for rec in records:
            saver.add(rec)
        return saver.added


_CHAT_TOKENS = re.compile(r"<\|[^|>]{1,40}\|>")


def prompt_question(prompt: str) -> str:
    """The user text of a chat-template prompt (special tokens and roles dropped), for
    predictions without an ``items.jsonl`` entry."""
    text = _CHAT_TOKENS.sub("", prompt or "")
    text = re.sub(r"^\s*(system\n.*?\n)?\s*user\n", "", text, flags=re.S)
    return re.sub(r"\n\s*assistant\s*$", "", text).strip()


def order_predictions(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """By benchmark (first appearance), category, wrong before correct, then id."""
    bench_order: dict[str, int] = {}
    for r in rows:
        bench_order.setdefault(str(r.get("benchmark")), len(bench_order))
    return sorted(
        rows,
        key=lambda r: (
            bench_order[str(r.get("benchmark"))],
            str(r.get("category") or NO_CATEGORY),
            bool(r.get("correct")),
            str(r.get("id")),
        ),
    )


def _summary_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, s in summary.items():
        lo, hi = (s.get("ci95") or [None, None])[:2]
        ci = f"[{lo:.3f}, {hi:.3f}]" if lo is not None else "-"
        rows.append(
            (name, "overall", s.get("n_items"), s.get("n_skipped"), fmt(s.get("accuracy")), ci, s.get("error") or "")
        )
        counts = s.get("category_counts") or {}
        for cat, acc in (s.get("by_category") or {}).items():
            rows.append(("", cat, counts.get(cat, ""), "", fmt(acc), "", ""))
    return table(["benchmark", "category", "items", "skipped", "accuracy", "95% CI", "note"], rows)


def _item(row: Mapping[str, Any], info: Mapping[str, Any] | None, sheet: ImageSheet, thumbs: Path) -> str:
    bench = str(row.get("benchmark"))
    cat = str(row.get("category") or NO_CATEGORY)
    ok = bool(row.get("correct"))
    imgs = sheet.thumbs(thumbs, (info or {}).get("images"), alt=f"image of {row.get('id')}")
    if info:
        question = info.get("question")
        choices = info.get("choices")
    else:
        question, choices = prompt_question(str(row.get("prompt") or "")), None
    opts = (
        "<div>" + "<br>".join(f"{chr(65 + i)}. {esc(c)}" for i, c in enumerate(choices)) + "</div>" if choices else ""
    )
    score = f" · {row['n_correct']}/{row['n_samples']} samples correct" if "n_samples" in row else ""
    head = (
        f'<div class="qhead">{"".join(imgs)}<div><div class="meta">{esc(bench)} · {esc(cat)} · '
        f'{esc(row.get("id"))}</div><div class="question">{esc(question)}</div>{opts}'
        f'<div>gold: <span class="gold">{esc(row.get("answer"))}</span> · extracted: '
        f"<code>{esc(row.get('extracted'))}</code> · verdict: {esc(row.get('reason'))}{score}"
        + ("" if row.get("finished", True) else " · truncated")
        + "</div></div></div>"
    )
    badge = f'<span class="badge {"b-ok" if ok else "b-bad"}">{"correct" if ok else "wrong"}</span>'
    resp = (
        f'<div class="resp {"ok" if ok else "bad"}" data-tags="{"correct" if ok else "wrong"}">'
        f'<div class="rmeta">{badge} response{" (sample 1)" if "n_samples" in row else ""}</div>'
        f'<pre class="text">{esc(row.get("response"))}</pre>'
    )
    others = (row.get("samples") or [])[1:]
    if others:
        resp += (
            f"<details><summary>{len(others)} more sample(s)</summary>"
            + "".join(
                f'<div class="rmeta">sample {k + 2}: {"correct" if s.get("correct") else "wrong"} · '
                f"extracted <code>{esc(s.get('extracted'))}</code> · {esc(s.get('reason'))}</div>"
                f'<pre class="text">{esc(s.get("response"))}</pre>'
                for k, s in enumerate(others)
            )
            + "</details>"
        )
    resp += "</div>"
    return f'<div class="item" data-bench="{esc(bench)}" data-group="{esc(bench + " / " + cat)}">{head}{resp}</div>'


def _read_summary(d: Path, preds: Sequence[Mapping[str, Any]]) -> dict:
    """``summary.json``, else (a run still going, or killed) the summary of ``preds``."""
    try:
        summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        summary = None
    if isinstance(summary, dict):
        return summary
    by_bench: dict[str, list] = defaultdict(list)
    for r in preds:
        by_bench[str(r["benchmark"])].append(r)
    return {b: summarize(rs, benchmark=b) for b, rs in by_bench.items()}


def _select_shown(
    preds: Sequence[Mapping[str, Any]], max_items: int
) -> tuple[dict[str, list], list[Mapping[str, Any]], list[str]]:
    """(ordered predictions per benchmark, those shown, notes on the ones left out): at
    most ``max_items`` per benchmark (0: all), the wrong ones kept first across categories."""
    wrong_first: dict[str, list] = defaultdict(list)
    for r in order_predictions(preds):
        wrong_first[str(r["benchmark"])].append(r)
    shown: list[Mapping[str, Any]] = []
    notes = []
    for bench, rs in wrong_first.items():
        if max_items > 0 and len(rs) > max_items:
            keep = sorted(rs, key=lambda r: bool(r.get("correct")))[:max_items]
            keep_ids = {id(r) for r in keep}
            rs = [r for r in rs if id(r) in keep_ids]
            notes.append(
                f"{bench}: {len(rs)} of {len(wrong_first[bench])} items shown, wrong ones first "
                "(rethinker report --max-items 0 shows all)"
            )
        shown += rs
    return wrong_first, shown, notes


def _filter_controls(wrong_first: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """The benchmark / category selector and the all / wrong / correct switch."""
    options: list[tuple[str, str]] = [("", "all benchmarks")]
    for bench, rs in wrong_first.items():
        options.append((bench, f"{bench} (all categories)"))
        cats = sorted({str(r.get("category") or NO_CATEGORY) for r in rs})
        options += [(f"{bench} / {c}", f"{bench} / {c}") for c in cats]
    return (
        select("f-group", "benchmark / category", options)
        + " show: "
        + radios("f-show", [("all", "all"), ("wrong", "wrong"), ("correct", "correct")])
        + '<span id="f-count"></span>'
    )


def _items_html(shown: Sequence[Mapping[str, Any]], items: Mapping, sheet: ImageSheet, thumbs: Path) -> str:
    """The shown items, a heading (item and wrong counts) before each benchmark / category."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in shown:
        c = counts[(str(r["benchmark"]), str(r.get("category") or NO_CATEGORY))]
        c[0] += 1
        c[1] += int(not r.get("correct"))
    parts, last = [], None
    for r in shown:
        key = (str(r["benchmark"]), str(r.get("category") or NO_CATEGORY))
        if key != last:
            n, n_wrong = counts[key]
            parts.append(
                f'<div class="grouphead" data-bench="{esc(key[0])}" '
                f'data-group="{esc(key[0] + " / " + key[1])}">{esc(key[0])} / {esc(key[1])} '
                f'<span class="note">{n} items, {n_wrong} wrong</span></div>'
            )
            last = key
        parts.append(_item(r, items.get((str(r["benchmark"]), str(r["id"]))), sheet, thumbs))
    return "".join(parts)


def _subtitle(d: Path, n_preds: int) -> str:
    try:
        run_cfg = json.loads((d / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        run_cfg = {}
    return (
        f"{d.resolve()} · model {run_cfg.get('model', '?')} · {n_preds} predictions · built "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} by rethinker"
    )


def build_eval_report(
    out_dir: str | Path, out: str | Path | None = None, *, max_items: int = DEFAULT_MAX_ITEMS
) -> Path:
    """Write the evaluation's page (default ``OUTPUT_DIR/report.html``) and return its path."""

    d = Path(out_dir)
    if not (d / "predictions.jsonl").exists():
        raise FileNotFoundError(f"{d}: no predictions.jsonl (not an evaluation output directory)")
    preds = [r for r in read_rows(d / "predictions.jsonl") if "benchmark" in r and "id" in r]
    summary = _read_summary(d, preds)
    items = {(str(r.get("benchmark")), str(r.get("id"))): r for r in read_rows(d / ITEMS_FILE)}
    wrong_first, shown, notes = _select_shown(preds, max_items)
    sheet = ImageSheet()
    body_items = _items_html(shown, items, sheet, d / THUMBS_DIR)
    note_html = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    if not items and preds:
        note_html += (
            '<p class="note">No items.jsonl beside the predictions (an older evaluation): the prompt '
            "text is shown, without images.</p>"
        )
    body = (
        f"<h2>Summary</h2>{_summary_table(summary)}<h2>Predictions</h2>{note_html}"
        f'<div class="filters">{_filter_controls(wrong_first)}</div>'
        f"{body_items or '<p class=note>No prediction yet.</p>'}"
    )
    doc = page(f"rethinker eval: {d.resolve().name}", _subtitle(d, len(preds)), body, sheet.css())
    out = Path(out) if out else d / REPORT_FILE
    write_atomic(out, doc)
    return out
