"""Grade a response against a ground truth: one verdict with its reason.

Order of the comparison paths (the first that decides wins; cheap paths first):

1. extraction (``extract``) -> ``no_answer`` when no rule fires;
2. size guard: an answer or ground truth over ``MAX_ANSWER_CHARS`` -> ``parse_error``;
3. multiple choice (``choice``) when the ground truth is an option letter or, given the
   options, an option's text: letters compared; a non-letter prediction is mapped to an
   option by its text, or compared with the correct option's text (numeric/symbolic);
4. exact: equal after ``clean_latex`` with whitespace removed;
5. numeric (``numeric``): both plain numbers -> exact/rounded comparison, with
   ``precision`` if given;
5b. intervals, sets, tuples, matrices of plain numbers (``sets``): compared entry by
    entry, with ``precision`` on every entry;
6. text: when either side is a word answer (``is_textual``: yes/no, names, colours) or
   ``answer_type == "text"``: case/whitespace/trailing-period-insensitive equality;
7. symbolic (``symbolic``): math-verify on the cleaned LaTeX (a trailing unit in
   ``\\text{}`` dropped: ``2\\pi\\text{ rad}`` is ``2\\pi``), screened and time-bounded
   -> ``correct``, ``mismatch``, ``parse_error`` or ``timeout``.

Verdicts of steps 3-7 are cached by (answer, ground truth, options, type, precision),
except timeouts; the parsed ground truths and predictions are cached separately.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import symbolic
from .choice import LETTERS, gold_letter, match_option, parse_letter
from .extract import DEFAULT_RULES, extract
from .helper import helpers, running_helpers
from .normalize import MAX_ANSWER_CHARS, clean_latex, compact, drop_unit_text, is_textual, norm_text, unbox
from .numeric import numbers_equal, parse_number
from .sets import compare_structured

#: Every reason a verdict can carry.
REASONS = ("correct", "no_answer", "mismatch", "parse_error", "timeout")
#: Seconds one symbolic comparison may take.
DEFAULT_TIMEOUT_S = 1.0
_NUMERIC_TYPES = {"integer", "int", "float", "number", "numeric"}


@dataclass(frozen=True)
class Verdict:
    """What the judge decided and why.

    ``extracted``: the answer text the rule ``rule`` found (None: nothing found);
    ``pred`` / ``gold``: the normalized prediction and ground truth that were compared;
    ``reason``: one of :data:`REASONS`; ``path``: the comparison that decided
    (``choice``, ``exact``, ``numeric``, ``set``, ``text``, ``symbolic``, or None);
    ``detail``: a short human-readable note (why a parse was refused ...).
    """

    extracted: str | None
    pred: str | None
    gold: str
    correct: bool
    reason: str
    rule: str | None
    path: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class _Outcome:
    correct: bool
    reason: str
    path: str | None
    detail: str = ""


class _LRU:
    """A small thread-safe LRU map."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._d.get(key)
            if value is not None:
                self._d.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            if len(self._d) > self.maxsize:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_CACHE = _LRU(65536)


def clear_caches(helpers: bool = True) -> None:
    """Forget cached verdicts and parses, here and (``helpers``) in the running helper
    processes. Benchmarks use it to time cold caches."""
    _CACHE.clear()
    symbolic._parse_gold.cache_clear()
    symbolic._parse_pred.cache_clear()
    if helpers:
        for h in running_helpers():
            h.request({"op": "clear"}, 30.0)


def _ok(path: str, detail: str = "") -> _Outcome:
    return _Outcome(True, "correct", path, detail)


def _no(path: str, detail: str = "") -> _Outcome:
    return _Outcome(False, "mismatch", path, detail)


def _compare_values(
    pred: str,
    gold: str,
    answer_type: str | None,
    precision: int | None,
    allow_percent: bool,
    timeout_s: float | None,
    backend: str,
    pred_sym: str | None = None,
    gold_sym: str | None = None,
) -> _Outcome:
    """Steps 4-7 on cleaned strings; ``pred_sym`` / ``gold_sym``: the forms handed to
    math-verify (a trailing unit in ``\\text{}`` dropped), when they differ."""
    if compact(pred) == compact(gold):
        return _ok("exact")
    g_num, p_num = parse_number(gold), parse_number(pred)
    if g_num is not None and p_num is not None:
        if numbers_equal(p_num, g_num, precision, allow_percent):
            return _ok("numeric")
        return _no("numeric")
    same = compare_structured(pred, gold, precision)
    if same is not None:
        return _ok("set") if same else _no("set")
    textual = answer_type == "text" or is_textual(gold) or is_textual(pred)
    if textual:
        return _ok("text") if norm_text(pred) == norm_text(gold) else _no("text")
    pred, gold = pred_sym or pred, gold_sym or gold
    result = symbolic.compare(gold, pred, timeout_s, backend, precision if g_num is not None else None)
    if result == symbolic.CORRECT:
        return _ok("symbolic")
    if result == symbolic.MISMATCH:
        return _no("symbolic")
    detail = ""
    if result == symbolic.PARSE_ERROR:
        detail = symbolic.screen(pred) or symbolic.screen(gold) or "math-verify could not parse"
    return _Outcome(False, result, "symbolic", detail)


