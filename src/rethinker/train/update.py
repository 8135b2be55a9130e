"""The policy update: selected samples -> micro-batches -> clipped policy-gradient step(s).

Old log-probabilities are those of the policy that generated the tokens:
- a sample carrying ``behaviour_logprobs`` (replayed from an earlier step, or scored
  before the first of several optimizer steps) uses them;
- a sample of the current step updated by ONE optimizer step uses the current log-probs,
  detached (they are equal; this skips a whole no-grad forward, as TRL does).
Each micro-batch runs every distinct prompt once and its samples' completions on top of
its key/value cache (``rollout.scoring.score_grouped``) where the model allows; otherwise
one full prompt+completion forward. Micro-batches are bucketed by length (samples sorted
by length before chunking), so padding is small; losses are summed over micro-batches with the mini-batch's total token
(or sequence) count as denominator, so accumulation gives exactly the full-batch loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .. import metric_names as M
from ..algo.kl import kl_penalty
from ..algo.losses import policy_loss, sft_aux_loss
from ..algo.sample import Sample
from ..rollout import prefix
from ..rollout.inputs import QueryInputs, collate_sequences
from ..rollout.scoring import score, score_grouped
from .distributed import DistContext


class Diverged(RuntimeError):
    """Too many consecutive optimizer steps had a non-finite loss or gradient norm."""


@dataclass
class Chunk:
    samples: list[Sample]
    queries: list[QueryInputs]
    query_index: list[int]
    weight: float = 1.0  # 0.0: a lockstep filler in multi-process runs (runs, learns nothing)


def _chunks(samples: Sequence[Sample], size: int, by_length: bool) -> list[Chunk]:
    order = list(range(len(samples)))
    if by_length:
        order.sort(key=lambda i: samples[i].prompt.length + len(samples[i].completion_ids))
    out = []
    for start in range(0, len(order), size):
        part = [samples[i] for i in order[start : start + size]]
        uniq: dict[int, int] = {}
        queries: list[QueryInputs] = []
        qidx = []
        for s in part:
            key = id(s.prompt)
            if key not in uniq:
                uniq[key] = len(queries)
                queries.append(s.prompt)
            qidx.append(uniq[key])
        out.append(Chunk(part, queries, qidx))
    return out


def _dense(values: Sequence[Sequence[float] | torch.Tensor], target: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Scatter per-sample completion values into the [B, L-1] grid at ``target``."""
    out = torch.zeros(target.shape, dtype=dtype, device=target.device)
    flat = torch.cat([torch.as_tensor(v, dtype=dtype).reshape(-1) for v in values]).to(target.device)
    out[target] = flat
    return out


def _forward(
    model, chunk: Chunk, pad_id: int, device, dtype, *, with_entropy: bool = False, entropy_grad: bool = False
):
    """Score a chunk: returns (a batch whose ``target_mask`` locates the completion tokens,
    ``Scores`` in that layout)."""
    if prefix.supported(model):
        return score_grouped(
            model,
            chunk.queries,
            [s.completion_ids for s in chunk.samples],
            chunk.query_index,
            pad_id,
            with_entropy=with_entropy,
            entropy_grad=entropy_grad,
        )
    batch = collate_sequences(chunk.queries, [s.completion_ids for s in chunk.samples], chunk.query_index, pad_id)
    batch = batch.to(device, dtype)
    scores = score(model, chunk.queries, batch, with_entropy=with_entropy, entropy_grad=entropy_grad)
    return batch, scores


