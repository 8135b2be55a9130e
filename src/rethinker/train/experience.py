"""Experience collection: queries -> G rollouts each -> rewards -> Forced Rethinking.

Returns one ``Sample`` per response, group by group (the G samples of a query are
consecutive), with its reward and correctness; advantages are computed by the loop.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..algo.advantages import group_advantages, group_stats
from ..algo.rethink import RethinkConfig, accept, join_tokens, plan_rethinks, reflection_rate
from ..algo.sample import Sample
from ..judge import RewardConfig, reward
from ..records import Record, RecordError
from ..rollout.base import Completion, RolloutEngine, SamplingParams, extend_query
from ..rollout.inputs import PromptEncoder, QueryInputs


@dataclass
class Experience:
    """One step's samples, group by group; ``sample.group`` indexes ``records`` (the sample
    log shows each group's query)."""

    samples: list[Sample]
    records: list[Record]
    metrics: dict[str, Any] = field(default_factory=dict)


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


def _score(text: str, rec: Record, finished: bool, cfg: RewardConfig):
    return reward(text, rec.answer, choices=rec.choices, finished=finished, config=cfg)


def _verdict_meta(r) -> dict[str, Any]:
    """The judge's reason and extracted answer, for the sample log (``rethinker.report``)."""
    v = r.verdict
    return {"reason": v.reason if v is not None else r.rule, "extracted": v.extracted if v is not None else None}


def collect(
    engine: RolloutEngine,
    tokenizer,
    records: list[Record],
    queries: list[QueryInputs],
    *,
    params: SamplingParams,
    reward_cfg: RewardConfig,
    rethink_cfg: RethinkConfig | None,
    rng: np.random.Generator,
    step: int,
) -> Experience:
    G = params.n
    t0 = time.perf_counter()
    tok0 = engine.stats.tokens
    groups = engine.generate(queries, params)
    gen_s = time.perf_counter() - t0
    gen_tokens = engine.stats.tokens - tok0

    comps: list[Completion] = [c for g in groups for c in g]
    owner = [qi for qi in range(len(queries)) for _ in range(G)]
    results = [_score(c.text, records[owner[i]], c.finished, reward_cfg) for i, c in enumerate(comps)]
    samples = [
        Sample(
            advantage=0.0,
            reward=float(r.value),
            group=owner[i],
            step=step,
            prompt=queries[owner[i]],
            completion_ids=list(c.token_ids),
            completion_mask=[1] * len(c.token_ids),
            correct=bool(r.correct),
            meta={"text": c.text, "finished": c.finished, "rule": r.rule, **_verdict_meta(r)},
        )
        for i, (c, r) in enumerate(zip(comps, results))
    ]
    first_texts = [c.text for c in comps]
    first_rewards = torch.tensor([s.reward for s in samples], dtype=torch.float64)
    m: dict[str, Any] = {
        # correct = judged correct AND a valid response (a truncated one is invalid, not correct)
        "accuracy": _mean(valid_correct(r) for r in results),
        "invalid_ratio": _mean(r.rule in INVALID_RULES for r in results),
        "reflection_rate": reflection_rate(first_texts),
        "reflection_rate/released": reflection_rate(first_texts, released=True),
        "response_length/mean": float(np.mean([len(c.token_ids) for c in comps])) if comps else 0.0,
        "response_length/max": max((len(c.token_ids) for c in comps), default=0),
        "truncated_ratio": float(np.mean([not c.finished for c in comps])) if comps else 0.0,
        "rollout/tokens": gen_tokens,
        "rollout/tokens_per_s": gen_tokens / gen_s if gen_s > 0 else 0.0,
        "time/rollout_s": gen_s,
    }
    for rule in INVALID_RULES:
        m[f"reward/invalid_{rule}"] = _mean(r.rule == rule for r in results)
    if comps:  # the first pass's groups, before Forced Rethinking replaces responses in them
        first = group_stats(first_rewards, G)
        m["groups/zero_advantage_before_rethink"] = first["zero_adv_share"]
        m["effective_ratio/before_rethink"] = _mean(a != 0 for a in group_advantages(first_rewards, G).tolist())

    if rethink_cfg is not None and comps:
        t1 = time.perf_counter()
        m.update(
            _rethink(
                engine,
                tokenizer,
                records,
                queries,
                comps,
                samples,
                owner,
                results,
                params,
                reward_cfg,
                rethink_cfg,
                rng,
            )
        )
        m["time/rethink_s"] = time.perf_counter() - t1
    m["reward/mean"] = float(np.mean([s.reward for s in samples])) if samples else 0.0
    m["accuracy/after_rethink"] = _mean(bool(s.correct) and s.meta["rule"] not in INVALID_RULES for s in samples)
    return Experience(samples, records, m)


