"""``rethinker data annotate``: each query's pass rate for the user's own model.

    rethinker data annotate FILE [--model PATH] --samples K --output OUT [--name NAME]

For every record, K responses are sampled through the same ``RolloutEngine`` and prompt
encoding as training, and each is scored by the training reward
(``rethinker.judge.reward``: final answer in ``\\boxed{}``, finished, at most five
"wait"s, judged correct). The query's pass rate is

    pass_rate = (number of the K responses whose reward rule is a correct one) / K

and is written as ``pass_rates[NAME]`` (other pass-rate columns are kept), so that
``rethinker data select --model-size NAME --pass-rate-range LO HI`` can pick the queries
at the edge of that model's ability. (ViRL39K's authors did not say how their own
annotations were made; this is one documented way.)

Resumable: each finished query is appended (and flushed) to a sidecar JSONL
(``OUT.annotate-NAME.jsonl`` unless ``--sidecar``) with its counts; a re-run reads it
and samples only the queries not there yet. Records whose images cannot be read are
kept without the annotation and counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..data.stream import MappedRecords
from ..files import read_jsonl, write_atomic
from ..records import Record, RecordError
from .shards import Shard, other_files, part_path, part_paths

#: Reward rules that count as a pass (the judge says correct and the response is valid).
PASS_RULES = frozenset({"correct", "reflection_bonus", "reflection_penalty"})
#: Sampling defaults: the released training rollout (temperature 1.0, top-p 0.95, top-k 40).
DEFAULT_TEMPERATURE, DEFAULT_TOP_P, DEFAULT_TOP_K = 1.0, 0.95, 40


@dataclass
class AnnotateResult:
    #: every input record; annotated ones carry pass_rates[name] (computed on access, so a
    #: streamed input stays streamed)
    records: Sequence[Record]
    name: str
    n_annotated: int = 0  # queries with a pass rate (this run and resumed)
    n_resumed: int = 0  # of which read from the sidecar
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason): not annotated
    rates: dict[str, float] = field(default_factory=dict)  # id -> pass rate

    def apply(self, rec: Record) -> Record:
        """``rec`` with its pass rate under ``name`` when it was annotated."""
        if rec.id not in self.rates:
            return rec
        return replace(rec, pass_rates={**(rec.pass_rates or {}), self.name: self.rates[rec.id]})


def default_sidecar(output: str | Path, name: str) -> Path:
    out = Path(output)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return out.with_name(f"{out.name}.annotate-{safe}.jsonl")


def read_sidecar(path: str | Path) -> dict[str, dict[str, Any]]:
    """Finished queries of an earlier run: ``id -> {"n_correct", "n_samples", "pass_rate"}``.
    Torn or malformed lines (a crash mid-write) are ignored; those queries run again."""
    done: dict[str, dict[str, Any]] = {}
    for row in read_jsonl(path, missing_ok=True, errors="replace"):
        try:
            rid = str(row["id"])
            n, c = int(row["n_samples"]), int(row["n_correct"])
        except (KeyError, TypeError, ValueError):
            continue
        if n > 0 and 0 <= c <= n:
            done[rid] = {"n_correct": c, "n_samples": n, "pass_rate": c / n}
    return done


def _open_sidecar(path: Path):
    """Append mode, after cutting a torn last line (so the next line starts clean)."""
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8")


def _encode_chunk(encoder, recs: Iterable[Record], skipped: list[tuple[str, str]]) -> tuple[list[Record], list]:
    """The records that encode and their queries; the others go to ``skipped`` with the reason."""
    chunk, queries = [], []
    for rec in recs:
        try:
            queries.append(encoder.encode(rec))
            chunk.append(rec)
        except RecordError as exc:
            skipped.append((rec.id, str(exc)))
        except ValueError as exc:  # the processor refuses the image (e.g. aspect ratio > 200)
            skipped.append((rec.id, f"record {rec.id!r}: image refused by the processor ({exc})"))
    return chunk, queries


def _pass_count(rec: Record, group: Sequence, reward_config) -> dict[str, Any]:
    """The sidecar row of one query: how many of its sampled completions pass."""
    from ..judge import reward

    n_correct = sum(
        reward(
            c.text,
            rec.answer,
            choices=rec.choices,
            finished=c.finished,
            config=reward_config,
            answer_type=rec.answer_type,
            precision=rec.precision,
        ).rule
        in PASS_RULES
        for c in group
    )
    return {"id": rec.id, "n_correct": n_correct, "n_samples": len(group), "pass_rate": n_correct / len(group)}


def _split_done(records: Sequence[Record], done: dict[str, dict[str, Any]]) -> tuple[dict[str, dict], list[int]]:
    """(counts of the records finished before, positions of the others): positions, not
    records, so a streamed input is read again only when its turn comes."""
    counts: dict[str, dict[str, Any]] = {}
    todo: list[int] = []
    for i, r in enumerate(records):
        if r.id in done:
            counts[r.id] = done[r.id]
        else:
            todo.append(i)
    return counts, todo


def merge_sidecar(path: str | Path) -> int:
    """Fold the ranks' part files of the sidecar ``path`` (``eval.shards``) into it
    (atomically; each query once, the sidecar's own line first) and delete them; how many
    queries came from the parts."""
    path = Path(path)
    parts = part_paths(path)
    if not parts:
        return 0
    rows = {rid: {"id": rid, **row} for rid, row in read_sidecar(path).items()}
    n_before = len(rows)
    for part in parts:
        for rid, row in read_sidecar(part).items():
            rows.setdefault(rid, {"id": rid, **row})
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows.values()))
    for part in parts:
        part.unlink()
    return len(rows) - n_before


def _resume_state(sidecar: str | Path | None, shard: Shard) -> tuple[dict[str, dict[str, Any]], Path | None]:
    """``(queries done, the file this process appends to)``: one process merges the parts
    of an earlier torchrun run and appends to the sidecar; a rank reads the sidecar and
    every part, and appends to its own part."""
    if sidecar is None:
        if shard.world > 1:
            raise ValueError("annotate under torchrun needs a sidecar (each rank writes its part of it)")
        return {}, None
    if shard.world == 1:
        merge_sidecar(sidecar)
        return read_sidecar(sidecar), Path(sidecar)
    own = part_path(sidecar, shard.rank)
    done = read_sidecar(own)  # own first: its torn last line is cut when it is opened to append
    for other in other_files(sidecar, shard):
        for rid, row in read_sidecar(other).items():
            done.setdefault(rid, row)
    return done, own


def _default_engine(model, processor, batch_queries: int):
    from ..rollout.hf import TransformersEngine

    if model is None:
        raise ValueError("annotate needs a model or an engine")
    return TransformersEngine(model, processor, max_batch_queries=batch_queries)


def _sample_params(samples: int, max_new_tokens: int, temperature: float, top_p: float, top_k: int):
    """``samples`` draws per query; ``temperature <= 0``: greedy (every draw the same)."""
    from ..rollout.base import SamplingParams

    greedy = temperature <= 0
    return SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=1.0 if greedy else temperature,
        top_p=top_p,
        top_k=top_k,
        n=samples,
        greedy=greedy,
    )


def annotate(
    records: Iterable[Record],
    model=None,
    processor=None,
    *,
    samples: int = 8,
    name: str = "model",
    engine=None,
    sidecar: str | Path | None = None,
    max_new_tokens: int | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    top_k: int = DEFAULT_TOP_K,
    batch_queries: int = 16,
    base_dir: str | Path | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    reward_config=None,
    log: Callable[[str], None] | None = None,
    shard: Shard | None = None,
    ready: Callable[[], None] | None = None,
) -> AnnotateResult:
    """Pass rate of ``model`` on each record from ``samples`` sampled responses (see the
    module docstring; ``temperature <= 0``: greedy). ``engine``: any ``RolloutEngine``
    (default: a ``TransformersEngine`` over ``model``); ``sidecar``: the resume file (None:
    no resume). Under torchrun, ``shard``: this rank's share of the queries left, written to
    its part of the sidecar after ``ready`` (a barrier: every rank has read what is done);
    the result then holds only what this rank knows, and a one-process call afterwards
    (rank 0) merges the parts and gives the whole."""
    from ..judge import RewardConfig
    from ..rollout.inputs import PromptEncoder

    if samples < 1:
        raise ValueError("samples must be >= 1")
    if processor is None:
        raise ValueError("annotate needs the model's processor (to encode prompts)")
    if not isinstance(records, Sequence):
        records = list(records)
    engine = engine if engine is not None else _default_engine(model, processor, batch_queries)
    if max_new_tokens is None:
        max_new_tokens = getattr(getattr(model, "generation_config", None), "max_new_tokens", None) or 2048
    params = _sample_params(samples, max_new_tokens, temperature, top_p, top_k)
    cfg = reward_config or RewardConfig()
    encoder = PromptEncoder(
        processor,
        base_dir=None if base_dir is None else str(base_dir),
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        keep_images=getattr(engine, "needs_images", False),
    )
    result = AnnotateResult([], name)
    shard = shard or Shard()
    done, write_to = _resume_state(sidecar, shard)
    if ready is not None:
        ready()
    counts, todo = _split_done(records, done)
    todo = shard.take(todo)
    result.n_resumed = len(counts)
    fh = _open_sidecar(write_to) if write_to is not None else None
    try:
        _annotate_chunks(records, todo, engine, encoder, params, cfg, counts, fh, result.skipped, batch_queries, log)
    finally:
        if fh is not None:
            fh.close()
    result.rates = {rid: row["pass_rate"] for rid, row in counts.items()}
    result.n_annotated = len(counts)
    result.records = MappedRecords(records, result.apply)
    return result


def _annotate_chunks(records, todo, engine, encoder, params, cfg, counts, fh, skipped, batch_queries, log) -> None:
    """Sample and judge the records at positions ``todo``, ``batch_queries`` at a time; each
    query's counts go to ``counts`` and a line of the sidecar ``fh``."""
    t0, n_done = time.perf_counter(), 0
    for start in range(0, len(todo), batch_queries):
        chunk, queries = _encode_chunk(encoder, (records[i] for i in todo[start : start + batch_queries]), skipped)
        if not chunk:
            continue
        for rec, group in zip(chunk, engine.generate(queries, params)):
            counts[rec.id] = row = _pass_count(rec, group, cfg)
            if fh is not None:
                fh.write(json.dumps(row) + "\n")
                fh.flush()
        n_done += len(chunk)
        if log:
            log(f"annotate: {n_done}/{len(todo)} queries ({n_done / max(time.perf_counter() - t0, 1e-9):.2f}/s)")


def default_name(model_arg: str | None, model_path: str) -> str:
    return "toy" if not model_arg else Path(model_path).resolve().name