@torch.no_grad()
def with_behaviour_logprobs(
    model, samples: Sequence[Sample], pad_id: int, micro_batch_size: int, device, dtype, ctx: DistContext | None = None
) -> list[Sample]:
    """The samples, those lacking ``behaviour_logprobs`` given the current policy's (call
    before the first of several optimizer steps, or before samples enter a cross-step
    replay buffer). A sample listed twice comes back as one new object, listed twice.

    With several ranks (``ctx``; every rank calls it) the sharded policy runs in lockstep:
    each rank runs as many forwards as the rank with the most, padded with fillers whose
    results are dropped, so FSDP2 gathers one unit at a time, never the whole model."""
    todo = list({id(s): s for s in samples if s.behaviour_logprobs is None}.values())
    chunks = _chunks(todo, micro_batch_size, True)
    if ctx is not None and ctx.enabled:
        chunks += _lockstep_fillers(len(chunks), list(samples), ctx)
    if not chunks:
        return list(samples)
    filled: dict[int, Sample] = {}
    was_training = model.training
    model.eval()
    try:
        for chunk in chunks:
            batch, scores = _forward(model, chunk, pad_id, device, dtype)
            if chunk.weight == 0.0:  # a lockstep filler
                continue
            rows = scores.logprobs.float().cpu()
            tm = batch.target_mask.cpu()
            for i, s in enumerate(chunk.samples):
                filled[id(s)] = replace(s, behaviour_logprobs=rows[i][tm[i]].clone())
    finally:
        model.train(was_training)
    return [filled.get(id(s), s) for s in samples]


def _lockstep_fillers(n_chunks: int, local: list[Sample], ctx: DistContext) -> list[Chunk]:
    """Zero-weight chunks that bring this rank's forward count up to the largest over the
    ranks. A filler is one of this rank's samples, or, on a rank with none, one lent by
    the first rank that has one (sent only when some rank has none)."""
    counts = ctx.gather_objects((n_chunks, bool(local)))
    missing = max(c for c, _ in counts) - n_chunks
    if all(has for _, has in counts):
        filler = local[0] if missing else None
    else:
        lender = next((r for r, (_, has) in enumerate(counts) if has), None)
        offers = ctx.gather_objects(local[0] if ctx.rank == lender else None)
        filler = local[0] if local else (offers[lender] if lender is not None else None)
    if filler is None:
        return []
    return [Chunk([filler], [filler.prompt], [0], weight=0.0) for _ in range(missing)]


def _local_share(items: Sequence[Sample], rank: int, world: int) -> list[Sample]:
    return list(items[rank::world])


@dataclass
class Denominators:
    """A mini-batch's loss denominators, global over ranks and divided by the world size
    (FSDP averages gradients over ranks, so the update equals the single-process one)."""

    policy: float  # tokens (token-mean) or sequences
    tokens: float  # completion tokens: KL and entropy bonus are token means
    sft: float  # tokens of the correct, positive-advantage samples (auxiliary SFT loss)

    @classmethod
    def of(cls, mini_batch: Sequence[Sample], aggregation: str, world: int, correct_reward: float) -> Denominators:
        masks = [torch.as_tensor(s.completion_mask, dtype=torch.float32) for s in mini_batch]
        n_tok = float(sum(m.sum() for m in masks))
        sft = float(sum(m.sum() for s, m in zip(mini_batch, masks) if s.reward >= correct_reward and s.advantage > 0))
        policy = n_tok if aggregation == "token-mean" else float(len(mini_batch))
        return cls(policy / world, n_tok / world, sft / world)


