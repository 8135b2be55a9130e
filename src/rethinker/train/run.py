"""One training run's state, and the steps around the RL loop (``loop.py``): set up or
restore from a checkpoint, evaluate on the held-out split, save, finish."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import metric_names as M
from ..algo.rethink import TEST_TRIGGER, reflection_rate
from ..algo.ssr import SampleSelector
from ..files import write_atomic
from ..model.load import pick_device, pick_dtype
from ..report.run_report import REPORT_FILE, build_run_report
from ..report.samples import SAMPLES_FILE, SampleLog
from ..rollout.base import RolloutEngine
from ..rollout.evaluate import EvalResult, evaluate
from ..rollout.hf import TransformersEngine
from ..rollout.inputs import PromptEncoder
from ..rollout.tp import group_engine
from ..toyworld.model import resolve_model_path
from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig, check_parallel
from .config import save as save_config
from .config import to_dict as config_dict
from .data import Datasets, QuerySampler, load_datasets
from .distributed import (
    DistContext,
    init_distributed,
    load_optimizer_state,
    load_sharded_policy,
    rollout_weights,
)
from .metrics import MetricsLogger
from .optim import make_optimizer, make_scheduler
from .shards import load_model_shards, load_optimizer_shards, save_model_shards, save_shards


def _attempt(write) -> str | None:
    """Run ``write()``; the message of the ``CheckpointWriteError`` it raised, if any."""
    try:
        write()
    except ckpt.CheckpointWriteError as exc:
        return str(exc)
    return None


def _verdicts(p) -> dict[str, Any]:
    """One line of ``test-predictions-STEP.jsonl`` (with the verdict after a forced
    trigger when test-time rethinking ran)."""
    out = {"id": p.id, "category": p.category, "correct": bool(p.correct)}
    if p.rethought is not None:
        out["correct_after_rethink"] = bool(p.rethought.correct)
    return out


class NullLogger:
    """Ranks other than the main one log nothing."""

    def log(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Run:
    cfg: TrainConfig
    ctx: DistContext
    run_dir: Path
    device: torch.device
    dtype: torch.dtype
    model: Any
    processor: Any
    ref_model: Any
    data: Datasets
    encoder: PromptEncoder
    eval_encoder: PromptEncoder
    test_encoder: PromptEncoder
    engine: RolloutEngine
    sampler: QuerySampler
    selector: SampleSelector
    rethink_rng: np.random.Generator
    optimizer: torch.optim.Optimizer
    scheduler: Any
    logger: MetricsLogger | NullLogger
    sample_log: SampleLog | None = None
    start_step: int = 0
    samples_generated: int = 0  # responses generated so far (first passes; the max_samples budget)
    saved_step: int = 0  # the newest checkpoint's step (0: none)
    nonfinite_streak: int = 0  # consecutive optimizer steps skipped as non-finite

    @property
    def pad_id(self) -> int:
        return self.engine.pad_id

    def evaluate(self, step: int, split: str = "eval") -> dict[str, Any]:
        """Greedy accuracy on the held-out dev set (``split="eval"``, every ``eval_every``
        steps) or on the test set (``split="test"``, first and last step; its per-item
        verdicts go to ``test-predictions-STEP.jsonl`` for paired comparisons of runs).
        Each rank scores its share; logged under ``eval/`` or ``test/``."""
        records = self.data.eval if split == "eval" else self.data.test
        if not records:
            return {}
        cfg, ctx = self.cfg, self.ctx
        t = time.perf_counter()
        encoder = self.eval_encoder if split == "eval" else self.test_encoder
        with rollout_weights(self.engine, self.model, ctx):
            res = evaluate(
                self.engine,
                encoder,
                records[ctx.rank :: ctx.world],
                max_new_tokens=cfg.rollout.eval_max_new_tokens or cfg.rollout.max_new_tokens,
                batch_queries=cfg.rollout.max_batch_queries,
                rethink_trigger=TEST_TRIGGER if cfg.rethink_at_test and split == "test" else None,
            )
            self.engine.drain()  # a shared engine serves its group until every member is done
        res = EvalResult.merged(ctx.gather_objects(res))
        lo, hi = res.confidence_interval()
        row = {
            M.STEP: step,
            M.key(M.SPLIT_ACCURACY, split=split): res.accuracy,
            M.key(M.SPLIT_CI_LOW, split=split): lo,
            M.key(M.SPLIT_CI_HIGH, split=split): hi,
            M.key(M.SPLIT_N, split=split): res.n_items,
            M.key(M.SPLIT_SKIPPED, split=split): len(res.skipped),
            M.key(M.TIME_SPLIT, split=split): time.perf_counter() - t,
            M.key(M.SPLIT_REFLECTION, split=split): reflection_rate([p.response for p in res.predictions]),
        }
        if (rt := res.rethinking()) is not None:
            row[M.key(M.SPLIT_AFTER_RETHINK, split=split)] = rt["accuracy_after"]
            row[M.key(M.SPLIT_WRONG_TO_RIGHT, split=split)] = rt["wrong_to_right"]
            row[M.key(M.SPLIT_RIGHT_TO_WRONG, split=split)] = rt["right_to_wrong"]
        row.update({M.key(M.SPLIT_CATEGORY_ACCURACY, split=split, category=k): v for k, v in res.by_category.items()})
        self.logger.log(row)
        if ctx.is_main:
            print(
                f"step {step}: {split} accuracy {res.accuracy:.3f} [{lo:.3f}, {hi:.3f}] on {res.n_items}",
                file=sys.stderr,
            )
            if split == "test":
                write_atomic(
                    self.run_dir / f"test-predictions-{step}.jsonl",
                    "".join(json.dumps(_verdicts(p)) + "\n" for p in res.predictions),
                )
        return row

    def save(self, step: int) -> None:
        """An atomic checkpoint: full weights, optimizer, scheduler, RNGs, data position, SSR
        state. When it cannot be written (a full disk) every rank raises the main rank's
        ``CheckpointWriteError``, the logs closed."""
        failed = self.ctx.gather_objects(self._write_checkpoint(step))[0]
        if failed is not None:
            self.close_logs()
            raise ckpt.CheckpointWriteError(failed)
        self.saved_step = step

    def _write_checkpoint(self, step: int) -> str | None:
        """Every rank writes its shards of the policy and the optimizer state into the
        temporary folder (DCP, in parallel); then the main rank writes the trainer state,
        the config and processor files and the manifest, and renames the folder into place.
        The error's message, if any (the same on every rank)."""
        ctx = self.ctx
        started = _attempt(lambda: ckpt.start_checkpoint(self.run_dir, step)) if ctx.is_main else None
        if failed := ctx.gather_objects(started)[0]:  # every rank waits for the empty folder
            return failed
        tmp = ckpt.temp_folder(self.run_dir, step)
        try:
            groups = save_shards(tmp, self.model, self.optimizer, adapters_only=self.cfg.model.lora_rank > 0)
        except ckpt.write_failures() as exc:  # DCP raises a rank's failure on every rank
            return str(ckpt.abandon_checkpoint(self.run_dir, step, exc)) if ctx.is_main else "failed"
        rngs = ctx.gather_objects(ckpt.rng_state())
        if not ctx.is_main:
            return None
        state = {
            "layout": "dcp",
            "optimizer_groups": groups,
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "selector": self.selector.state_dict(),
            "rethink_rng": self.rethink_rng.bit_generator.state,
            "rng": rngs,
            "world_size": ctx.world,
            "samples_generated": self.samples_generated,
            "lora": self._lora(),
        }
        return _attempt(
            lambda: ckpt.finish_checkpoint(
                self.run_dir, step, lambda tmp: self._main_files(tmp, state, step), keep=self.cfg.keep_checkpoints
            )
        )

    def _lora(self) -> dict[str, Any] | None:
        """What a LoRA checkpoint (adapters only) needs to be rebuilt: the adapters' settings and the base."""
        m = self.cfg.model
        if m.lora_rank <= 0:
            return None
        return {"rank": m.lora_rank, "alpha": m.lora_alpha, "dropout": m.lora_dropout, "targets": m.lora_targets,
                "base": str(Path(resolve_model_path(m.path)).resolve())}  # fmt: skip

    def _main_files(self, folder: Path, state: dict[str, Any], step: int) -> None:
        """The main rank's part of a checkpoint: trainer state, model config, processor."""
        ckpt.write_state(folder, state, step)
        self.processor.save_pretrained(folder)
        self.model.config.save_pretrained(folder)
        if (gen := getattr(self.model, "generation_config", None)) is not None:
            gen.save_pretrained(folder)

    def snapshot(self) -> dict[str, Any]:
        """This rank's state that a step consumes before its update (data position and
        every RNG): ``restore`` it to abandon the step as if it had not begun."""
        return {"sampler": self.sampler.state_dict(), "rethink_rng": self.rethink_rng.bit_generator.state,
                "rng": ckpt.rng_state()}  # fmt: skip

    def restore(self, snap: dict[str, Any]) -> None:
        self.sampler.load_state_dict(snap["sampler"])
        self.rethink_rng.bit_generator.state = snap["rethink_rng"]
        ckpt.set_rng_state(snap["rng"])

    @property
    def budget_spent(self) -> bool:
        """The ``max_samples`` budget of generated responses is used up."""
        return 0 < self.cfg.max_samples <= self.samples_generated

    def log_samples(self, step: int, exp, selection) -> None:
        """The first ``log_samples`` groups of the step's experience to ``samples.jsonl``
        (the main rank's groups come first)."""
        if self.sample_log is not None:
            self.sample_log.log_step(step, exp.records, exp.samples, selection.indices)

    def close_logs(self) -> None:
        self.logger.close()
        if self.sample_log is not None:
            self.sample_log.close()

    def finish(
        self, first_eval: dict[str, Any], last_eval: dict[str, Any], last_test: dict[str, Any] | None, *, steps: int
    ) -> dict[str, Any]:
        """Close the logs; export the final policy (``final/``, ``export_final``); write
        ``curves.png`` and ``report.html``. ``steps``: the last step the run reached (a
        sample budget can end it before ``max_steps``)."""
        self.close_logs()
        final = self.export_final(steps)
        if self.ctx.is_main:
            try:  # curves.png and report.html (`rethinker report RUN_DIR` rebuilds it, during a run too)
                page = build_run_report(self.run_dir, curves_png=self.run_dir / "curves.png")
                print(f"report: {page}", file=sys.stderr)
            except Exception as exc:  # a plot must never fail a finished run
                print(f"warning: could not plot curves or write report.html: {exc}", file=sys.stderr)
        self.ctx.barrier()
        return {
            "base_eval": first_eval.get(M.EVAL_ACCURACY),
            "final_eval": last_eval.get(M.EVAL_ACCURACY),
            "base_test": first_eval.get(M.TEST_ACCURACY),
            "final_test": (last_test or {}).get(M.TEST_ACCURACY),
            "steps": steps,
            "samples": self.samples_generated,
            "run_dir": str(self.run_dir),
            "final": str(final),
        }

    def export_final(self, steps: int) -> Path:
        """The policy at the run's end in ``save_pretrained`` format, ``DIR/final``
        (``rethinker export`` of the last checkpoint, streamed by the main rank; a run that
        saved none at its end first writes the policy's shards for it). LoRA runs: the
        merged weights, the adapters in ``final/adapter``, and ``DIR/merged`` naming ``final``."""
        ctx, final = self.ctx, self.run_dir / "final"
        src = self.run_dir / f"checkpoint-{steps}"
        if self.saved_step != steps or not src.is_dir():
            src = self.run_dir / ".tmp-final"
            if ctx.is_main:
                shutil.rmtree(src, ignore_errors=True)
                src.mkdir()
            ctx.barrier()
            save_model_shards(src, self.model, adapters_only=self.cfg.model.lora_rank > 0)
            if ctx.is_main:
                self._main_files(src, {"layout": "dcp", "lora": self._lora()}, steps)
        ctx.barrier()
        if ctx.is_main:
            from .export import export_checkpoint

            export_checkpoint(src, final)
            shutil.rmtree(self.run_dir / ".tmp-final", ignore_errors=True)
            if self.cfg.model.lora_rank > 0:  # where LoRA runs wrote their merged weights before
                merged = self.run_dir / "merged"
                if merged.is_symlink() or merged.is_file():
                    merged.unlink()
                elif merged.is_dir():
                    shutil.rmtree(merged)
                merged.symlink_to("final")
            print(f"final policy: {final}", file=sys.stderr)
        ctx.barrier()
        return final


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _is_dcp(state: dict[str, Any] | None) -> bool:
    """A distributed checkpoint's trainer state (the layout before it held full weights)."""
    return state is not None and state.get("layout") == "dcp"