#: Reward rules of an invalid response (``rethinker.judge.reward``): whatever the judge says
#: of its answer, it earns the invalid reward.
INVALID_RULES = ("no_box", "truncated", "too_many_waits")


def valid_correct(r) -> bool:
    """A reward result that counts as correct: judged correct and not invalid."""
    return bool(r.correct) and r.rule not in INVALID_RULES


def _mean(flags) -> float:
    flags = [float(f) for f in flags]
    return float(np.mean(flags)) if flags else 0.0


def _rethink(
    engine, tokenizer, records, queries, comps, samples, owner, results, params, reward_cfg, cfg: RethinkConfig, rng
) -> dict[str, Any]:
    """Forced Rethinking: continue chosen responses after a trigger; accepted ones replace
    their originals in the group (same slot, so groups keep their size)."""
    eos = set(getattr(engine, "eos_ids", []) or [])
    plans = plan_rethinks(
        [c.text for c in comps],
        [c.finished for c in comps],
        [len(c.token_ids) for c in comps],
        [bool(r.correct) for r in results],
        params.n,
        rng,
        cfg,
    )
    if not plans:
        return {"rethink/attempts": 0, "rethink/accepted": 0, "rethink/acceptance_rate": 0.0, "rethink/tokens": 0}
    prefixes, cont_queries = [], []
    for p in plans:
        c = comps[p.index]
        if p.cut:
            first_ids = tokenizer.encode(p.first_text, add_special_tokens=False)
        else:
            first_ids = [t for t in c.token_ids if t not in eos]
        trig_ids = tokenizer.encode(p.trigger, add_special_tokens=False)
        prefixes.append((first_ids, trig_ids))
        cont_queries.append(extend_query(queries[owner[p.index]], first_ids + trig_ids))
    cont_params = SamplingParams.from_sampling(
        params, max_new_tokens=min(cfg.max_continuation, params.max_new_tokens), temperature=cfg.temperature, n=1
    )
    conts = [g[0] for g in engine.generate(cont_queries, cont_params)]
    joined_texts = [p.first_text + p.trigger + c.text for p, c in zip(plans, conts)]
    joined_results = [
        _score(t, records[owner[p.index]], c.finished, reward_cfg) for p, t, c in zip(plans, joined_texts, conts)
    ]
    verdict = accept(
        plans,
        [c.text for c in conts],
        [len(c.token_ids) for c in conts],
        [bool(r.correct) for r in joined_results],
        cfg,
    )
    n_kept = 0
    for p, (first_ids, trig_ids), c, r, text, kept, why in zip(
        plans, prefixes, conts, joined_results, joined_texts, verdict.kept, verdict.reasons
    ):
        # what the sample log shows of the attempt (rethinker.report), kept or not; the first
        # pass is the original response unless it was cut back before its answer
        attempt = {
            "cut": p.cut,
            "trigger": p.trigger,
            "continuation": c.text,
            "kept": kept,
            "why": why,
            "first_correct": p.first_correct,
            "joined_correct": bool(r.correct),
        }
        if p.cut:
            attempt.update(first=p.first_text, original=comps[p.index].text)
        if not kept:
            samples[p.index].meta["rethink_attempt"] = attempt
            continue
        ids, mask = join_tokens(first_ids, trig_ids, c.token_ids, cfg.train_on_trigger)
        s = samples[p.index]
        samples[p.index] = Sample(
            advantage=0.0,
            reward=float(r.value),
            group=s.group,
            step=s.step,
            prompt=s.prompt,
            completion_ids=ids.tolist(),
            completion_mask=mask.int().tolist(),
            correct=bool(r.correct),
            meta={
                "text": text,
                "finished": c.finished,
                "rule": r.rule,
                "rethink": True,
                "first_correct": p.first_correct,
                **_verdict_meta(r),
                "rethink_attempt": attempt,
            },
        )
        n_kept += 1
    out = {
        "rethink/attempts": len(plans),
        "rethink/accepted": n_kept,
        "rethink/acceptance_rate": n_kept / len(plans),
        "rethink/fixed_wrong": sum(1 for p, k in zip(plans, verdict.kept) if k and not p.first_correct),
        "rethink/tokens": sum(len(c.token_ids) for c in conts),  # generated continuation tokens (the budget)
    }
    for reason, n in verdict.counts.items():
        if reason != "kept":
            out[f"rethink/rejected_{reason}"] = n
    return out