@dataclass
class UpdateStats:
    """Running statistics of one rollout step's update, reduced over ranks in ``summary``."""

    tok_weighted: dict[str, float] = field(default_factory=dict)  # token-weighted sums
    losses: dict[str, float] = field(default_factory=dict)  # summed over micro-batches
    n_tokens: int = 0
    entropy_sum: float = 0.0
    ratio_min: float = math.inf
    ratio_max: float = -math.inf
    grad_norms: list[float] = field(default_factory=list)
    delta_norms: list[float] = field(default_factory=list)
    skipped: int = 0
    streak: int = 0  # consecutive skipped optimizer steps, carried over from earlier updates

    #: policy_loss's token-weighted statistics and the metric each becomes
    TOKEN_WEIGHTED = {
        "clip_frac_low": M.CLIP_FRAC_LOW,
        "clip_frac_high": M.CLIP_FRAC_HIGH,
        "approx_kl": M.APPROX_KL,
        "ratio_mean": M.RATIO_MEAN,
    }
    LOSSES = (M.LOSS_POLICY, M.LOSS_KL, M.LOSS_SFT)

    def add_chunk(self, st: dict[str, Any], losses: dict[str, float], entropy_sum: float) -> None:
        n = st["n_tokens"]
        self.n_tokens += int(n)
        for k in self.TOKEN_WEIGHTED:
            self.tok_weighted[k] = self.tok_weighted.get(k, 0.0) + st[k] * n
        if n:
            self.ratio_min, self.ratio_max = min(self.ratio_min, st["ratio_min"]), max(self.ratio_max, st["ratio_max"])
        for k, v in losses.items():
            self.losses[k] = self.losses.get(k, 0.0) + v
        self.entropy_sum += entropy_sum

    def summary(self, ctx, n_minis: int, elapsed: float) -> dict[str, Any]:
        # the same reductions, in the same order, on every rank (a rank may have run only fillers)
        tok_weighted = {k: ctx.sum_float(self.tok_weighted.get(k, 0.0)) for k in self.TOKEN_WEIGHTED}
        losses = {}
        for k in self.LOSSES:
            if ctx.max_float(float(k in self.losses)):  # each rank's loss carries the factor world
                losses[k] = ctx.sum_float(self.losses.get(k, 0.0)) / ctx.world
        n_tokens = int(ctx.sum_float(self.n_tokens))
        entropy_sum = ctx.sum_float(self.entropy_sum)
        ratio_min = -ctx.max_float(-self.ratio_min)
        ratio_max = ctx.max_float(self.ratio_max)
        out: dict[str, Any] = {
            M.OPTIMIZER_STEPS: n_minis - self.skipped,
            M.SKIPPED_NONFINITE: self.skipped,
            M.NONFINITE_STREAK: self.streak,
            M.UPDATE_TOKENS: n_tokens,
            M.UPDATE_TOKENS_PER_S: n_tokens / elapsed if elapsed > 0 else 0.0,
            M.TIME_UPDATE: elapsed,
            M.GRAD_NORM: sum(self.grad_norms) / len(self.grad_norms) if self.grad_norms else None,
            **({M.PARAM_DELTA_NORM: sum(self.delta_norms) / len(self.delta_norms)} if self.delta_norms else {}),
            M.ENTROPY: entropy_sum / n_tokens if n_tokens else None,
        }
        denom = max(n_tokens, 1)
        for k, name in self.TOKEN_WEIGHTED.items():
            out[name] = tok_weighted[k] / denom
        out[M.RATIO_MIN] = ratio_min if math.isfinite(ratio_min) else None
        out[M.RATIO_MAX] = ratio_max if math.isfinite(ratio_max) else None
        out.update({k: v / n_minis for k, v in losses.items()})
        return out


