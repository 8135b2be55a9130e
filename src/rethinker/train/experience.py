"""A step's experience and the stages that make it: rollout -> judge -> (Forced Rethinking,
``rethinking.py``) -> advantages; and the one point where the ranks' experiences meet.

Every stage takes an ``Experience`` (or the engine's completions) and returns a new one;
none writes into the record it was given.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .. import metric_names as M
from ..algo.advantages import advantages_by_group, group_advantages, group_stats
from ..algo.rethink import reflection_rate
from ..algo.sample import Judgement, Sample
from ..judge import INVALID_RULES, RewardConfig, RewardResult, reward
from ..records import Record, RecordError
from ..rollout.base import Completion, RolloutEngine, SamplingParams
from ..rollout.inputs import PromptEncoder, QueryInputs
from .distributed import DistContext, merge_metrics


@dataclass(frozen=True)
class Experience:
    """One step's record: the queries, their responses group after group (the G samples of
    a query are consecutive and ``sample.group`` indexes ``records``), the step's metrics,
    the rewards of every response generated (every dynamic-sampling round: the group
    statistics and the sample budget count them) and the records skipped as bad."""

    records: tuple[Record, ...]
    samples: tuple[Sample, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    generated: tuple[float, ...] = ()
    skipped: int = 0

    @property
    def rewards(self) -> torch.Tensor:
        return torch.tensor([s.reward for s in self.samples], dtype=torch.float64)

    def with_samples(self, samples: Sequence[Sample], **metrics: float) -> Experience:
        return replace(self, samples=tuple(samples), metrics={**self.metrics, **metrics})


def groups_of(samples: Sequence[Sample]) -> list[list[Sample]]:
    """The samples by group (``sample.group``), in order; a group's members are contiguous
    (G first-pass responses, plus any kept rethink appended to them)."""
    groups: dict[int, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.group, []).append(s)
    return list(groups.values())


def encode_batch(
    encoder: PromptEncoder, records: list[Record]
) -> tuple[list[Record], list[QueryInputs], list[tuple[str, str]]]:
    """Encode records; a bad one (unreadable image, decompression bomb ...) is skipped with
    a warning naming it, and returned in the third list."""
    kept, queries, bad = [], [], []
    for rec in records:
        try:
            queries.append(encoder.encode(rec))
            kept.append(rec)
        except RecordError as exc:
            print(f"warning: skipped {exc}", file=sys.stderr)
            bad.append((rec.id, str(exc)))
    return kept, queries, bad


def score(text: str, rec: Record, finished: bool, cfg: RewardConfig) -> RewardResult:
    """The rule-based reward of one response to ``rec``."""
    return reward(text, rec.answer, choices=rec.choices, finished=finished, config=cfg)


def judgement(text: str, finished: bool, r: RewardResult) -> Judgement:
    v = r.verdict
    return Judgement(
        text=text,
        finished=finished,
        rule=r.rule,
        reason=v.reason if v is not None else r.rule,
        extracted=v.extracted if v is not None else None,
    )


def rollout(
    engine: RolloutEngine, queries: list[QueryInputs], params: SamplingParams
) -> tuple[list[Completion], dict[str, float]]:
    """G completions per query, query after query, and the generation's speed."""
    t0 = time.perf_counter()
    tok0 = engine.stats.tokens
    comps = [c for g in engine.generate(queries, params) for c in g]
    gen_s = time.perf_counter() - t0
    tokens = engine.stats.tokens - tok0
    return comps, {
        M.ROLLOUT_TOKENS: tokens,
        M.ROLLOUT_TOKENS_PER_S: tokens / gen_s if gen_s > 0 else 0.0,
        M.TIME_ROLLOUT: gen_s,
    }


