"""Batched evaluation with the training judge (train/test aligned), shared by the
trainer's held-out evaluation and ``rethinker eval``.

``evaluate(engine, encoder, records)`` decodes every record (greedy by default) through
the same ``RolloutEngine`` the trainer uses and grades the responses with
``rethinker.judge`` (every sample when ``params.n > 1``; the counts use the first).
Records whose inputs are bad (unreadable image ...) are counted as skipped, never a
crash.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..algo.rethink import rethink_effect
from ..judge import EVAL_RULES, grade
from ..records import Record, RecordError
from .base import RolloutEngine, SamplingParams, extend_query
from .inputs import PromptEncoder


@dataclass
class JudgedSample:
    """One of several sampled responses to a query (``params.n > 1``) and its verdict."""

    response: str
    extracted: str | None
    correct: bool
    reason: str
    finished: bool


@dataclass
class Prediction:
    """A judged query. With ``params.n > 1`` the top-level fields are the first sample's
    and ``samples`` holds all of them."""

    id: str
    category: str | None
    response: str
    extracted: str | None
    correct: bool
    reason: str
    finished: bool
    prompt: str = ""
    samples: list[JudgedSample] = field(default_factory=list)
    #: test-time rethinking: the greedy answer + trigger + the policy's continuation, judged
    rethought: JudgedSample | None = None

    @property
    def n_samples(self) -> int:
        return len(self.samples) or 1

    @property
    def n_correct(self) -> int:
        return sum(s.correct for s in self.samples) if self.samples else int(self.correct)


@dataclass
class EvalResult:
    n_items: int
    n_correct: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    by_category: dict[str, float] = field(default_factory=dict)
    predictions: list[Prediction] = field(default_factory=list)

    def rethinking(self) -> dict[str, float] | None:
        """Test-time rethinking's effect (None when it did not run): accuracy before and
        after the trigger, answers that turned wrong -> right and right -> wrong."""
        return rethink_effect([(p.correct, p.rethought.correct) for p in self.predictions if p.rethought is not None])

    @property
    def accuracy(self) -> float:
        return self.n_correct / self.n_items if self.n_items else 0.0

    def confidence_interval(self, z: float = 1.96) -> tuple[float, float]:
        """Wilson score interval for the accuracy."""
        n = self.n_items
        if n == 0:
            return (0.0, 0.0)
        p = self.accuracy
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        return (centre - half, centre + half)

    @classmethod
    def merged(cls, parts: list[EvalResult]) -> EvalResult:
        """One result from the shares of several processes."""
        if len(parts) == 1:
            return parts[0]
        out = cls(sum(p.n_items for p in parts), sum(p.n_correct for p in parts))
        per_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for p in parts:
            out.skipped += p.skipped
            out.predictions += p.predictions
            for pred in p.predictions:
                c = per_cat[pred.category or "all"]
                c[0] += int(pred.correct)
                c[1] += 1
        out.by_category = {k: c / n for k, (c, n) in sorted(per_cat.items())}
        return out


def evaluate(
    engine: RolloutEngine,
    encoder: PromptEncoder,
    records: Iterable[Record],
    *,
    max_new_tokens: int,
    batch_queries: int = 64,
    params: SamplingParams | None = None,
    on_prediction: Callable[[Record, Prediction], None] | None = None,
    rethink_trigger: str | None = None,
) -> EvalResult:
    """Judge ``engine``'s answers to ``records`` (see the module docstring).
    ``rethink_trigger``: test-time rethinking: after each first answer, the trigger is
    appended and the policy continues greedily; the joined response is judged too
    (``Prediction.rethought``, ``EvalResult.rethinking``)."""
    params = params or SamplingParams(max_new_tokens=max_new_tokens, greedy=True)
    result = EvalResult(0, 0)
    per_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    pending: list[tuple[Record, object]] = []

    def flush() -> None:
        if not pending:
            return
        groups = engine.generate([q for _, q in pending], params)
        rethought = _rethink_at_test(engine, encoder, pending, groups, rethink_trigger, max_new_tokens)
        for k, ((rec, q), group) in enumerate(zip(pending, groups)):
            pred = _prediction(rec, q, group, rethought[k] if rethought else None)
            result.n_items += 1
            result.n_correct += int(pred.correct)
            cat = per_cat[rec.category or "all"]
            cat[0] += int(pred.correct)
            cat[1] += 1
            result.predictions.append(pred)
            if on_prediction is not None:
                on_prediction(rec, pred)
        pending.clear()

    for rec in records:
        try:
            pending.append((rec, encoder.encode(rec)))
        except RecordError as exc:
            result.skipped.append((rec.id, str(exc)))
            continue
        except ValueError as exc:  # the processor refuses a decodable image (e.g. aspect ratio > 200)
            result.skipped.append((rec.id, f"record {rec.id!r}: image refused by the processor ({exc})"))
            continue
        if len(pending) >= batch_queries:
            flush()
    flush()
    result.by_category = {k: c / n for k, (c, n) in sorted(per_cat.items())}
    return result


def _prediction(rec: Record, q, group: list, rethought: JudgedSample | None) -> Prediction:
    """A judged query: its first sample's verdict on top, every sample when there are several."""
    samples = [_judged(comp.text, rec, comp.finished) for comp in group]
    first = samples[0]
    return Prediction(
        rec.id,
        rec.category,
        first.response,
        first.extracted,
        first.correct,
        first.reason,
        first.finished,
        prompt=getattr(q, "text", ""),
        samples=samples if len(samples) > 1 else [],
        rethought=rethought,
    )


def _judged(text: str, rec: Record, finished: bool) -> JudgedSample:
    verdict = grade(
        text, rec.answer, choices=rec.choices, answer_type=rec.answer_type, precision=rec.precision, rules=EVAL_RULES
    )
    return JudgedSample(text, verdict.extracted, bool(verdict.correct), verdict.reason, finished)


def _rethink_at_test(engine, encoder, pending, groups, trigger: str | None, max_new_tokens: int) -> list | None:
    """Each first answer continued greedily after ``trigger`` (its end-of-sequence token
    dropped), the joined response judged; None without a trigger."""
    if not trigger:
        return None
    tokenizer = encoder.processor.tokenizer
    trig = tokenizer.encode(trigger, add_special_tokens=False)
    eos = set(getattr(engine, "eos_ids", ()) or ())
    firsts = [g[0] for g in groups]
    queries = [extend_query(q, [t for t in c.token_ids if t not in eos] + trig) for (_, q), c in zip(pending, firsts)]
    conts = [g[0] for g in engine.generate(queries, SamplingParams(max_new_tokens=max_new_tokens, greedy=True))]
    return [
        _judged(c.text + trigger + cont.text, rec, cont.finished) for (rec, _), c, cont in zip(pending, firsts, conts)
    ]
