"""A model over benchmarks: load each benchmark, judge every item with the training
judge, keep resumable predictions, write summaries (``rethinker eval``'s work).

Writes, in the output directory:

- ``predictions.jsonl``: one line per judged item (``id``, ``benchmark``, ``prompt``,
  ``response``, ``extracted``, ``correct``, ``reason``, ``category``, ``answer``,
  ``finished``; with ``--samples K > 1`` also ``n_samples``, ``n_correct`` and every
  sample). Each line is appended and flushed as soon as its item is judged, so a crash
  loses no finished item; a re-run skips the items already there (resumable). Under
  torchrun each rank appends to its own ``predictions.part-R.jsonl`` and rank 0 merges
  them into this file (``judge_share``, ``rethinker.eval.shards``).
- ``summary.json`` = ``{NAME: {"n_items", "n_skipped", "accuracy", "by_category", ...}}``
  (see ``rethinker.report.summary``), ``summary.md`` and ``summary.csv``.
- ``report.html``: every prediction on one self-contained page (wrong ones first, with
  image, question and verdict; ``rethinker.report.eval_report``), from ``items.jsonl``
  (questions, options) and ``thumbs/`` (image thumbnails) written beside it.
- ``run.json``: the settings that shape the predictions; a re-run with other settings
  is refused (``restart`` discards the old predictions instead).

Bad input (a missing or unreadable image, an item without answer, an unreadable file) is
counted in ``n_skipped`` (or reported as the benchmark's ``error``), never a crash.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.benchmarks import BENCHMARKS
from ..data.io import DataError, LoadResult, read_records
from ..data.stream import open_records
from ..files import write_atomic
from ..records import Record
from ..report.eval_report import ItemSaver, build_eval_report
from ..report.summary import summarize, write_reports
from ..rollout.evaluate import Prediction, evaluate
from ..rollout.inputs import PromptEncoder
from ..toyworld.puzzles import DEFAULT_KINDS, generate
from .engines import EngineOptions
from .shards import Shard, other_files, part_path, part_paths

#: Benchmarks read without a publisher's schema.
GENERIC = ("toy", "records")
#: Per-item keys (from the record's meta) reported apart, besides the category.
GROUP_KEYS: dict[str, tuple[str, ...]] = {
    "mathverse": ("problem_version", "subject"),
    "mathvision": ("level",),
}
#: The released evaluation's response limit, used when the model's generation config sets none.
DEFAULT_MAX_NEW_TOKENS = 8192
#: The predictions file of an output directory.
PREDICTIONS = "predictions.jsonl"
#: Toy puzzles evaluated when ``--benchmark toy`` has no ``--data``.
DEFAULT_TOY_ITEMS = 200
#: Settings that change the predictions: a resumed run must match them.
RUN_KEYS = (
    "model",
    "samples",
    "greedy",
    "temperature",
    "top_p",
    "top_k",
    "max_new_tokens",
    "min_pixels",
    "max_pixels",
    "rethink_at_test",
)


class EvalError(ValueError):
    """A usage problem (unknown benchmark, missing --data, settings that differ from the
    run being resumed): reported as one line, exit status 2."""


def benchmark_names() -> list[str]:
    return [*GENERIC, *BENCHMARKS]


@dataclass
class BenchSpec:
    name: str
    data: str | None = None
    split: str | None = None


@dataclass
class EvalConfig:
    """The settings of one ``rethinker eval`` run, as its flags set them (``None``: the
    default the run works out: greedy for one sample, the model's own limits)."""

    output_dir: str
    benchmarks: list[BenchSpec] = field(default_factory=list)
    model: str | None = None
    limit: int | None = None
    samples: int = 1
    temperature: float | None = None  # None: greedy for 1 sample, 0.6 for K > 1
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int | None = None  # None: the model's generation config, else DEFAULT_MAX_NEW_TOKENS
    min_pixels: int | None = None
    max_pixels: int | None = None
    batch_size: int = 64
    toy_items: int = DEFAULT_TOY_ITEMS
    toy_seed: int = 0
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    restart: bool = False
    quiet: bool = False
    #: test-time rethinking: the trigger after each greedy answer, the continuation judged
    rethink_at_test: bool = False
    #: the generation engine and its settings (``--engine`` ...)
    engine: EngineOptions = field(default_factory=EngineOptions)

    def check(self, world: int = 1) -> None:
        """Raise ``EvalError`` on a usage problem (no or unknown benchmark, missing data,
        settings that cannot go together; ``EngineError`` for the engine's, with ``world``
        ranks under torchrun)."""
        self.engine.check(world)
        if not self.benchmarks:
            raise EvalError("name at least one --benchmark (" + ", ".join(benchmark_names()) + ")")
        unknown = [s.name for s in self.benchmarks if s.name not in benchmark_names()]
        if unknown:
            raise EvalError(f"unknown benchmark(s) {unknown}; known: {', '.join(benchmark_names())}")
        missing = [s.name for s in self.benchmarks if s.data is None and s.name != "toy"]
        if missing:
            raise EvalError(f"--benchmark {missing[0]} needs --data PATH")
        if self.samples < 1 or (self.limit is not None and self.limit < 0):
            raise EvalError("--samples must be >= 1 and --limit >= 0")
        if self.samples > 1 and self.temperature is not None and self.temperature <= 0:
            raise EvalError("--samples K > 1 needs a temperature > 0 (greedy samples would all be equal)")


# -- predictions file --------------------------------------------------------------------


class PredictionLog:
    """``predictions.jsonl`` (or one rank's part of it): earlier lines are read on open (a
    torn last line, left by a crash mid-write, is cut off); each new line is appended and
    flushed at once. ``also_read``: other files whose items count as done too (the other
    ranks' parts, the merged file), read only: a torn last line there is passed over, not
    cut (its writer may still be at work)."""

    def __init__(self, path: str | Path, *, also_read: Sequence[str | Path] = ()):
        self.path = Path(path)
        self.done: dict[tuple[str, str], dict[str, Any]] = {}
        self.n_bad_lines = 0
        #: the keys of this file's lines, in file order (appended ones included)
        self.file_keys: list[tuple[str, str]] = []
        #: the items selected in this run, in run order (filled by the caller): the merge order
        self.order: list[tuple[str, str]] = []
        if self.path.exists():
            self._read(self.path, own=True)
        for other in also_read:
            if Path(other).exists():
                self._read(Path(other), own=False)
        self._fh = None

    def _read(self, path: Path, *, own: bool) -> None:
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):  # torn write: keep whole lines only
            cut = data.rfind(b"\n") + 1
            if own:
                with open(path, "r+b") as fh:
                    fh.truncate(cut)
            data = data[:cut]
            self.n_bad_lines += 1
        for line in data.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = (str(row["benchmark"]), str(row["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                self.n_bad_lines += 1
                continue
            if own:
                self.file_keys.append(key)
                self.done[key] = row
            else:
                self.done.setdefault(key, row)

    def append(self, row: dict[str, Any]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        key = (row["benchmark"], row["id"])
        self.file_keys.append(key)
        self.done[key] = row

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def merge(self, parts: Sequence[Path]) -> int:
        """Rewrite this file (atomically) with the items read from ``parts`` after its own
        lines: those among ``order`` in that order, then the rest; each item once. Then
        delete the parts. How many items came from them."""
        own = dict.fromkeys(self.file_keys)
        rank = {k: i for i, k in enumerate(self.order)}
        extra = sorted((k for k in self.done if k not in own), key=lambda k: rank.get(k, len(rank)))
        if extra or parts:
            lines = [json.dumps(self.done[k], ensure_ascii=False) + "\n" for k in [*own, *extra]]
            write_atomic(self.path, "".join(lines))
            self.file_keys = [*own, *extra]
        for part in parts:
            part.unlink(missing_ok=True)
        return len(extra)


def prediction_row(benchmark: str, rec: Record, pred: Prediction) -> dict[str, Any]:
    """The ``predictions.jsonl`` line of one judged item."""
    row: dict[str, Any] = {
        "id": rec.id,
        "benchmark": benchmark,
        "prompt": pred.prompt,
        "response": pred.response,
        "extracted": pred.extracted,
        "correct": pred.correct,
        "reason": pred.reason,
        "category": rec.category,
        "answer": rec.answer,
        "finished": pred.finished,
    }
    for key in GROUP_KEYS.get(benchmark, ()):
        if rec.meta.get(key) is not None:
            row[key] = rec.meta[key]
    if pred.rethought is not None:  # test-time rethinking: the answer after the trigger
        r = pred.rethought
        row["rethought"] = {"response": r.response, "extracted": r.extracted, "correct": r.correct,
                            "reason": r.reason, "finished": r.finished}  # fmt: skip
    if pred.samples:
        row["n_samples"] = pred.n_samples
        row["n_correct"] = pred.n_correct
        row["samples"] = [
            {
                "response": s.response,
                "extracted": s.extracted,
                "correct": s.correct,
                "reason": s.reason,
                "finished": s.finished,
            }
            for s in pred.samples
        ]
    return row


# -- loading ----------------------------------------------------------------------------


def load_benchmark(spec: BenchSpec, *, toy_items: int = DEFAULT_TOY_ITEMS, toy_seed: int = 0):
    """``(LoadResult, base_dir)`` for one spec; ``DataError`` when the file is unreadable,
    ``EvalError`` on a usage problem."""
    if spec.name not in benchmark_names():
        raise EvalError(f"unknown benchmark {spec.name!r}; known: {', '.join(benchmark_names())}")
    if spec.data is None:
        if spec.name != "toy":
            raise EvalError(f"--benchmark {spec.name} needs --data PATH (the files its publisher distributes)")
        return LoadResult(
            records=generate(toy_items, seed=toy_seed, split=spec.split or "test", kinds=DEFAULT_KINDS),
            source="toyworld",
        ), None
    path = Path(spec.data)
    base = str(path if path.is_dir() else path.parent)
    if spec.name in GENERIC:
        # one file: read on demand (memory does not grow with it); a folder: read whole
        return (open_records(path) if spec.split is None else read_records(path, split=spec.split)), base
    return BENCHMARKS[spec.name](path, split=spec.split), base


def skips_before_cut(loaded, limit: int | None, *, excluded: bool = False) -> list:
    """The load-time skips (or exclusions) among the rows read up to the ``limit``-th kept
    record: with ``--limit N`` the bad rows after the N-th good one are not counted."""
    items = loaded.excluded if excluded else loaded.skipped
    if limit is None or limit >= len(loaded.records):
        return list(items)
    if limit == 0:
        return []
    left_out = sorted({s.row for s in loaded.skipped} | {s.row for s in loaded.excluded})
    row, kept, k = -1, 0, 0
    while kept < limit:  # rows are kept unless left out: find the row of the limit-th record
        row += 1
        while k < len(left_out) and left_out[k] < row:
            k += 1
        if k < len(left_out) and left_out[k] == row:
            continue
        kept += 1
    return [s for s in items if s.row <= row]


# -- the run ------------------------------------------------------------------------------


def run_config(cfg: EvalConfig, model_path: str, max_new_tokens: int) -> dict[str, Any]:
    """What ``run.json`` records: the settings that shape the predictions, resolved."""
    greedy = cfg.samples == 1 and not cfg.temperature
    temperature = None if greedy else (0.6 if cfg.temperature is None else cfg.temperature)
    return {
        "model": model_path,
        "samples": cfg.samples,
        "greedy": greedy,
        "temperature": temperature,
        "top_p": None if greedy else cfg.top_p,
        "top_k": None if greedy else cfg.top_k,
        "max_new_tokens": max_new_tokens,
        "min_pixels": cfg.min_pixels,
        "max_pixels": cfg.max_pixels,
        "toy_seed": cfg.toy_seed,
        "engine": cfg.engine.engine,  # for the record: greedy predictions agree across engines
        **({"rethink_at_test": True} if cfg.rethink_at_test else {}),  # absent: runs before the flag
    }


def check_resume(out_dir: Path, config: dict[str, Any], restart: bool, *, write: bool = True) -> None:
    """Refuse to mix predictions made with other settings; ``restart`` clears them (the
    merged file and every rank's part). ``write=False`` (ranks but the first under
    torchrun): only the check, nothing deleted or written."""
    cfg_path = out_dir / "run.json"
    predictions = [out_dir / PREDICTIONS, *part_paths(out_dir / PREDICTIONS)]
    if restart:
        if write:
            for path in [*predictions, *(out_dir / n for n in ("summary.json", "summary.md", "summary.csv"))]:
                path.unlink(missing_ok=True)
            cfg_path.unlink(missing_ok=True)
    elif cfg_path.exists() and any(p.exists() for p in predictions):
        try:
            old = json.loads(cfg_path.read_text())
        except json.JSONDecodeError:
            old = {}
        diff = [k for k in RUN_KEYS if old.get(k) != config.get(k)]
        if diff:
            raise EvalError(
                f"{out_dir} holds predictions made with other settings ("
                + ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in diff)
                + "); use another --output-dir or --restart"
            )
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(cfg_path, json.dumps(config, indent=2) + "\n")


def record_ids(records: Sequence[Record]) -> list[str]:
    """The records' ids: from a streamed file, those kept when it was validated on open
    (no row is read again); otherwise read off the records."""
    ids = getattr(records, "ids", None)
    return list(ids) if ids is not None else [r.id for r in records]


def read_once(records: Sequence[Record], ids: Sequence[str], todo: Sequence[int], items: ItemSaver):
    """The records at positions ``todo``, in order, each read once (a streamed source
    stays on disk until then) and stored in ``items`` as it is read; the records judged
    before (not in ``todo``) are read only when ``items`` lacks them."""
    wanted = set(todo)
    for i, rid in enumerate(ids):
        if i in wanted:
            rec = records[i]
            items.add(rec)
            yield rec
        elif items.missing(rid):
            items.add(records[i])


class _Judged:
    """``on_prediction`` for one benchmark: appends each judged item to ``predictions.jsonl``,
    keeps its row, and logs progress every ``every`` items and at the last one."""

    def __init__(self, name: str, plog: PredictionLog, total: int, every: int, log: Callable[[str], None] | None):
        self.name, self.plog, self.total, self.every, self.log = name, plog, total, every, log
        self.rows: dict[str, dict[str, Any]] = {}
        self.n = 0
        self.t0 = time.perf_counter()

    def __call__(self, rec: Record, pred: Prediction) -> None:
        row = prediction_row(self.name, rec, pred)
        self.plog.append(row)
        self.rows[rec.id] = row
        self.n += 1
        if self.log and (self.n % self.every == 0 or self.n == self.total):
            rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
            self.log(f"{self.name}: {self.n}/{self.total} judged ({rate:.1f} items/s)")


class _NoItems:
    """The ``ItemSaver`` of a rank judging its share: stores nothing (rank 0 stores every
    item for the page when it merges)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def missing(self, rid) -> bool:
        return False

    def add(self, rec) -> None:
        pass


@dataclass
class _RunSettings:
    """What every benchmark of a run is judged with."""

    params: Any
    limit: int | None = None
    batch_queries: int = 64
    pixels: tuple[int | None, int | None] = (None, None)
    toy: tuple[int, int] = (DEFAULT_TOY_ITEMS, 0)  # (items, seed)
    log: Callable[[str], None] | None = None
    rethink_trigger: str | None = None
    shard: Shard = field(default_factory=Shard)  # a rank's share (torchrun); the whole run: Shard()


def _run_settings(
    *,
    params,
    limit: int | None = None,
    batch_queries: int = 64,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    toy_items: int = DEFAULT_TOY_ITEMS,
    toy_seed: int = 0,
    log: Callable[[str], None] | None = None,
    rethink_trigger: str | None = None,
    shard: Shard | None = None,
) -> _RunSettings:
    """``_RunSettings`` from ``evaluate_benchmarks``' keywords."""
    pixels, toy = (min_pixels, max_pixels), (toy_items, toy_seed)
    return _RunSettings(params, limit, batch_queries, pixels, toy, log, rethink_trigger, shard or Shard())


def _evaluate_benchmark(
    spec: BenchSpec, loaded, base: str | None, engine, processor, out: Path, plog: PredictionLog, run: _RunSettings
) -> dict[str, Any]:
    """Judge the items of one loaded benchmark not in ``plog`` yet (``run.shard``'s share of
    them); its summary over the items selected (``limit``), earlier ones included."""
    records = loaded.records[: run.limit] if run.limit is not None else loaded.records
    ids = record_ids(records)
    plog.order.extend((spec.name, rid) for rid in ids)
    done = [plog.done.get((spec.name, rid)) for rid in ids]
    # positions: streamed records stay on disk
    todo = run.shard.take([i for i, d in enumerate(done) if d is None])
    judged = _Judged(spec.name, plog, len(todo), run.batch_queries, run.log)
    if run.log and run.shard.world == 1 and len(todo) < len(records):
        run.log(f"{spec.name}: {len(records) - len(todo)} of {len(records)} items already judged, resuming")
    encoder = PromptEncoder(
        processor,
        base_dir=base,
        min_pixels=run.pixels[0],
        max_pixels=run.pixels[1],
        keep_images=getattr(engine, "needs_images", False),
    )
    # question, options, thumbnails for report.html, stored as the records are read to be judged
    with ItemSaver(out, spec.name, base) if run.shard.world == 1 else _NoItems() as items:
        res = evaluate(
            engine,
            encoder,
            read_once(records, ids, todo, items),
            max_new_tokens=run.params.max_new_tokens,
            batch_queries=run.batch_queries,
            params=run.params,
            on_prediction=judged,
            rethink_trigger=run.rethink_trigger,
        )
    new = judged.rows
    rows = [d if d is not None else new[rid] for rid, d in zip(ids, done) if d is not None or rid in new]
    skipped = [(s.id, s.reason) for s in skips_before_cut(loaded, run.limit)]
    skipped += [(rid, msg) for rid, msg in res.skipped]
    n_excluded = len(skips_before_cut(loaded, run.limit, excluded=True))
    summary = summarize(
        rows, skipped, benchmark=spec.name, n_excluded=n_excluded, extra_groups=GROUP_KEYS.get(spec.name, ())
    )
    if loaded.source:
        summary["source"] = str(loaded.source)
    return summary


def _judge_all(specs: Sequence[BenchSpec], engine, processor, out: Path, plog: PredictionLog, run: _RunSettings):
    """Each benchmark's summary (an unreadable one: its ``error``), judging what is left."""
    if plog.n_bad_lines and run.log:
        run.log(f"warning: {plog.n_bad_lines} torn or malformed line(s) in {plog.path} ignored (those items re-run)")
    summary: dict[str, dict[str, Any]] = {}
    try:
        for spec in specs:
            try:
                loaded, base = load_benchmark(spec, toy_items=run.toy[0], toy_seed=run.toy[1])
            except DataError as exc:
                if run.log:
                    run.log(f"{spec.name}: cannot read {spec.data}: {exc}")
                summary[spec.name] = {**summarize([], benchmark=spec.name), "error": str(exc)}
                continue
            summary[spec.name] = _evaluate_benchmark(spec, loaded, base, engine, processor, out, plog, run)
    finally:
        plog.close()
    return summary


def judge_share(
    specs: Sequence[BenchSpec],
    engine,
    processor,
    out_dir: str | Path,
    *,
    shard: Shard,
    ready: Callable[[], None],
    **settings,
) -> None:
    """One rank's share (``shard``) of ``evaluate_benchmarks``' work (``settings``: its
    keywords), under torchrun: read
    what is judged already (every part and the merged file), call ``ready`` (a barrier: no
    rank appends before all have read, so all agree on what is left), then judge every
    ``world``-th item left into this rank's part, ``predictions.part-R.jsonl``. Rank 0
    then calls ``evaluate_benchmarks``, which merges the parts (``eval.shards``)."""
    main = Path(out_dir) / PREDICTIONS
    plog = PredictionLog(part_path(main, shard.rank), also_read=other_files(main, shard))
    ready()
    _judge_all(specs, engine, processor, Path(out_dir), plog, _run_settings(shard=shard, **settings))


def evaluate_benchmarks(
    specs: Sequence[BenchSpec],
    engine,
    processor,
    out_dir: str | Path,
    *,
    params,
    limit: int | None = None,
    batch_queries: int = 64,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    toy_items: int = DEFAULT_TOY_ITEMS,
    toy_seed: int = 0,
    log: Callable[[str], None] | None = None,
    rethink_trigger: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate each benchmark through ``engine`` (any ``RolloutEngine``), append every
    judged item to ``out_dir/predictions.jsonl``, skip the items already there (or in the
    part files of ranks: merged into it, in run order), and return (and write) the
    summary of the items selected this time."""
    out = Path(out_dir)
    parts = part_paths(out / PREDICTIONS)
    plog = PredictionLog(out / PREDICTIONS, also_read=parts)
    run = _run_settings(
        params=params, limit=limit, batch_queries=batch_queries, min_pixels=min_pixels, max_pixels=max_pixels,
        toy_items=toy_items, toy_seed=toy_seed, log=log, rethink_trigger=rethink_trigger,
    )  # fmt: skip
    summary = _judge_all(specs, engine, processor, out, plog, run)
    n_merged = plog.merge(parts)
    if parts and log:
        log(f"merged {n_merged} item(s) from {len(parts)} part file(s) into {plog.path}")
    write_reports(out, summary)
    try:
        build_eval_report(out)
    except Exception as exc:  # the page must never fail an evaluation
        if log:
            log(f"warning: could not write {out / 'report.html'}: {exc}")
    return summary


def model_max_new_tokens(model_path: str) -> int | None:
    """``max_new_tokens`` of the model's own generation config, when it sets one."""
    cfg = Path(model_path) / "generation_config.json"
    try:
        value = json.loads(cfg.read_text()).get("max_new_tokens")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None