def chunk_loss(
    model,
    chunk: Chunk,
    algo,
    denom: Denominators,
    *,
    pad_id: int,
    device,
    dtype,
    ref_model=None,
    max_new_tokens: int | None = None,
    correct_reward: float = 1.0,
) -> tuple[torch.Tensor, dict[str, Any], dict[str, float], float]:
    """One micro-batch's loss (its share of the mini-batch's mean: policy + KL - entropy
    bonus + SFT), the policy-loss statistics, the loss terms as floats, and the summed
    token entropy. A lockstep filler (weight 0) returns its policy loss times zero."""
    ref_lp = None  # first and for every chunk, fillers too: a sharded reference's forward is a collective
    if algo.kl_coef > 0 and ref_model is not None:
        ref_lp = reference_logprobs(ref_model, model, chunk, pad_id, device, dtype)
    batch, scores = _forward(model, chunk, pad_id, device, dtype, with_entropy=True, entropy_grad=algo.entropy_coef > 0)
    tm = batch.target_mask
    mask = _dense([s.completion_mask for s in chunk.samples], tm) > 0
    lp = scores.logprobs
    if all(s.behaviour_logprobs is not None for s in chunk.samples):
        old = _dense([s.behaviour_logprobs for s in chunk.samples], tm)
    else:
        old = lp.detach().clone()
        for i, s in enumerate(chunk.samples):
            if s.behaviour_logprobs is not None:
                old[i][tm[i]] = torch.as_tensor(s.behaviour_logprobs, dtype=old.dtype, device=old.device)
    adv = torch.tensor([float(s.advantage) for s in chunk.samples], device=device)
    loss, st = policy_loss(
        lp,
        old,
        adv,
        mask,
        algo.clip_low,
        algo.clip_high,
        algo.aggregation,
        max_tokens=max_new_tokens,
        normalizer=denom.policy,
        ratio_level=algo.ratio_level,
    )
    if chunk.weight == 0.0:
        return loss * 0.0, st, {}, 0.0
    terms = {M.LOSS_POLICY: float(loss.detach())}
    if ref_lp is not None:
        kl = kl_penalty(lp, ref_lp, algo.kl_kind)
        kl_loss = torch.where(mask, kl, torch.zeros_like(kl)).sum() / max(denom.tokens, 1.0)
        loss = loss + algo.kl_coef * kl_loss
        terms[M.LOSS_KL] = float(kl_loss.detach())
    ent_tokens = torch.where(mask, scores.entropy, torch.zeros_like(scores.entropy)).sum()
    if algo.entropy_coef > 0:  # bonus: token-mean entropy over the mini-batch
        loss = loss - algo.entropy_coef * ent_tokens / max(denom.tokens, 1.0)
    if algo.sft_coef > 0 and denom.sft > 0:
        rewards = torch.tensor([float(s.reward) for s in chunk.samples], device=device)
        sft, _ = sft_aux_loss(lp, mask, rewards, adv, correct_threshold=correct_reward, normalizer=denom.sft)
        loss = loss + algo.sft_coef * sft
        terms[M.LOSS_SFT] = float(sft.detach())
    return loss, st, terms, float(ent_tokens)


@torch.no_grad()
def reference_logprobs(ref_model, policy, chunk: Chunk, pad_id: int, device, dtype) -> torch.Tensor:
    """The frozen reference's log-probs of the chunk's completions, in the policy's layout.
    ``ref_model is policy`` (a LoRA policy): the policy with its adapters switched off,
    which is the base model it started from, so no second copy of the weights is held."""
    off = ref_model.disable_adapter() if ref_model is policy else nullcontext()
    with off:
        _, scores = _forward(ref_model, chunk, pad_id, device, dtype)
    return scores.logprobs


def _mini_batches(model, samples: list[Sample], optim, pad_id: int, ctx: DistContext) -> list[list[Sample]]:
    """The optimizer steps' mini-batches; with more than one, this rank's samples carry the
    current policy's log-probs first (the later steps train on a policy that moved)."""
    mini = optim.mini_batch_size or len(samples)
    minis = [samples[i : i + mini] for i in range(0, len(samples), mini)]
    if len(minis) == 1:
        return minis
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    local_all = [s for mb in minis for s in _local_share(mb, ctx.rank, ctx.world)]
    filled = with_behaviour_logprobs(model, local_all, pad_id, optim.micro_batch_size, device, dtype, ctx)
    new = {id(old): s for old, s in zip(local_all, filled)}
    return [[new.get(id(s), s) for s in mb] for mb in minis]


def _lockstep_chunks(mb: list[Sample], ctx: DistContext, optim) -> list[Chunk]:
    """This rank's micro-batches of mini-batch ``mb``, padded with zero-weight fillers to
    the count of the rank with the most (each FSDP forward/backward is a collective)."""
    chunks = _chunks(_local_share(mb, ctx.rank, ctx.world), optim.micro_batch_size, optim.bucket_by_length)
    n_chunks = max(math.ceil(len(mb[r :: ctx.world]) / optim.micro_batch_size) for r in range(ctx.world))
    while len(chunks) < n_chunks:  # lockstep filler: a real sample with zero weight
        chunks.append(Chunk([mb[0]], [mb[0].prompt], [0], weight=0.0))
    return chunks