def _load_models(
    cfg: TrainConfig, ctx: DistContext, device: torch.device, dtype: torch.dtype, last: Path | None, state=None
) -> tuple[Any, Any, Any]:
    """The policy (sharded with several processes; when resuming, its weights from the
    checkpoint: each rank reads its shards, or, from an old-layout checkpoint, its
    ``save_pretrained`` copy), its processor, and the frozen reference when a KL term needs one.

    With several processes no rank but rank 0 holds the whole policy: the others build it
    on the ``meta`` device, every rank shards it, and rank 0's weights are broadcast into
    the shards (``broadcast_weights``). Resuming from a DCP checkpoint of full weights, no
    rank reads the base model: all build on ``meta`` and DCP reads the shards (LoRA: rank 0
    reads the frozen base, which the checkpoint leaves out, and DCP the adapters)."""
    base = resolve_model_path(cfg.model.path)
    lora = None
    if cfg.model.lora_rank > 0:  # with several processes FSDP2 shards the frozen base and the adapters alike
        lora = {
            "rank": cfg.model.lora_rank,
            "alpha": cfg.model.lora_alpha,
            "dropout": cfg.model.lora_dropout,
            "targets": cfg.model.lora_targets,
            "base": base,
        }
    dcp = last is not None and _is_dcp(state)
    model, processor = load_sharded_policy(
        str(last) if last and not dcp else base,
        ctx,
        device,
        from_files=not (dcp and lora is None),  # a DCP checkpoint of full weights needs no base
        dtype=dtype,
        attn_implementation=cfg.model.attn_implementation,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        freeze_vision=cfg.model.freeze_vision,
        lora=lora,
    )
    if dcp:
        load_model_shards(last, model, adapters_only=lora is not None)
    ref_model = None
    if cfg.algo.kl_coef > 0 and lora is not None:
        ref_model = model  # the base it started from: the policy with its adapters off (no second copy)
    elif cfg.algo.kl_coef > 0:  # a frozen copy of the starting weights, sharded like the policy
        ref_model, _ = load_sharded_policy(
            base, ctx, device, dtype=dtype, attn_implementation=cfg.model.attn_implementation, trainable=False
        )
    return model, processor, ref_model


