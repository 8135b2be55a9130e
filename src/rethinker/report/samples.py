"""The sample log: what the policy said, for a few queries of every training step.

``RUN_DIR/samples.jsonl`` holds one JSON line per logged query::

    {"step": 12, "query": 0, "id": "toy-train-0-000093", "question": "...", "answer": "4",
     "choices": null, "category": "count", "images": ["3f9c...e1.png"],
     "responses": [{"text": "...", "reward": 1.0, "advantage": 0.93, "correct": true,
                    "rule": "correct", "reason": "match", "extracted": "4", "finished": true,
                    "tokens": 31, "ssr_draws": 2,
                    "rethink": {"kept": true, "why": "kept", "cut": false,
                                "trigger": "\\n\\nWait", "continuation": "...",
                                "first_correct": true, "joined_correct": true}}, ...]}

- ``responses``: the G responses of the query's group in order, as trained on (a kept
  Forced Rethinking continuation replaced its original: ``text`` = first + trigger +
  continuation). ``rethink`` is present when a continuation was tried: ``kept`` or not and
  ``why`` (``kept``, ``length``, ``incorrect``, ``too_many_self_checks``, ``query_cap``).
  When the first pass was cut back before its answer, ``first`` is the part continued
  from, and a kept one also has the ``original`` response. Otherwise the first pass is
  ``text`` up to the trigger (kept) or all of ``text`` (rejected: the original stays).
- ``ssr_draws``: how many times Selective Sample Replay drew this response into the
  update (0: not trained on; with SSR off every response is drawn once).
- ``images``: thumbnail file names under ``RUN_DIR/samples/`` (each image stored once,
  whatever the number of steps that show it); null where the image could not be read.
- Texts longer than ``MAX_TEXT_CHARS`` are cut (``text_chars`` gives the full length).

Which queries: the first ``n`` of the step (the data order is already shuffled), so a
step's log is a fair sample. The file is resumable like ``metrics.jsonl``: a resumed run
drops the lines of steps after its checkpoint.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..algo.sample import Sample
from ..files import filter_jsonl, read_jsonl
from .images import ThumbnailStore

#: Longest text kept per response (and per rethinking segment), in characters.
MAX_TEXT_CHARS = 6000
SAMPLES_FILE = "samples.jsonl"
THUMBS_DIR = "samples"


def _cap(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + " [...]"


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return round(v, 4) if v == v and abs(v) != float("inf") else None


def draw_counts(indices: Sequence[int]) -> Counter:
    """How many times each position of the step's sample list was selected (replays of
    earlier steps' samples, index -1, are not counted)."""
    return Counter(i for i in indices if i >= 0)


def response_row(sample: Sample, draws: int) -> dict[str, Any]:
    """One response of the log from a ``Sample``."""
    j = sample.judgement
    text = j.text if j is not None else ""
    row: dict[str, Any] = {
        "text": _cap(text),
        "reward": _num(sample.reward),
        "advantage": _num(sample.advantage),
        "correct": bool(sample.correct),
        "rule": j.rule if j is not None else None,
        "reason": j.reason if j is not None else None,
        "extracted": j.extracted if j is not None else None,
        "finished": j.finished if j is not None else None,
        "tokens": len(sample.completion_ids) if sample.completion_ids is not None else None,
        "ssr_draws": int(draws),
    }
    if len(text) > MAX_TEXT_CHARS:
        row["text_chars"] = len(text)
    att = sample.rethink
    if att is not None:
        rt = {
            "kept": att.kept,
            "why": att.why,
            "cut": att.cut,
            "trigger": att.trigger,
            "continuation": _cap(att.continuation),
            "first_correct": att.first_correct,
            "joined_correct": att.joined_correct,
        }
        if att.cut:  # the first pass was cut back before its answer: say where
            rt["first"] = _cap(att.first)
            if att.kept:
                rt["original"] = _cap(att.original)
        row["rethink"] = rt
    return row