def _compare_choice(
    pred_raw: str,
    pred: str,
    letter: str,
    choices: Sequence[str] | None,
    allow_percent: bool,
    timeout_s: float | None,
    backend: str,
    pred_sym: str | None = None,
) -> _Outcome:
    p_letter = parse_letter(pred_raw, len(LETTERS), choices)
    if p_letter is not None:
        if choices and LETTERS.index(p_letter) >= len(choices):
            return _no("choice", f"option {p_letter} does not exist")
        return _ok("choice") if p_letter == letter else _no("choice")
    if not choices:
        return _no("choice", "no option letter in the answer")
    p_letter = match_option(pred_raw, choices)
    if p_letter is not None:
        return _ok("choice", "matched option text") if p_letter == letter else _no("choice", "matched option text")
    option = str(choices[LETTERS.index(letter)])
    gold_text = clean_latex(option)
    out = _compare_values(
        pred, gold_text, None, None, allow_percent, timeout_s, backend, pred_sym, clean_latex(drop_unit_text(option))
    )
    return _Outcome(out.correct, out.reason, out.path, (out.detail + " (vs option text)").strip())


def _judge_answer(
    pred_raw: str,
    gt: str,
    choices: tuple[str, ...] | None,
    answer_type: str | None,
    precision: int | None,
    allow_percent: bool,
    timeout_s: float | None,
    backend: str,
) -> _Outcome:
    key = (pred_raw, gt, choices, answer_type, precision, allow_percent)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    pred, gold = clean_latex(pred_raw), clean_latex(gt)
    pred_sym, gold_sym = clean_latex(drop_unit_text(pred_raw)), clean_latex(drop_unit_text(gt))
    letter = gold_letter(gt, choices, answer_type)
    if letter is not None:
        out = _compare_choice(pred_raw, pred, letter, choices, allow_percent, timeout_s, backend, pred_sym)
    else:
        out = _compare_values(pred, gold, answer_type, precision, allow_percent, timeout_s, backend, pred_sym, gold_sym)
    if out.reason != "timeout":
        _CACHE.put(key, out)
    return out


def grade(
    response: str | None,
    ground_truth: Any,
    choices: Sequence[str] | None = None,
    answer_type: str | None = None,
    precision: int | None = None,
    *,
    rules: Sequence[str] = DEFAULT_RULES,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    allow_percent: bool = True,
    backend: str = "auto",
) -> Verdict:
    """Grade ``response`` against ``ground_truth`` (which may be ``\\boxed{}``).

    ``choices``: option texts in letter order; ``answer_type``: ``multiple_choice``,
    ``integer``, ``float``, ``text``, ``expression`` or None (inferred); ``precision``:
    decimals to round numeric answers to (MathVista); ``rules``: extraction rules
    (``TRAIN_RULES`` = box only, the default; ``EVAL_RULES`` adds the fallbacks);
    ``timeout_s``: bound on the symbolic comparison; ``allow_percent``: ``X%`` may equal
    ``X``; ``backend``: see :func:`rethinker.judge.symbolic.compare`.
    """
    response = "" if response is None else str(response)
    gt = unbox("" if ground_truth is None else str(ground_truth))
    ex = extract(response, tuple(rules))
    if not gt:
        return Verdict(ex.answer, None, gt, False, "parse_error", ex.rule, None, "empty ground truth")
    if ex.answer is None:
        return Verdict(None, None, gt, False, "no_answer", None)
    if len(ex.answer) > MAX_ANSWER_CHARS or len(gt) > MAX_ANSWER_CHARS:
        return Verdict(
            ex.answer[:MAX_ANSWER_CHARS],
            None,
            gt[:MAX_ANSWER_CHARS],
            False,
            "parse_error",
            ex.rule,
            None,
            f"longer than {MAX_ANSWER_CHARS} characters",
        )
    if precision is not None:
        try:
            precision = int(precision)
        except (TypeError, ValueError):
            precision = None
    at = answer_type.lower() if isinstance(answer_type, str) else None
    ch = tuple(str(c) for c in choices) if choices else None
    out = _judge_answer(ex.answer, gt, ch, at, precision, allow_percent, timeout_s, backend)
    return Verdict(
        ex.answer, clean_latex(ex.answer), clean_latex(gt), out.correct, out.reason, ex.rule, out.path, out.detail
    )


