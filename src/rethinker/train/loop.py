"""The RL loop, top to bottom: GRPO + Selective Sample Replay + Forced Rethinking.

    for step in 1..max_steps:
        queries  <- the next queries_per_step records
        samples  <- G rollouts per query, judged (rule-based reward)
        samples  <- Forced Rethinking: continue some after a trigger; kept ones replace
        A        <- group advantages (r - mean) / (std + eps)
        batch    <- SSR: re-draw the non-zero-advantage samples, p ~ |A|^alpha
        update   <- clipped policy gradient over micro-batches (+ optional KL/entropy/SFT)
        log, evaluate (greedy, held-out), checkpoint
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..algo.advantages import group_advantages, group_stats
from ..algo.rethink import RethinkConfig
from ..algo.ssr import SampleSelector
from ..eval.runner import evaluate
from ..judge import RewardConfig
from ..rollout.base import SamplingParams
from ..rollout.hf import TransformersEngine
from ..rollout.inputs import PromptEncoder
from . import checkpoint as ckpt
from .config import TrainConfig, save as save_config
from .data import QuerySampler, load_datasets
from .distributed import (full_model_state, full_optimizer_state, gathered, init_distributed, load_optimizer_state,
                          merge_metrics, shard_model)
from .experience import collect, encode_batch
from .metrics import MetricsLogger, console_line
from .model import load_policy, pick_device, pick_dtype, resolve_model_path
from .update import behaviour_logprobs, policy_update


def _rethink_config(cfg: TrainConfig) -> RethinkConfig | None:
    r = cfg.rethink
    if not r.enabled:
        return None
    base = RethinkConfig(skip_prob=r.skip_prob, high_acc_threshold=r.high_acc_threshold, cut_prob=r.cut_prob,
                         headroom_tokens=r.headroom_tokens, min_cont=r.min_continuation,
                         max_cont=r.max_continuation, max_self_checks=r.max_self_checks,
                         max_per_query=r.max_per_query, train_on_trigger=r.train_on_trigger,
                         temperature=r.temperature, max_response_tokens=cfg.rollout.max_new_tokens)
    return base.scaled(cfg.rollout.max_new_tokens) if r.scale_to_response_limit else base


def _scheduler(optimizer, cfg: TrainConfig, total_updates: int):
    warm, kind = cfg.optim.warmup_steps, cfg.optim.scheduler

    def factor(i: int) -> float:
        if warm and i < warm:
            return (i + 1) / warm
        if kind == "cosine":
            t = (i - warm) / max(total_updates - warm, 1)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    ctx = init_distributed()
    run_dir = Path(cfg.output_dir)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed + ctx.rank)  # ranks sample differently; data order is shared
    np.random.seed(cfg.seed + ctx.rank)
    torch.manual_seed(cfg.seed + ctx.rank)
    device = pick_device(cfg.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    dtype = pick_dtype(cfg.model.dtype, device)
    progress = progress and ctx.is_main

    last = ckpt.latest_checkpoint(run_dir) if resume else None
    model_path = str(last) if last else resolve_model_path(cfg.model.path)
    lora = None
    if cfg.model.lora_rank > 0:
        lora = {"rank": cfg.model.lora_rank, "alpha": cfg.model.lora_alpha, "dropout": cfg.model.lora_dropout,
                "targets": cfg.model.lora_targets, "base": resolve_model_path(cfg.model.path)}
    model, processor = load_policy(model_path, device=device, dtype=dtype,
                                   attn_implementation=cfg.model.attn_implementation,
                                   gradient_checkpointing=cfg.model.gradient_checkpointing,
                                   freeze_vision=cfg.model.freeze_vision, lora=lora)
    if ctx.enabled:
        if lora:
            raise ValueError("LoRA with several processes is not supported yet: run LoRA in one process")
        shard_model(model, ctx, device)
    ref_model = None
    if cfg.algo.kl_coef > 0:
        ref_model, _ = load_policy(resolve_model_path(cfg.model.path), device=device, dtype=dtype,
                                   attn_implementation=cfg.model.attn_implementation, trainable=False)
    data = load_datasets(cfg.data, cfg.seed)
    use_vllm = cfg.rollout.engine == "vllm"
    encoder = PromptEncoder(processor, suffix=cfg.data.prompt_suffix, base_dir=data.base_dir,
                            min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels, keep_images=use_vllm)
    eval_encoder = PromptEncoder(processor, suffix=cfg.data.prompt_suffix, base_dir=data.eval_base_dir,
                                 min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels,
                                 keep_images=use_vllm)
    if use_vllm:  # colocated; the policy's weights are pushed into it after every update
        from ..rollout.vllm import VLLMEngine

        engine = VLLMEngine(resolve_model_path(cfg.model.path), processor, policy=model,
                            gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
                            sleep_level=cfg.rollout.vllm_sleep_level, dtype=str(dtype).removeprefix("torch."),
                            min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels, seed=cfg.seed)
    else:
        engine = TransformersEngine(model, processor, max_batch_queries=cfg.rollout.max_batch_queries)
    sampler = QuerySampler(data.train, cfg.seed, cfg.data.shuffle)
    selector = SampleSelector(cfg.ssr.mode, cfg.ssr.alpha, cfg.ssr.batch_size, seed=cfg.seed,
                              refill_factor=int(cfg.ssr.refill_factor), positive_share=cfg.ssr.positive_share)
    rethink_cfg = _rethink_config(cfg)
    rethink_rng = np.random.Generator(np.random.PCG64([cfg.seed, 1]))
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
                            top_p=cfg.rollout.top_p, top_k=cfg.rollout.top_k, n=cfg.rollout.group_size)
    reward_cfg = RewardConfig(correct=cfg.reward.correct, wrong=cfg.reward.wrong, invalid=cfg.reward.invalid,
                              max_waits=cfg.reward.max_waits, require_box=cfg.reward.require_box,
                              reflection_shaping=cfg.reward.reflection_shaping)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # fused AdamW: one kernel for all parameters (3x faster than the default on the toy CPU run);
    # FSDP2's DTensor parameters take the default implementation
    fused = not ctx.enabled and all(p.device.type in ("cpu", "cuda") for p in trainable)
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                  weight_decay=cfg.optim.weight_decay, fused=fused or None)
    n_samples = cfg.rollout.queries_per_step * cfg.rollout.group_size
    per_step = math.ceil((cfg.ssr.batch_size or n_samples) / (cfg.optim.mini_batch_size or n_samples))
    scheduler = _scheduler(optimizer, cfg, cfg.max_steps * max(per_step, 1))
    pad_id = engine.pad_id
    eval_tokens = cfg.rollout.eval_max_new_tokens or cfg.rollout.max_new_tokens

    start = 0
    if last is not None:
        state = ckpt.load_state(last)
        load_optimizer_state(model, optimizer, state["optimizer"], ctx)
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        selector.load_state_dict(state["selector"])
        rethink_rng.bit_generator.state = state["rethink_rng"]
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if len(rngs) == ctx.world:
            ckpt.set_rng_state(rngs[ctx.rank])
        else:  # another world size: exact continuation is impossible, reseed per rank
            print(f"warning: checkpoint from {len(rngs)} process(es), running {ctx.world}: sampling reseeded",
                  file=sys.stderr)
            torch.manual_seed(cfg.seed + ctx.rank + 7919 * int(state["step"]))
        start = int(state["step"])
        print(f"resumed from {last} at step {start}", file=sys.stderr)
    if ctx.is_main:
        save_config(cfg, run_dir / "config.yaml")
        logger = MetricsLogger(run_dir, cfg.report_to, resume_step=start if last else None)
    else:
        logger = _NullLogger()
    sample_log = None
    if ctx.is_main and cfg.log_samples > 0:
        from ..report.samples import SampleLog

        sample_log = SampleLog(run_dir, cfg.log_samples, resume_step=start if last else None,
                               base_dir=data.base_dir, sinks=getattr(logger, "sinks", ()))

    def run_eval(step: int) -> dict[str, Any]:
        if not data.eval:
            return {}
        t = time.perf_counter()
        with gathered(model, ctx):
            res = evaluate(engine, eval_encoder, data.eval[ctx.rank::ctx.world], max_new_tokens=eval_tokens,
                           batch_queries=cfg.rollout.max_batch_queries)
        res = _merge_eval(ctx.gather_objects(res))
        lo, hi = res.confidence_interval()
        row = {"step": step, "eval/accuracy": res.accuracy, "eval/ci_low": lo, "eval/ci_high": hi,
               "eval/n": res.n_items, "eval/skipped": len(res.skipped), "time/eval_s": time.perf_counter() - t}
        row.update({f"eval/accuracy/{k}": v for k, v in res.by_category.items()})
        logger.log(row)
        if ctx.is_main:
            print(f"step {step}: eval accuracy {res.accuracy:.3f} [{lo:.3f}, {hi:.3f}] on {res.n_items}", file=sys.stderr)
        return row

    def save(step: int) -> None:
        model_state = full_model_state(model, ctx)  # collectives: every rank takes part
        optim_state = full_optimizer_state(model, optimizer, ctx)
        rngs = ctx.gather_objects(ckpt.rng_state())
        if ctx.is_main:
            state = {"optimizer": optim_state, "scheduler": scheduler.state_dict(),
                     "sampler": sampler.state_dict(), "selector": selector.state_dict(),
                     "rethink_rng": rethink_rng.bit_generator.state, "rng": rngs, "world_size": ctx.world}
            ckpt.save_checkpoint(run_dir, step, model, processor, state, keep=cfg.keep_checkpoints,
                                 model_state=model_state)
        ctx.barrier()

    if start == 0:
        logger.log({"step": 0, "data/train_records": len(data.train), "data/eval_records": len(data.eval),
                    "data/skipped_at_load": len(data.skipped)})
    first_eval = run_eval(0) if start == 0 and cfg.eval_every > 0 else {}
    last_eval: dict[str, Any] = first_eval
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start, desc="rl", file=sys.stderr, dynamic_ncols=True)
    for step in range(start + 1, cfg.max_steps + 1):
        t0 = time.perf_counter()
        # 1. queries (bad records are skipped, named and counted)
        # (with several processes each rank takes its share; groups stay whole on one rank)
        global_batch = sampler.next(cfg.rollout.queries_per_step)
        records, queries, bad = encode_batch(encoder, global_batch[ctx.rank::ctx.world])
        # 2-3. rollouts, rewards, Forced Rethinking
        with gathered(model, ctx):
            exp = collect(engine, processor.tokenizer, records, queries, params=params, reward_cfg=reward_cfg,
                          rethink_cfg=rethink_cfg, rng=rethink_rng, step=step)
        # 4. group advantages
        rewards = torch.tensor([s.reward for s in exp.samples], dtype=torch.float64)
        adv = group_advantages(rewards, cfg.rollout.group_size, cfg.algo.advantage_scale, cfg.algo.advantage_eps)
        for s, a in zip(exp.samples, adv.tolist()):
            s.advantage = a
        # 5. Selective Sample Replay over the global pool (released mode replays across
        #    steps, so it stores each sample's behaviour log-probs now)
        if cfg.ssr.mode == "released":
            with gathered(model, ctx):
                behaviour_logprobs(model, [s for s in exp.samples if s.advantage != 0], pad_id,
                                   cfg.optim.micro_batch_size, device, dtype)
        parts = ctx.gather_objects((exp.samples, exp.metrics, len(bad)))
        samples = [s for p in parts for s in p[0]]
        metrics = merge_metrics([p[1] for p in parts], [len(p[0]) for p in parts])
        n_bad = sum(p[2] for p in parts)
        if not samples:
            logger.log({"step": step, "data/skipped_bad": n_bad, "update/skipped": 1})
            continue
        all_rewards = torch.tensor([s.reward for s in samples], dtype=torch.float64)
        gstats = group_stats(all_rewards, cfg.rollout.group_size, correct_threshold=cfg.reward.correct)
        selection = selector.select(samples)
        # 6. policy update
        upd: dict[str, Any] = {"update/skipped": 1}
        if not selection.skipped_update:
            upd = policy_update(model, optimizer, scheduler, selection.samples, cfg.algo, cfg.optim, pad_id=pad_id,
                                ref_model=ref_model, max_new_tokens=cfg.rollout.max_new_tokens, ctx=ctx)
            upd["update/skipped"] = 0
            engine.sync_weights(model)  # no-op for the transformers engine (it samples from `model`)
        # 7. metrics, evaluation, checkpoint
        row: dict[str, Any] = {"step": step, **metrics, **upd}
        row.update({k: v for k, v in selection.stats.items() if k.startswith("effective_ratio")})
        row.update({"ssr/n_selected": selection.stats["n_selected"], "ssr/n_unique": selection.stats["n_unique"],
                    "ssr/n_replayed": selection.stats["n_replayed_from_buffer"],
                    "groups/all_correct": gstats["all_correct_share"], "groups/all_wrong": gstats["all_wrong_share"],
                    "groups/zero_advantage": gstats["zero_adv_share"], "data/skipped_bad": n_bad,
                    "lr": scheduler.get_last_lr()[0], "time/step_s": time.perf_counter() - t0})
        if cfg.eval_every > 0 and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            last_eval = run_eval(step)
            row["eval/accuracy"] = last_eval.get("eval/accuracy")
        logger.log(row)
        if sample_log is not None:  # this rank's groups come first in `samples` and in the selection's indices
            sample_log.log_step(step, exp.records, exp.samples, selection.indices)
        for s in samples:  # logged: the samples SSR keeps for replay (and checkpoints) need not carry it
            s.meta.pop("rethink_attempt", None)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(console_line(row), refresh=False)
        elif ctx.is_main and step % cfg.log_every == 0:
            print(f"step {step}: {console_line(row)}", file=sys.stderr)
        if cfg.save_every > 0 and (step % cfg.save_every == 0 or step == cfg.max_steps):
            save(step)
    if bar is not None:
        bar.close()
    logger.close()
    if sample_log is not None:
        sample_log.close()
    if lora and ctx.is_main:  # adapters merged into full weights: loadable without PEFT
        merged = model.merge_and_unload()
        merged.save_pretrained(run_dir / "merged")
        processor.save_pretrained(run_dir / "merged")
    if ctx.is_main:
        try:  # curves.png and report.html (rethinker report RUN_DIR rebuilds it, during a run too)
            from ..report.run_report import build_run_report

            print(f"report: {build_run_report(run_dir, curves_png=run_dir / 'curves.png')}", file=sys.stderr)
        except Exception as exc:  # a plot must never fail a finished run
            print(f"warning: could not plot curves or write report.html: {exc}", file=sys.stderr)
    ctx.barrier()
    return {"base_eval": first_eval.get("eval/accuracy"), "final_eval": last_eval.get("eval/accuracy"),
            "steps": cfg.max_steps, "run_dir": str(run_dir)}


class _NullLogger:
    """Ranks other than the main one log nothing."""

    def log(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def _merge_eval(parts: list):
    """One EvalResult from the ranks' shares."""
    from collections import defaultdict

    from ..eval.runner import EvalResult

    if len(parts) == 1:
        return parts[0]
    out = EvalResult(sum(p.n_items for p in parts), sum(p.n_correct for p in parts))
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


def resumed_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config saved in a run directory, with overrides (e.g. a larger max_steps)."""
    import yaml

    from .config import from_dict, set_value

    cfg = from_dict(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()))
    cfg = replace(cfg, output_dir=str(run_dir))
    for k, v in (overrides or {}).items():
        set_value(cfg, k, v)
    return cfg
