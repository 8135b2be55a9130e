"""The Forced Rethinking stage: continue chosen responses after a trigger; a continuation
that passes the acceptance filter replaces its original in the group (same slot, so
groups keep their size). The choices themselves are ``algo.rethink``'s pure functions."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .. import metric_names as M
from ..algo.rethink import Acceptance, RethinkConfig, RethinkPlan, accept, join_tokens, plan_rethinks
from ..algo.sample import RethinkAttempt, Sample
from ..judge import RewardConfig
from ..rollout.base import Completion, RolloutEngine, SamplingParams, extend_query
from .experience import Experience, groups_of, judgement, score


def force_rethinking(
    exp: Experience,
    engine: RolloutEngine,
    tokenizer,
    params: SamplingParams,
    reward_cfg: RewardConfig,
    cfg: RethinkConfig,
    rng: np.random.Generator,
) -> Experience:
    """The experience after Forced Rethinking, with its ``rethink/*`` metrics; every
    response tried carries its ``RethinkAttempt`` (kept or not) for the sample log."""
    t0 = time.perf_counter()
    samples = list(exp.samples)
    plans = plan_rethinks(
        [s.judgement.text for s in samples],
        [s.judgement.finished for s in samples],
        [len(s.completion_ids) for s in samples],
        [bool(s.correct) for s in samples],
        params.n,
        rng,
        cfg,
    )
    if not plans:
        return exp.with_samples(
            samples,
            **{M.RETHINK_ATTEMPTS: 0, M.RETHINK_ACCEPTED: 0, M.RETHINK_ACCEPTANCE: 0.0, M.RETHINK_TOKENS: 0},
            **{M.TIME_RETHINK: time.perf_counter() - t0},
        )
    prefixes, conts = _continue(engine, tokenizer, samples, plans, params, cfg)
    joined_texts = [p.first_text + p.trigger + c.text for p, c in zip(plans, conts)]
    joined = [
        score(t, exp.records[samples[p.index].group], c.finished, reward_cfg)
        for p, t, c in zip(plans, joined_texts, conts)
    ]
    verdict = accept(
        plans, [c.text for c in conts], [len(c.token_ids) for c in conts], [bool(r.correct) for r in joined], cfg
    )
    extras: dict[int, list[Sample]] = {}  # placement append: kept rethinks, by the group they join
    for k, p in enumerate(plans):
        attempt = _attempt(p, conts[k], samples[p.index], verdict.kept[k], verdict.reasons[k], bool(joined[k].correct))
        if not attempt.kept or cfg.placement == "append":
            samples[p.index] = replace(samples[p.index], rethink=attempt)
        if not attempt.kept:
            continue
        train_first = cfg.first_pass_loss == "train" or p.first_correct  # mask-wrong: not a wrong one
        ids, mask = join_tokens(*prefixes[k], conts[k].token_ids, cfg.train_on_trigger, train_first)
        rethought = replace(
            samples[p.index],
            reward=float(joined[k].value),
            completion_ids=ids.tolist(),
            completion_mask=mask.int().tolist(),
            correct=bool(joined[k].correct),
            judgement=judgement(joined_texts[k], conts[k].finished, joined[k]),
            rethink=attempt,
            extra=cfg.placement == "append",
        )
        if rethought.extra:
            extras.setdefault(rethought.group, []).append(rethought)
        else:
            samples[p.index] = rethought
    if extras:  # each group's extra members follow its G slots (groups stay contiguous)
        samples = [x for g in groups_of(samples) for x in g + extras.get(g[0].group, [])]
    metrics = _metrics(plans, verdict, conts)
    return exp.with_samples(samples, **metrics, **{M.TIME_RETHINK: time.perf_counter() - t0})


def _continue(
    engine: RolloutEngine, tokenizer, samples: list[Sample], plans: list[RethinkPlan], params, cfg: RethinkConfig
) -> tuple[list[tuple[list[int], list[int]]], list[Completion]]:
    """Each planned response's prefix ids (first pass, trigger) and the policy's
    continuation from there (one sample each, at the rethinking temperature)."""
    eos = set(getattr(engine, "eos_ids", ()) or ())
    prefixes = [_prefix_ids(p, samples[p.index], tokenizer, eos) for p in plans]
    queries = [extend_query(samples[p.index].prompt, a + b) for p, (a, b) in zip(plans, prefixes)]
    cont_params = SamplingParams.from_sampling(
        params, max_new_tokens=min(cfg.max_continuation, params.max_new_tokens), temperature=cfg.temperature, n=1
    )
    return prefixes, [g[0] for g in engine.generate(queries, cont_params)]


def _metrics(plans: list[RethinkPlan], verdict: Acceptance, conts: list[Completion]) -> dict[str, float]:
    n_kept = sum(verdict.kept)
    metrics = {
        M.RETHINK_ATTEMPTS: len(plans),
        M.RETHINK_ACCEPTED: n_kept,
        M.RETHINK_ACCEPTANCE: n_kept / len(plans),
        M.RETHINK_FIXED_WRONG: sum(1 for p, k in zip(plans, verdict.kept) if k and not p.first_correct),
        M.RETHINK_TOKENS: sum(len(c.token_ids) for c in conts),  # generated continuation tokens (the budget)
    }
    for reason, n in verdict.counts.items():
        if reason != "kept":
            metrics[M.key(M.RETHINK_REJECTED, reason=reason)] = n
    return metrics


def _prefix_ids(p: RethinkPlan, s: Sample, tokenizer, eos: set[int]) -> tuple[list[int], list[int]]:
    """The first pass (cut back before its answer, or the response without its EOS) and
    the trigger, as token ids: the continuation's prefix and the trained tokens."""
    if p.cut:
        first_ids = tokenizer.encode(p.first_text, add_special_tokens=False)
    else:
        first_ids = [t for t in s.completion_ids if t not in eos]
    return first_ids, tokenizer.encode(p.trigger, add_special_tokens=False)


def _attempt(p: RethinkPlan, c: Completion, s: Sample, kept: bool, why: str, joined_correct: bool) -> RethinkAttempt:
    """What the sample log shows of an attempt; the first pass is the original response
    unless it was cut back before its answer."""
    return RethinkAttempt(
        trigger=p.trigger,
        continuation=c.text,
        kept=kept,
        why=why,
        cut=p.cut,
        first_correct=p.first_correct,
        joined_correct=joined_correct,
        first=p.first_text if p.cut else None,
        original=s.judgement.text if p.cut else None,
    )