def _engine(cfg: TrainConfig, model, processor, dtype: torch.dtype) -> RolloutEngine:
    if cfg.rollout.engine == "vllm":  # colocated; the policy's weights are pushed into it after every update
        from ..rollout.vllm import VLLMEngine  # optional extra

        tp = cfg.rollout.vllm_tensor_parallel_size  # T > 1: T consecutive ranks share one engine
        engine = VLLMEngine(
            resolve_model_path(cfg.model.path),
            processor,
            policy=model,
            gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
            sleep_level=cfg.rollout.vllm_sleep_level,
            dtype=str(dtype).removeprefix("torch."),
            min_pixels=cfg.model.min_pixels,
            max_pixels=cfg.model.max_pixels,
            seed=cfg.seed,
            enforce_eager=cfg.rollout.vllm_enforce_eager,
            kv_cache_gb=cfg.rollout.vllm_kv_cache_gb,
            tensor_parallel_size=tp,
        )
        return group_engine(engine, tp)
    return TransformersEngine(model, processor, max_batch_queries=cfg.rollout.max_batch_queries)


def setup(cfg: TrainConfig, resume: bool = False, checkpoint: str | Path | None = None) -> Run:
    """Everything a run needs, fresh or restored from its newest whole checkpoint (or
    ``checkpoint``, named explicitly). The config is written first, so that a run killed
    at any moment can be resumed with its folder."""
    ctx = init_distributed()
    local_world = os.environ.get("LOCAL_WORLD_SIZE")
    check_parallel(cfg, ctx.world, int(local_world) if local_world else None)  # before any weight loads
    run_dir = Path(cfg.output_dir)
    if not resume:
        _claim_output_dir(run_dir, cfg.overwrite_output_dir, ctx)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed(cfg.seed + ctx.rank)  # ranks sample differently; data order is shared
    device = pick_device(cfg.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    dtype = pick_dtype(cfg.model.dtype, device)
    if cfg.deterministic if cfg.deterministic is not None else device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    last, state = _resume_point(run_dir, ctx, checkpoint) if resume else (None, None)
    model, processor, ref_model = _load_models(cfg, ctx, device, dtype, last, state)
    data = load_datasets(cfg.data, cfg.seed)
    encoder, eval_encoder, test_encoder = _encoders(cfg, processor, data)
    optimizer = make_optimizer(model, cfg, sharded=ctx.enabled)
    run = Run(
        cfg=cfg,
        ctx=ctx,
        run_dir=run_dir,
        device=device,
        dtype=dtype,
        model=model,
        processor=processor,
        ref_model=ref_model,
        data=data,
        encoder=encoder,
        eval_encoder=eval_encoder,
        test_encoder=test_encoder,
        engine=_engine(cfg, model, processor, dtype),
        sampler=QuerySampler(data.train, cfg.seed, cfg.data.shuffle),
        selector=SampleSelector.from_config(cfg.ssr, seed=cfg.seed),
        rethink_rng=np.random.Generator(np.random.PCG64([cfg.seed, 1])),
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, cfg),
        logger=NullLogger(),
    )
    if last is not None:
        _restore(run, last, state)
    if ctx.is_main:
        _open_logs(run, resume_step=run.start_step if last else (-1 if resume else None))
    return run


