"""The RL loop, top to bottom: GRPO + Selective Sample Replay + Forced Rethinking.

    for step in 1..max_steps:
        queries  <- the next queries_per_step records
        samples  <- G rollouts per query, judged (rule-based reward)
        samples  <- Forced Rethinking: continue some after a trigger; kept ones replace
        A        <- group advantages (r - mean) / (std + eps)
        batch    <- SSR: re-draw the non-zero-advantage samples, p ~ |A|^alpha
        update   <- clipped policy gradient over micro-batches (+ optional KL/entropy/SFT)
        log, evaluate (greedy, held-out), checkpoint

Set-up, restore, evaluation and saving are in ``run.py``; collection in ``experience.py``;
the update in ``update.py``; the algorithms themselves in ``rethinker.algo``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from tqdm import tqdm

from ..algo.advantages import group_advantages, group_stats
from ..algo.sample import Sample
from ..algo.ssr import Selection
from .distributed import gathered, merge_metrics
from .experience import Experience, collect, encode_batch
from .host import proc_status_bytes, release_free_heap
from .metrics import console_line
from .run import Run, setup
from .update import behaviour_logprobs, policy_update


def train(cfg, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    run = setup(cfg, resume)
    ctx, model = run.ctx, run.model
    rethink, sampling = cfg.rethink_for_rollout(), cfg.rollout.sampling()
    first_eval = _begin(run)
    last_eval, last_test = first_eval, {}
    bar = (
        tqdm(total=cfg.max_steps, initial=run.start_step, desc="rl", file=sys.stderr, dynamic_ncols=True)
        if progress and ctx.is_main
        else None
    )
    reached = run.start_step
    for step in range(run.start_step + 1, cfg.max_steps + 1):
        if 0 < cfg.max_samples <= run.samples_generated:
            break  # resumed after the sample budget had ended the run
        t0 = time.perf_counter()
        reached = step
        # 1-4. queries (this rank's share; bad records skipped, named, counted), rollouts,
        #      rewards, Forced Rethinking, group advantages (a GRPO group stays on one rank)
        exp, generated, skipped = _experience(run, step, rethink, sampling)
        # 5. Selective Sample Replay over the global pool (released mode replays across steps,
        #    so it stores each sample's behaviour log-probs now)
        if cfg.ssr.mode == "released":
            with gathered(model, ctx):
                behaviour_logprobs(
                    model,
                    [s for s in exp.samples if s.advantage != 0],
                    run.pad_id,
                    cfg.optim.micro_batch_size,
                    run.device,
                    run.dtype,
                )
        parts = ctx.gather_objects((exp.samples, exp.metrics, skipped, generated))
        samples = [s for p in parts for s in p[0]]
        metrics = merge_metrics([p[1] for p in parts], [len(p[0]) for p in parts])
        n_bad = sum(p[2] for p in parts)
        n_generated = sum(len(p[3]) for p in parts)
        run.samples_generated += n_generated
        last = step == cfg.max_steps or 0 < cfg.max_samples <= run.samples_generated
        rewards = torch.tensor([r for p in parts for r in p[3]], dtype=torch.float64)
        gstats = (
            group_stats(rewards, cfg.rollout.group_size, correct_threshold=cfg.reward.correct) if len(rewards) else {}
        )
        selection = run.selector.select(samples) if samples else None
        # 6. policy update (none when the step has nothing to train on: every record was
        #    bad, or dynamic sampling found no informative group in any of its draws)
        upd: dict[str, Any] = {"update/skipped": 1}
        if selection is not None and not selection.skipped_update:
            upd = policy_update(
                model,
                run.optimizer,
                run.scheduler,
                selection.samples,
                cfg.algo,
                cfg.optim,
                pad_id=run.pad_id,
                ref_model=run.ref_model,
                max_new_tokens=cfg.rollout.max_new_tokens,
                ctx=ctx,
            )
            upd["update/skipped"] = 0
            run.engine.sync_weights(model)  # no-op for the transformers engine (it samples from `model`)
        # 7. metrics, evaluation, checkpoint; the step's freed memory goes back to the OS
        #    (host RSS per step in the metrics: flat over steps, see release_free_heap)
        release_free_heap()
        row = _step_row(step, metrics, upd, selection, gstats, n_bad, run.scheduler.get_last_lr()[0], t0)
        row.update(
            {
                "rollout/samples": n_generated,
                "budget/samples": run.samples_generated,
                "memory/host_rss_mb": proc_status_bytes("VmRSS") / 2**20,
            }
        )
        if cfg.eval_every > 0 and (step % cfg.eval_every == 0 or last):
            last_eval = run.evaluate(step)
            row["eval/accuracy"] = last_eval.get("eval/accuracy")
        run.logger.log(row)
        if selection is not None:
            run.log_samples(step, exp, selection)
        _report_progress(bar, row, step, cfg.log_every, ctx.is_main)
        if cfg.save_every > 0 and (step % cfg.save_every == 0 or last):
            run.save(step)
        if last:
            last_test = run.evaluate(step, "test")
            break
    if bar is not None:
        bar.close()
    return run.finish(first_eval, last_eval, last_test, steps=reached)


def _begin(run: Run) -> dict[str, Any]:
    """A fresh run logs its data counts and the base policy's dev and test accuracy (step 0)."""
    if run.start_step > 0:
        return {}
    run.logger.log(
        {
            "step": 0,
            "data/train_records": len(run.data.train),
            "data/eval_records": len(run.data.eval),
            "data/test_records": len(run.data.test),
            "data/skipped_at_load": len(run.data.skipped),
        }
    )
    first = run.evaluate(0) if run.cfg.eval_every > 0 else {}
    return {**first, **run.evaluate(0, "test")}