def _optimizer_step(
    model,
    optimizer,
    scheduler,
    grad_clip: float,
    ctx: DistContext,
    loss_total: float,
    stats: UpdateStats,
    log_update_norm: bool = False,
) -> None:
    """Clip and step, or skip (and count) a mini-batch whose loss or gradient norm is not
    finite on any rank (every rank takes the same decision). ``log_update_norm``: record
    the norm of the parameter change the step made."""
    if not math.isfinite(ctx.sum_float(loss_total if math.isfinite(loss_total) else math.inf)):
        optimizer.zero_grad(set_to_none=True)
        stats.skipped, stats.streak = stats.skipped + 1, stats.streak + 1
        return
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    gn = gn.full_tensor() if hasattr(gn, "full_tensor") else gn
    if not torch.isfinite(gn):
        optimizer.zero_grad(set_to_none=True)
        stats.skipped, stats.streak = stats.skipped + 1, stats.streak + 1
        return
    stats.grad_norms.append(float(gn))
    stats.streak = 0
    params = [p for p in model.parameters() if p.requires_grad] if log_update_norm else []
    before = [p.detach().clone() for p in params]
    optimizer.step()
    if params:
        stats.delta_norms.append(_delta_norm(params, before))
    if scheduler is not None:
        scheduler.step()


def _delta_norm(params: list[torch.nn.Parameter], before: list[torch.Tensor]) -> float:
    """The L2 norm of ``params - before`` over every parameter (whole, for sharded ones)."""
    sq = sum(((p.detach() - b).float() ** 2).sum() for p, b in zip(params, before))
    sq = sq.full_tensor() if hasattr(sq, "full_tensor") else sq
    return float(sq) ** 0.5


def policy_update(
    model,
    optimizer,
    scheduler,
    samples: Sequence[Sample],
    algo,
    optim,
    *,
    pad_id: int,
    ref_model=None,
    max_new_tokens: int | None = None,
    correct_reward: float = 1.0,
    nonfinite_streak: int = 0,
    ctx=None,
) -> dict[str, Any]:
    """One rollout step's update: one or more optimizer steps over ``samples``.

    With several processes (``ctx``, see ``train/distributed.py``) every rank passes the
    same global ``samples``; rank r trains on ``mini_batch[r::world]`` of each mini-batch,
    and all ranks run the same number of micro-batches (a rank short of samples runs a
    zero-weight one) because each FSDP forward/backward is a collective.
    ``correct_reward``: the reward of a correct response (the auxiliary SFT loss trains
    on responses at or above it with a positive advantage). ``nonfinite_streak``: the
    consecutive non-finite optimizer steps before this update (``update/nonfinite_streak``
    continues it)."""
    ctx = ctx or DistContext()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    t0 = time.perf_counter()
    minis = _mini_batches(model, list(samples), optim, pad_id, ctx)
    stats = UpdateStats(streak=nonfinite_streak)
    for mb in minis:
        denom = Denominators.of(mb, algo.aggregation, ctx.world, correct_reward)
        optimizer.zero_grad(set_to_none=True)
        loss_total = 0.0
        for chunk in _lockstep_chunks(mb, ctx, optim):
            loss, st, terms, ent = chunk_loss(
                model,
                chunk,
                algo,
                denom,
                pad_id=pad_id,
                device=device,
                dtype=dtype,
                ref_model=ref_model,
                max_new_tokens=max_new_tokens,
                correct_reward=correct_reward,
            )
            if chunk.weight != 0.0:
                stats.add_chunk(st, terms, ent)
                loss_total += float(loss.detach())
            loss.backward()
        _optimizer_step(
            model,
            optimizer,
            scheduler,
            optim.grad_clip,
            ctx,
            loss_total,
            stats,
            optim.log_update_norm,
        )
    optimizer.zero_grad(set_to_none=True)
    return stats.summary(ctx, len(minis), time.perf_counter() - t0)