def is_correct(*args: Any, **kwargs: Any) -> bool:
    """``grade(...).correct``."""
    return grade(*args, **kwargs).correct


# -- batches ----------------------------------------------------------------------
_ITEM_KEYS = ("response", "ground_truth", "choices", "answer_type", "precision")


def _item_args(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        args = {k: item.get(k) for k in _ITEM_KEYS}
        if args["ground_truth"] is None and "answer" in item:
            args["ground_truth"] = item["answer"]
    elif isinstance(item, Sequence) and not isinstance(item, str) and 2 <= len(item) <= 5:
        args = dict(zip(_ITEM_KEYS, item))
        for k in _ITEM_KEYS:
            args.setdefault(k, None)
    else:
        raise TypeError(
            f"grade_many items are dicts with keys {_ITEM_KEYS} or tuples (response, ground_truth"
            f"[, choices, answer_type, precision]); got {type(item).__name__}"
        )
    # plain JSON-able values, so that chunks can travel to helper processes
    args["response"] = None if args["response"] is None else str(args["response"])
    args["ground_truth"] = None if args["ground_truth"] is None else str(args["ground_truth"])
    args["choices"] = [str(c) for c in args["choices"]] if args["choices"] else None
    args["answer_type"] = None if args["answer_type"] is None else str(args["answer_type"])
    try:
        args["precision"] = None if args["precision"] is None else int(args["precision"])
    except (TypeError, ValueError):
        args["precision"] = None
    return args


def _grade_chunk(chunk: list[dict[str, Any]], options: dict[str, Any]) -> list[Verdict]:
    return [grade(**args, **options) for args in chunk]


def grade_many(
    items: Iterable[Any],
    workers: int = 0,
    *,
    rules: Sequence[str] = DEFAULT_RULES,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    allow_percent: bool = True,
    chunksize: int | None = None,
) -> list[Verdict]:
    """Grade many items, in order. ``workers=0`` grades here; ``workers=N`` spreads
    chunks over N helper processes (:mod:`rethinker.judge.helper`, kept alive between
    calls; each grades in its own main thread, so every symbolic comparison has a
    preemptive deadline). A chunk whose helper stops answering is retried item by item;
    an item that still gets no answer is a ``timeout`` verdict."""
    arg_list = [_item_args(item) for item in items]
    options = {"rules": tuple(rules), "timeout_s": timeout_s, "allow_percent": allow_percent}
    if workers <= 0 or len(arg_list) <= 1:
        return _grade_chunk(arg_list, options)
    size = chunksize or max(1, min(256, -(-len(arg_list) // (workers * 4))))
    queue = deque((i, arg_list[i : i + size]) for i in range(0, len(arg_list), size))
    results: list[Verdict | None] = [None] * len(arg_list)
    lock = threading.Lock()
    wire_options = {**options, "rules": list(options["rules"])}
    per_item_s = 2 * (timeout_s or 10.0) + 0.5

    def drain(helper) -> None:
        while True:
            with lock:
                if not queue:
                    return
                start, chunk = queue.popleft()
            try:
                answer = helper.request(
                    {"op": "grade", "items": chunk, "options": wire_options}, 30.0 + per_item_s * len(chunk)
                )
            except Exception:  # the helper could not start
                answer = None
            verdicts = answer.get("verdicts") if isinstance(answer, dict) else None
            if isinstance(verdicts, list) and len(verdicts) == len(chunk):
                for j, v in enumerate(verdicts):
                    results[start + j] = Verdict(**v)
            elif len(chunk) > 1:
                with lock:
                    queue.extend((start + j, [item]) for j, item in enumerate(chunk))
            else:
                results[start] = _no_answer_in_time(chunk[0])

    pool = helpers("grade", workers)
    threads = [threading.Thread(target=drain, args=(h,), daemon=True) for h in pool]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [v if v is not None else _no_answer_in_time(arg_list[i]) for i, v in enumerate(results)]


def _no_answer_in_time(args: dict[str, Any]) -> Verdict:
    return Verdict(
        None,
        None,
        unbox(args["ground_truth"] or ""),
        False,
        "timeout",
        None,
        None,
        "helper process gave no answer in time",
    )