def judge(
    comps: list[Completion],
    records: list[Record],
    queries: list[QueryInputs],
    group_size: int,
    step: int,
    cfg: RewardConfig,
) -> Experience:
    """The judged first pass: one sample per completion, with its reward (advantage 0)."""
    samples = []
    for i, c in enumerate(comps):
        q = i // group_size
        r = score(c.text, records[q], c.finished, cfg)
        samples.append(
            Sample(
                advantage=0.0,
                reward=float(r.value),
                group=q,
                step=step,
                prompt=queries[q],
                completion_ids=list(c.token_ids),
                completion_mask=[1] * len(c.token_ids),
                correct=bool(r.correct),
                judgement=judgement(c.text, c.finished, r),
            )
        )
    return Experience(tuple(records), tuple(samples))


def with_advantages(exp: Experience, group_size: int, scale: str, eps: float) -> Experience:
    """The experience with each sample's group advantage (``algo.advantages``; groups of
    any size once ``rethink.placement append`` added kept rethinks to them)."""
    ids = [s.group for s in exp.samples]
    if ids == [i // group_size for i in range(len(ids))]:  # G consecutive responses a group
        adv = group_advantages(exp.rewards, group_size, scale, eps).tolist()
    else:
        adv = advantages_by_group(exp.rewards, ids, scale, eps).tolist()
    return exp.with_samples([replace(s, advantage=a) for s, a in zip(exp.samples, adv)])


def first_pass_metrics(exp: Experience, group_size: int, lengths: Sequence[int]) -> dict[str, float]:
    """What the judged first pass says, before Forced Rethinking changes any group
    (``exp.samples`` carry the first pass's advantages)."""
    texts = [s.judgement.text for s in exp.samples]
    rules = [s.judgement.rule for s in exp.samples]
    m: dict[str, float] = {
        M.ACCURACY: _mean(s.valid_correct for s in exp.samples),
        M.INVALID_RATIO: _mean(r in INVALID_RULES for r in rules),
        M.REFLECTION_RATE: reflection_rate(texts),
        M.REFLECTION_RATE_RELEASED: reflection_rate(texts, released=True),
        M.LENGTH_MEAN: float(np.mean(lengths)) if lengths else 0.0,
        M.LENGTH_MAX: max(lengths, default=0),
        M.TRUNCATED_RATIO: _mean(not s.judgement.finished for s in exp.samples),
    }
    for rule in INVALID_RULES:
        m[M.key(M.INVALID_SHARE, rule=rule)] = _mean(r == rule for r in rules)
    if exp.samples:
        m[M.ZERO_ADV_BEFORE_RETHINK] = group_stats(exp.rewards, group_size).zero_adv_share
        m[M.EFFECTIVE_BEFORE_RETHINK] = _mean(s.advantage != 0 for s in exp.samples)
    return m


def final_metrics(exp: Experience) -> dict[str, float]:
    """Reward and accuracy of the responses the step trains on (after Forced Rethinking)."""
    return {
        M.REWARD_MEAN: float(np.mean([s.reward for s in exp.samples])) if exp.samples else 0.0,
        M.ACCURACY_AFTER_RETHINK: _mean(s.valid_correct for s in exp.samples),
    }


def gather(exp: Experience, ctx: DistContext) -> Experience:
    """Every rank's experience joined in rank order (the one point where they meet): the
    groups renumbered to index the joined records, metrics merged, counts summed."""
    parts: list[Experience] = ctx.gather_objects(exp)
    if len(parts) == 1:
        return parts[0]
    records: list[Record] = []
    samples: list[Sample] = []
    for p in parts:
        samples += [replace(s, group=s.group + len(records)) for s in p.samples]
        records += p.records
    return Experience(
        records=tuple(records),
        samples=tuple(samples),
        metrics=merge_metrics([p.metrics for p in parts], [len(p.samples) for p in parts]),
        generated=tuple(r for p in parts for r in p.generated),
        skipped=sum(p.skipped for p in parts),
    )


def _mean(flags) -> float:
    flags = [float(f) for f in flags]
    return float(np.mean(flags)) if flags else 0.0