def _experience(run: Run, step: int, rethink, sampling) -> tuple[Experience, list[float], int]:
    """This rank's experience for one step, the rewards of every sample generated (for the
    group statistics) and the number of records skipped. With ``rollout.dynamic_sampling``
    (DAPO's dynamic sampling) more queries are drawn, round after round, until the share
    holds as many groups with a non-zero advantage as one draw has groups, or
    ``rollout.max_sampling_rounds`` draws were made; only those groups are kept. Every rank
    makes the same number of rounds (a round gathers the sharded policy)."""
    cfg, ctx, G = run.cfg, run.ctx, run.cfg.rollout.group_size

    def draw() -> tuple[Experience, int]:
        records, queries, bad = encode_batch(
            run.encoder, run.sampler.next(cfg.rollout.queries_per_step)[ctx.rank :: ctx.world]
        )
        with gathered(run.model, ctx):
            exp = collect(
                run.engine,
                run.processor.tokenizer,
                records,
                queries,
                params=sampling,
                reward_cfg=cfg.reward,
                rethink_cfg=rethink,
                rng=run.rethink_rng,
                step=step,
            )
        _set_advantages(exp.samples, cfg)
        return exp, len(bad)

    exp, n_bad = draw()
    generated = [s.reward for s in exp.samples]
    if not cfg.rollout.dynamic_sampling:
        return exp, generated, n_bad
    target = len(exp.samples) // G
    rounds = [exp]
    kept, kept_records = _keep_informative(exp, G)
    while len(rounds) < cfg.rollout.max_sampling_rounds and ctx.sum_float(max(target - len(kept) // G, 0)) > 0:
        more, more_bad = draw()
        rounds.append(more)
        n_bad += more_bad
        generated += [s.reward for s in more.samples]
        more_kept, more_records = _keep_informative(more, G, first_group=len(kept_records))
        kept, kept_records = kept + more_kept, kept_records + more_records
    kept, kept_records = kept[: target * G], kept_records[:target]
    metrics = merge_metrics([e.metrics for e in rounds], [len(e.samples) for e in rounds])
    for key in {k for e in rounds for k in e.metrics if k.startswith("time/") or k in ("rollout/tokens",)}:
        metrics[key] = sum(e.metrics.get(key) or 0 for e in rounds)  # rounds run one after another
    metrics.update(
        {
            "dynamic/rounds": len(rounds),
            "dynamic/generated_groups": len(generated) // G,
            "dynamic/kept_groups": len(kept) // G,
        }
    )
    return Experience(kept, kept_records, metrics), generated, n_bad


def _keep_informative(exp: Experience, group_size: int, first_group: int = 0) -> tuple[list[Sample], list]:
    """The informative groups of one draw and their records, the groups renumbered from
    ``first_group`` (so that ``sample.group`` indexes the joined records)."""
    kept = informative_groups(exp.samples, group_size)
    records = []
    for g in range(0, len(kept), group_size):
        records.append(exp.records[kept[g].group])
        for s in kept[g : g + group_size]:
            s.group = first_group + g // group_size
    return kept, records


def informative_groups(samples: list[Sample], group_size: int) -> list[Sample]:
    """The samples of the groups (consecutive ``group_size`` samples) with a non-zero advantage."""
    return [
        s
        for g in range(0, len(samples), group_size)
        if any(x.advantage != 0 for x in samples[g : g + group_size])
        for s in samples[g : g + group_size]
    ]


def _set_advantages(samples: list[Sample], cfg) -> None:
    rewards = torch.tensor([s.reward for s in samples], dtype=torch.float64)
    adv = group_advantages(rewards, cfg.rollout.group_size, cfg.algo.advantage_scale, cfg.algo.advantage_eps)
    for s, a in zip(samples, adv.tolist()):
        s.advantage = a


def _step_row(
    step: int,
    metrics: dict[str, Any],
    upd: dict[str, Any],
    selection: Selection | None,
    gstats: dict[str, float],
    n_bad: int,
    lr: float,
    t0: float,
) -> dict[str, Any]:
    """One ``metrics.jsonl`` line: collection, update, SSR and group statistics (no SSR
    statistics when the step had nothing to select from, no group statistics when it
    generated nothing)."""
    row: dict[str, Any] = {"step": step, **metrics, **upd}
    if selection is not None:
        sel = selection.stats
        # after_ssr is 1.0 by construction in every mode but off: the trained batch is
        # described by its mean |A| and share of positive advantages
        row.update({k: v for k, v in sel.items() if k.startswith("effective_ratio")})
        trained = [float(s.advantage) for s in selection.samples]
        if trained:
            row["ssr/mean_abs_advantage"] = sum(abs(a) for a in trained) / len(trained)
            row["ssr/positive_share"] = sum(a > 0 for a in trained) / len(trained)
        row.update(
            {
                "ssr/n_selected": sel["n_selected"],
                "ssr/n_unique": sel["n_unique"],
                "ssr/n_replayed": sel["n_replayed_from_buffer"],
                "ssr/replay_age_max": sel["replay_age_max"],
            }
        )
    if gstats:
        row.update(
            {
                "groups/all_correct": gstats["all_correct_share"],
                "groups/all_wrong": gstats["all_wrong_share"],
                "groups/zero_advantage": gstats["zero_adv_share"],
            }
        )
    row.update({"data/skipped_bad": n_bad, "lr": lr, "time/step_s": time.perf_counter() - t0})
    return row


def _report_progress(bar, row: dict[str, Any], step: int, log_every: int, is_main: bool) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str(console_line(row), refresh=False)
    elif is_main and step % log_every == 0:
        print(f"step {step}: {console_line(row)}", file=sys.stderr)
