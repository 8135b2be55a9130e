"""The RL loop, top to bottom: GRPO + Selective Sample Replay + Forced Rethinking.

    for step in 1..max_steps:
        queries  <- the next queries_per_step records (this rank's share)
        rollout  <- G responses per query
        judge    <- rule-based reward per response
        rethink  <- Forced Rethinking: continue some after a trigger; kept ones replace
        A        <- group advantages (r - mean) / (std + eps)
        gather   <- every rank's experience, one global pool
        select   <- SSR: re-draw the non-zero-advantage samples, p ~ |A|^alpha
        update   <- clipped policy gradient over micro-batches (+ optional KL/entropy/SFT)
        log, evaluate (greedy, held-out), checkpoint

Each stage returns a new ``Experience`` (``experience.py``; Forced Rethinking in
``rethinking.py``, DAPO's dynamic sampling in ``dynamic.py``); set-up, restore, evaluation
and saving are in ``run.py``; the update in ``update.py``; the algorithms themselves in
``rethinker.algo``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

from tqdm import tqdm

from .. import metric_names as M
from ..algo.rethink import RethinkConfig
from ..algo.ssr import Selection
from ..rollout.base import NonFiniteLogits, SamplingParams
from .distributed import rollout_weights
from .dynamic import draw_informative
from .experience import Experience, encode_batch, final_metrics, first_pass_metrics, gather, judge, rollout
from .experience import with_advantages as advantages
from .host import proc_status_bytes, release_free_heap
from .metrics import console_line, step_row
from .preempt import Preempted, StopFlag, cut_short
from .rethinking import force_rethinking
from .run import Run, setup
from .update import Diverged, policy_update, with_behaviour_logprobs


def train(cfg, resume: bool = False, progress: bool = True, checkpoint=None) -> dict[str, Any]:
    """Train ``cfg`` (resuming its run folder's newest whole checkpoint, or ``checkpoint``)."""
    run = setup(cfg, resume, checkpoint)
    rethink, sampling = cfg.rethink_for_rollout(), cfg.rollout.sampling()
    stop = StopFlag().install()  # SIGTERM / SIGINT / SIGUSR1: checkpoint and exit (preempt.py)
    first_eval = _begin(run)
    last_eval, last_test = first_eval, {}
    bar = _progress_bar(run) if progress and run.ctx.is_main else None
    reached = run.start_step
    try:
        for step in range(run.start_step + 1, cfg.max_steps + 1):
            if run.budget_spent:
                break  # resumed after the sample budget had ended the run
            t0, start = time.perf_counter(), run.snapshot()
            reached = step
            # 1-5. this rank's queries (bad records skipped, named, counted), rollouts, rewards,
            #      Forced Rethinking, group advantages (a GRPO group stays on one rank)
            with cut_short(run.engine, stop):  # a stop signal cuts the rollout short
                exp = _experience(run, step, rethink, sampling)
            if cfg.ssr.mode == "released":  # replay across steps: store behaviour log-probs now
                exp = _with_behaviour(run, exp)
            exp = gather(exp, run.ctx)
            if signum := stop.agreed(run.ctx):  # stopped during the rollout: the step is abandoned
                run.restore(start)
                _stop(run, signum, step - 1)
            run.samples_generated += len(exp.generated)
            last = step == cfg.max_steps or run.budget_spent
            # 6. Selective Sample Replay over the global pool
            selection = run.selector.select(exp.samples) if exp.samples else None
            # 7. policy update (none when the step has nothing to train on)
            upd = _update(run, selection)
            # 8. metrics, sample log, evaluation, checkpoint
            row, evaluated = _log_step(run, step, exp, upd, selection, t0, last)
            last_eval = evaluated or last_eval
            _report_progress(bar, row, step, cfg.log_every, run.ctx.is_main)
            _check_finite(run, step)
            if cfg.save_every > 0 and (step % cfg.save_every == 0 or last):
                run.save(step)
            if last:
                last_test = run.evaluate(step, "test")
                break
            if signum := stop.agreed(run.ctx):
                _stop(run, signum, step)
    finally:
        stop.uninstall()
        if bar is not None:
            bar.close()
    return run.finish(first_eval, last_eval, last_test, steps=reached)


def _log_step(
    run: Run, step: int, exp: Experience, upd: dict[str, Any], selection: Selection | None, t0: float, last: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The step's metrics row, its sample log and (every ``eval_every`` steps) the dev
    evaluation's row; the step's freed memory goes back to the OS. The bookkeeping's own
    time is ``time/overhead_s``."""
    cfg = run.cfg
    t_book = time.perf_counter()
    release_free_heap()
    row = step_row(
        step,
        exp,
        upd,
        selection,
        group_size=cfg.rollout.group_size,
        correct_reward=cfg.reward.correct,
        lr=run.scheduler.get_last_lr()[0],
    )
    row.update(
        {
            M.ROLLOUT_SAMPLES: len(exp.generated),
            M.BUDGET_SAMPLES: run.samples_generated,
            M.HOST_RSS_MB: proc_status_bytes("VmRSS") / 2**20,
        }
    )
    if selection is not None:
        run.log_samples(step, exp, selection)
    t_eval, evaluated = time.perf_counter(), {}
    if cfg.eval_every > 0 and (step % cfg.eval_every == 0 or last):
        evaluated = run.evaluate(step)
        row[M.EVAL_ACCURACY] = evaluated.get(M.EVAL_ACCURACY)
    row.update({M.TIME_OVERHEAD: t_eval - t_book, M.TIME_STEP: t_eval - t0})
    run.logger.log(row)
    return row, evaluated


def _check_finite(run: Run, step: int) -> None:
    """End the run (``Diverged``) after ``optim.max_nonfinite_steps`` optimizer steps in a
    row had a non-finite loss or gradient norm (each was skipped)."""
    if 0 < run.cfg.optim.max_nonfinite_steps <= run.nonfinite_streak:
        run.close_logs()
        raise Diverged(
            f"the loss or gradient norm was not finite in {run.nonfinite_streak} consecutive optimizer steps, "
            f"the last in step {step}: stopping (the newest checkpoint is step {run.saved_step}; "
            "a lower optim.lr or optim.grad_clip usually helps; optim.max_nonfinite_steps 0 never stops)"
        )


def _stop(run: Run, signum: int, step: int) -> None:
    """After a stop signal: the checkpoint of ``step`` (unless it exists, or no step was
    taken: a resume then starts from step 0), the logs closed, ``Preempted`` raised."""
    if step > run.saved_step:
        run.save(step)
    run.close_logs()
    raise Preempted(signum, step, str(run.run_dir / f"checkpoint-{step}") if step > 0 else None)


def _experience(run: Run, step: int, rethink: RethinkConfig | None, sampling: SamplingParams) -> Experience:
    """This rank's experience for one step: one draw, or with ``rollout.dynamic_sampling``
    the informative groups of several (``dynamic.py``)."""
    cfg = run.cfg.rollout
    if not cfg.dynamic_sampling:
        return _draw(run, step, rethink, sampling)
    return draw_informative(
        lambda: _draw(run, step, rethink, sampling), cfg.group_size, cfg.max_sampling_rounds, run.ctx
    )


def _draw(run: Run, step: int, rethink: RethinkConfig | None, sampling: SamplingParams) -> Experience:
    """Draw the next queries and run them through rollout -> judge -> advantages ->
    Forced Rethinking -> advantages (again only when rethinking changed a group)."""
    cfg, ctx, G = run.cfg, run.ctx, run.cfg.rollout.group_size
    scale = {"scale": cfg.algo.advantage_scale, "eps": cfg.algo.advantage_eps}
    batch = run.sampler.next(cfg.rollout.queries_per_step)[ctx.rank :: ctx.world]
    records, queries, bad = encode_batch(run.encoder, batch)
    with rollout_weights(run.engine, run.model, ctx):
        try:
            comps, gen_metrics = rollout(run.engine, queries, sampling)
        except NonFiniteLogits as exc:
            raise Diverged(f"step {step}: {exc}; the newest checkpoint is step {run.saved_step}") from exc
        exp = advantages(judge(comps, records, queries, G, step, cfg.reward), G, **scale)
        metrics = {**first_pass_metrics(exp, G, [len(c.token_ids) for c in comps]), **gen_metrics}
        if rethink is not None and exp.samples:
            exp = force_rethinking(
                exp, run.engine, run.processor.tokenizer, sampling, cfg.reward, rethink, run.rethink_rng
            )
            exp = advantages(exp, G, **scale)
        run.engine.drain()  # a shared engine (tensor-parallel group) serves its group until all are done
    metrics = {**metrics, **exp.metrics, **final_metrics(exp)}
    # the G slots of each group (after Forced Rethinking replaced some), not the extra members
    generated = tuple(s.reward for s in exp.samples if not s.extra)
    return replace(exp, metrics=metrics, generated=generated, skipped=len(bad))


def _with_behaviour(run: Run, exp: Experience) -> Experience:
    """The experience whose informative samples carry the current policy's log-probs."""
    informative = [s for s in exp.samples if s.advantage != 0]
    filled = with_behaviour_logprobs(
        run.model, informative, run.pad_id, run.cfg.optim.micro_batch_size, run.device, run.dtype, run.ctx
    )
    new = {id(old): s for old, s in zip(informative, filled)}
    return exp.with_samples([new.get(id(s), s) for s in exp.samples])


def _update(run: Run, selection: Selection | None) -> dict[str, Any]:
    """The policy update on the selection, then the engine's weights; none when the step
    has nothing to train on (every record was bad, or dynamic sampling found no
    informative group in any of its draws)."""
    if selection is None or selection.skipped_update:
        return {M.UPDATE_SKIPPED: 1}
    cfg = run.cfg
    upd = policy_update(
        run.model,
        run.optimizer,
        run.scheduler,
        selection.samples,
        cfg.algo,
        cfg.optim,
        pad_id=run.pad_id,
        ref_model=run.ref_model,
        max_new_tokens=cfg.rollout.max_new_tokens,
        correct_reward=cfg.reward.correct,
        nonfinite_streak=run.nonfinite_streak,
        ctx=run.ctx,
    )
    run.nonfinite_streak = upd[M.NONFINITE_STREAK]
    run.engine.sync_weights(run.model)  # no-op for the transformers engine (it samples from `model`)
    return {**upd, M.UPDATE_SKIPPED: 0}


def _begin(run: Run) -> dict[str, Any]:
    """A fresh run logs its data counts and the base policy's dev and test accuracy (step 0)."""
    if run.start_step > 0:
        return {}
    run.logger.log(
        {
            M.STEP: 0,
            M.TRAIN_RECORDS: len(run.data.train),
            M.EVAL_RECORDS: len(run.data.eval),
            M.TEST_RECORDS: len(run.data.test),
            M.SKIPPED_AT_LOAD: len(run.data.skipped),
        }
    )
    first = run.evaluate(0) if run.cfg.eval_every > 0 else {}
    return {**first, **run.evaluate(0, "test")}


def _progress_bar(run: Run) -> tqdm:
    return tqdm(total=run.cfg.max_steps, initial=run.start_step, desc="rl", file=sys.stderr, dynamic_ncols=True)


def _report_progress(bar, row: dict[str, Any], step: int, log_every: int, is_main: bool) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str(console_line(row), refresh=False)
    elif is_main and step % log_every == 0:
        print(f"step {step}: {console_line(row)}", file=sys.stderr)