def sample_rows(
    step: int,
    records: Sequence[Any],
    samples: Sequence[Any],
    indices: Sequence[int],
    n_queries: int,
    images: Callable[[Any], list[str | None]] | None = None,
) -> list[dict[str, Any]]:
    """The log lines of one step: the first ``n_queries`` groups of ``samples`` (their
    ``group`` indexes ``records``), each with its G responses and SSR draw counts.

    ``indices``: ``Selection.indices`` (positions in ``samples``); ``images(record)``:
    the thumbnail names of a record's images (None: no images logged)."""
    draws = draw_counts(indices)
    groups: dict[Any, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group, []).append(i)
    rows = []
    for q, (g, members) in enumerate(groups.items()):
        if q >= n_queries:
            break
        rec = records[g] if isinstance(g, int) and 0 <= g < len(records) else None
        row: dict[str, Any] = {"step": int(step), "query": q}
        if rec is not None:
            row.update(
                {
                    "id": rec.id,
                    "question": _cap(rec.question),
                    "answer": rec.answer,
                    "choices": rec.choices,
                    "category": rec.category,
                    "images": images(rec) if images else [],
                }
            )
        row["responses"] = [response_row(samples[i], draws.get(i, 0)) for i in members]
        rows.append(row)
    return rows


def truncate_after(path: Path, step: int) -> None:
    """Drop the lines of steps after ``step`` (a run killed after its last checkpoint
    logged them) and a torn last line."""
    if path.exists():
        filter_jsonl(path, lambda row: int(row.get("step", 0)) <= step)


def read_samples(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every whole line of ``RUN_DIR/samples.jsonl`` ([] when absent; a torn last line of a
    live run is skipped)."""
    rows = read_jsonl(Path(run_dir) / SAMPLES_FILE, missing_ok=True, errors="replace")
    return [row for row in rows if isinstance(row, dict) and "step" in row]


class SampleLog:
    """Writes ``samples.jsonl`` and the thumbnails, step by step; also hands each step's
    table to the ``report_to`` sinks that take one (wandb, tensorboard)."""

    def __init__(
        self,
        run_dir: str | Path,
        n_queries: int,
        *,
        resume_step: int | None = None,
        base_dir: str | Path | None = None,
        sinks: Sequence[tuple[str, Any]] = (),
    ):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / SAMPLES_FILE
        self.n_queries = n_queries
        self.base_dir = base_dir
        self.sinks = list(sinks)
        self.thumbs = ThumbnailStore(self.run_dir / THUMBS_DIR)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            truncate_after(self.path, resume_step)
        self._fh = open(self.path, "a", encoding="utf-8")
        self.bytes_written = 0

    def _images(self, rec: Any) -> list[str | None]:
        return [self.thumbs.add(ref, self.base_dir) for ref in rec.images]

    def log_step(
        self, step: int, records: Sequence[Any], samples: Sequence[Any], indices: Sequence[int]
    ) -> list[dict[str, Any]]:
        rows = sample_rows(step, records, samples, indices, self.n_queries, self._images)
        text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)
        self._fh.write(text)
        self._fh.flush()
        self.bytes_written += len(text.encode("utf-8"))
        for kind, sink in self.sinks:
            try:
                push_table(kind, sink, step, rows)
            except Exception as exc:  # a sink's hiccup must not stop training
                print(f"warning: could not send the sample table to {kind}: {exc}", file=sys.stderr)
        return rows

    def close(self) -> None:
        self._fh.close()


TABLE_COLUMNS = [
    "step",
    "query",
    "id",
    "question",
    "answer",
    "response",
    "reward",
    "advantage",
    "correct",
    "reason",
    "rethink",
    "ssr_draws",
]


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """One flat row per response (``TABLE_COLUMNS``), for sinks with a table type."""
    out = []
    for r in rows:
        for resp in r.get("responses", []):
            rt = resp.get("rethink")
            out.append(
                [
                    r.get("step"),
                    r.get("query"),
                    r.get("id"),
                    r.get("question"),
                    r.get("answer"),
                    resp.get("text"),
                    resp.get("reward"),
                    resp.get("advantage"),
                    resp.get("correct"),
                    resp.get("reason"),
                    (rt["why"] if rt else ""),
                    resp.get("ssr_draws"),
                ]
            )
    return out


def push_table(kind: str, sink: Any, step: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """wandb: a ``wandb.Table`` under ``samples``; tensorboard: a markdown table as text."""
    data = table_rows(rows)
    if kind == "wandb":
        import wandb

        sink.log({"samples": wandb.Table(columns=TABLE_COLUMNS, data=data)}, step=step)
    elif kind == "tensorboard":

        def cell(v: Any) -> str:
            return str(v).replace("|", "\\|").replace("\n", " ")[:500]

        lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in data]
        sink.add_text("samples", "\n".join(lines), step)