def _encoders(cfg: TrainConfig, processor, data: Datasets) -> list[PromptEncoder]:
    """The train, dev and test prompt encoders. A training query comes back only an epoch
    later, and the test set is encoded twice a run: their encoders cache nothing; the dev
    set is encoded again at every evaluation: its encoder caches."""
    return [
        PromptEncoder(
            processor,
            suffix=cfg.data.prompt_suffix,
            base_dir=base,
            min_pixels=cfg.model.min_pixels,
            max_pixels=cfg.model.max_pixels,
            keep_images=cfg.rollout.engine == "vllm",  # vLLM runs its own processor on the decoded images
            max_prompt_tokens=cfg.data.max_prompt_tokens,
            **extra,
        )
        for base, extra in (
            (data.base_dir, {"cache_bytes": 0}),
            (data.eval_base_dir, {}),
            (data.test_base_dir, {"cache_bytes": 0}),
        )
    ]


def _open_logs(run: Run, resume_step: int | None) -> None:
    """``metrics.jsonl`` and ``samples.jsonl``, cut back to ``resume_step`` (-1: a restart
    from step 0 drops everything an earlier attempt logged)."""
    cfg = run.cfg
    run.logger = MetricsLogger(run.run_dir, cfg.report_to, config=config_dict(cfg), resume_step=resume_step)
    if cfg.log_samples > 0:
        run.sample_log = SampleLog(
            run.run_dir,
            cfg.log_samples,
            resume_step=resume_step,
            base_dir=run.data.base_dir,
            sinks=run.logger.sinks,
        )


#: what a training run writes into its folder (``--overwrite-output-dir`` deletes these and nothing else)
RUN_OUTPUTS = (
    "config.yaml",
    "metrics.jsonl",
    SAMPLES_FILE,
    "test-predictions-*.jsonl",
    "checkpoint-*",
    ".tmp-*",
    "final",
    "merged",
    "curves.png",
    REPORT_FILE,
    "tensorboard",
    "wandb",
)


def earlier_run(run_dir: Path) -> list[str]:
    """The outputs of an earlier run in ``run_dir`` that a fresh run there would mix with
    (its metric rows followed by the new run's, its checkpoints taken by a later
    ``--resume``); a lone ``config.yaml`` (killed before its first step) is not one."""
    if not run_dir.is_dir():
        return []
    found = sorted({p.name for pattern in RUN_OUTPUTS for p in run_dir.glob(pattern)})
    return [] if found in ([], ["config.yaml"]) else found


def _claim_output_dir(run_dir: Path, overwrite: bool, ctx: DistContext) -> None:
    """A fresh run's folder must not hold an earlier run: refuse, naming what is there, or
    with ``overwrite`` delete the earlier run's outputs (only the files a run writes). The
    main rank looks and decides; every rank raises the same ``ConfigError``."""
    problem = ""
    if ctx.is_main:
        found = earlier_run(run_dir)
        if found and not overwrite:
            shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
            problem = (
                f"{run_dir} holds an earlier run ({shown}): --resume {run_dir} continues it, "
                "--overwrite-output-dir deletes it and starts again there, or choose another --output-dir"
            )
        elif found:
            print(f"rethinker train: --overwrite-output-dir: deleting the earlier run in {run_dir}", file=sys.stderr)
            for name in found:
                path = run_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    if problem := ctx.gather_objects(problem)[0]:  # the main rank's decision, on every rank
        raise ConfigError(problem)


def _resume_point(run_dir: Path, ctx: DistContext, checkpoint: str | Path | None) -> tuple[Path | None, Any]:
    """The checkpoint to resume (``ckpt.resume_point``: damaged or unsafe ones passed
    over, each named on one line) and its trainer state; (None, None) when there is none."""
    say = (lambda line: print(f"rethinker train: {line}", file=sys.stderr)) if ctx.is_main else (lambda line: None)
    if not ctx.enabled:
        found = ckpt.resume_point(run_dir, checkpoint, say=say)
    else:  # the main rank checks the files (one sha256 pass), the others read the state it chose
        chosen: tuple[str, str | None] = ("", None)
        if ctx.is_main:
            try:
                found = ckpt.resume_point(run_dir, checkpoint, say=say)
                chosen = ("path", str(found[0]) if found else None)
            except ckpt.CheckpointError as exc:
                chosen = ("error", str(exc))
        kind, value = ctx.gather_objects(chosen)[0]
        if kind == "error":
            raise ckpt.CheckpointError(value)
        found = (Path(value), ckpt.load_state(value)) if value is not None else None
    if found is None:
        say(f"no checkpoint in {run_dir} yet: starting it from step 0 with its config.yaml")
        return None, None
    return found


def _restore(run: Run, last: Path, state: dict[str, Any]) -> None:
    """Optimizer, scheduler, data position, SSR state and RNGs from checkpoint ``last``
    (its trainer state ``state``); a state whose values do not fit raises a
    ``CheckpointError`` naming the file."""
    try:
        _apply_state(run, last, state)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise ckpt.CheckpointError(f"{last / ckpt.STATE_FILE}: a value does not fit this run ({exc!r})") from None
    print(f"resumed from {last} at step {run.start_step}", file=sys.stderr)


def _apply_state(run: Run, last: Path, state: dict[str, Any]) -> None:
    ctx = run.ctx
    if _is_dcp(state):
        load_optimizer_shards(last, run.model, run.optimizer, state["optimizer_groups"])
    else:  # the layout before DCP: the full optimizer state in the trainer state
        load_optimizer_state(run.model, run.optimizer, state["optimizer"], ctx)
    run.scheduler.load_state_dict(state["scheduler"])
    run.sampler.load_state_dict(state["sampler"])
    run.selector.load_state_dict(state["selector"])
    run.rethink_rng.bit_generator.state = state["rethink_rng"]
    rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
    if len(rngs) == ctx.world:
        ckpt.set_rng_state(rngs[ctx.rank])
    else:  # another world size: exact continuation is impossible, reseed per rank
        print(
            f"warning: checkpoint from {len(rngs)} process(es), running {ctx.world}: sampling reseeded", file=sys.stderr
        )
        torch.manual_seed(run.cfg.seed + ctx.rank + 7919 * int(state["step"]))
    run.start_step = run.saved_step = int(state["step"])
    run.samples_generated = int(state.get("samples_generated", 0))  # absent in checkpoints before the budget
