"""The training configuration: dataclasses, YAML, command-line overrides, presets.

Defaults are the paper's / released run's values for real models (``shared/method.md``).
With no ``--model`` the ``toy`` preset applies (the built-in tiny policy and puzzles,
sized for a 2-core CPU). Precedence: defaults < preset < YAML file < command line.

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
    eval: str | None = None  # held-out set; None -> toy test split (toy) or no evaluation
    toy_train_size: int = 4000  # 300 steps x 8 queries = 2400: no query repeats in a default run
    toy_eval_size: int = 500
    toy_kinds: list[str] | None = None  # toy puzzle kinds for training and evaluation; None -> the default mix
    shuffle: bool = True
    prompt_suffix: str = "\n\nPlease reason step by step, and put your final answer within \\boxed{}"


@dataclass
class RolloutConfig:
    queries_per_step: int = 512
    group_size: int = 8  # G samples per query
    max_new_tokens: int = 2048
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 40
    max_batch_queries: int = 64  # generation chunk (queries); each expands to G rows
    engine: str = "transformers"  # transformers | vllm (extra: pip install rethinker[vllm]; experimental)
    vllm_gpu_memory_utilization: float = 0.3
    vllm_sleep_level: int = 1
    eval_max_new_tokens: int | None = None  # None -> max_new_tokens


@dataclass
class AlgoConfig:
    advantage_scale: str = "std"  # std (the paper's GRPO) | none (the released script's mean-only)
    advantage_eps: float = 1e-6
    clip_low: float = 0.2
    clip_high: float = 0.35
    aggregation: str = "token-mean"  # token-mean | sequence-mean | sequence-sum-norm
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    entropy_coef: float = 0.0
    sft_coef: float = 0.0  # the released script's group_sft uses 0.05


@dataclass
class SSRConfig:
    mode: str = "paper"  # paper | released | filter | off
    alpha: float = 1.0
    batch_size: int | None = None  # samples per update; None -> the step's sample count
    positive_share: float = 0.1  # released mode
    refill_factor: float = 2.0  # released mode


@dataclass
class RethinkSection:
    enabled: bool = True
    skip_prob: float = 0.35
    high_acc_threshold: float = 0.7
    cut_prob: float = 0.5
    temperature: float = 0.9
    headroom_tokens: int = 1024
    min_continuation: int = 30
    max_continuation: int = 1024
    max_self_checks: int = 4
    max_per_query: int = 2
    train_on_trigger: bool = True
    scale_to_response_limit: bool = True  # scale the token thresholds (set for 2048) to max_new_tokens


@dataclass
class RewardSection:
    correct: float = 1.0
    wrong: float = 0.0
    invalid: float = -0.1
    max_waits: int = 5
    require_box: bool = True
    reflection_shaping: bool = False


@dataclass
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    warmup_steps: int = 0
    scheduler: str = "constant"  # constant | cosine
    micro_batch_size: int = 4  # samples per forward/backward
    mini_batch_size: int | None = 512  # samples per optimizer step; None -> one step per rollout
    bucket_by_length: bool = True


@dataclass
class TrainConfig:
    output_dir: str = "runs/rethinker"
    seed: int = 0
    max_steps: int = 200  # rollout steps
    eval_every: int = 25
    save_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 1
    log_samples: int = 2  # queries per step whose G responses go to samples.jsonl (rethinker report); 0: none
    report_to: list[str] = field(default_factory=list)  # tensorboard, wandb
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch CPU threads; None -> torch's default
    preset: str | None = None  # toy | None (set automatically when model.path is None)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    ssr: SSRConfig = field(default_factory=SSRConfig)
    rethink: RethinkSection = field(default_factory=RethinkSection)
    reward: RewardSection = field(default_factory=RewardSection)
    optim: OptimConfig = field(default_factory=OptimConfig)


#: The built-in default: the tiny toy policy on generated puzzles, on a 2-core CPU.
TOY_PRESET: dict[str, Any] = {
    "output_dir": "runs/toy",
    "max_steps": 300,  # ~2 s/step + 7 evaluations of 500 puzzles: ~11 minutes on 2 cores
    "eval_every": 50,
    "save_every": 50,
    "threads": 2,
    "log_samples": 4,  # 4 queries x 8 responses per step: ~12 KB a step + thumbnails (rethinker/report/samples.py)
    "model.dtype": "float32",
    "model.min_pixels": None,
    "model.max_pixels": None,
    "model.gradient_checkpointing": False,
    "rollout.queries_per_step": 8,
    "rollout.group_size": 8,
    "rollout.max_new_tokens": 48,
    "rollout.top_p": 1.0,
    "rollout.top_k": 0,
    "optim.lr": 1e-4,  # peak; 10 warm-up steps, cosine decay to 0 (a constant 6e-5 oscillated, +8.8)
    "optim.warmup_steps": 10,
    "optim.scheduler": "cosine",
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


def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


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
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("on", "off", "yes", "no", "true", "false"):
            return value.lower() in ("on", "yes", "true")
        raise ConfigError(f"{key}: expected on/off, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool):
            return "on" if value else "off"
        return str(value)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [v if inner is Any else _convert(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    return value


def set_value(cfg: TrainConfig, dotted: str, value: Any) -> None:
    """Set ``section.field`` (dashes allowed) with type conversion; unknown keys raise."""
    dotted = SHORTCUTS.get(dotted, dotted)
    parts = [p.replace("-", "_") for p in dotted.split(".")]
    obj: Any = cfg
    for p in parts[:-1]:
        if not dataclasses.is_dataclass(obj) or p not in _field_types(obj):
            raise ConfigError(f"unknown config section {dotted!r}")
        obj = getattr(obj, p)
    name = parts[-1]
    types_ = _field_types(obj) if dataclasses.is_dataclass(obj) else {}
    if name not in types_:
        raise ConfigError(f"unknown config key {dotted!r}")
    if dataclasses.is_dataclass(getattr(obj, name)):
        if not isinstance(value, dict):
            raise ConfigError(f"{dotted} is a section; give a mapping")
        for k, v in value.items():
            set_value(cfg, f"{dotted}.{k}", v)
        return
    if name == "enabled" and parts[0] == "rethink" and isinstance(value, str) and value.lower() in ("on", "off"):
        value = value.lower() == "on"
    setattr(obj, name, _convert(value, types_[name], dotted))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key.split(".")[0] in {f.name for f in dataclasses.fields(TrainConfig)} and key not in ("report_to",):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


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


def resolve(yaml_path: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """defaults < preset < YAML < overrides. The toy preset applies when no model is
    given (or ``preset: toy`` is asked for)."""
    file_values: dict[str, Any] = {}
    if yaml_path:
        loaded = yaml.safe_load(Path(yaml_path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{yaml_path}: expected a mapping at the top level")
        file_values = _flatten(loaded)
    overrides = dict(overrides or {})
    norm = lambda k: SHORTCUTS.get(k, k).replace("-", "_")  # noqa: E731
    merged = {norm(k): v for k, v in file_values.items()}
    merged.update({norm(k): v for k, v in overrides.items()})
    cfg = TrainConfig()
    preset = merged.get("preset")
    if preset is None and merged.get("model.path") in (None, "", "none", "None"):
        preset = "toy"
    if preset not in (None, "none", "None"):
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        for k, v in PRESETS[preset].items():
            set_value(cfg, k, v)
        cfg.preset = preset
    for k, v in merged.items():
        set_value(cfg, k, v)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    if cfg.ssr.mode not in ("paper", "released", "filter", "off"):
        raise ConfigError(f"ssr.mode must be paper|released|filter|off, not {cfg.ssr.mode!r}")
    if cfg.rollout.engine not in ("transformers", "vllm"):
        raise ConfigError("rollout.engine must be transformers|vllm")
    if cfg.algo.advantage_scale not in ("std", "none"):
        raise ConfigError("algo.advantage_scale must be std|none")
    if cfg.algo.aggregation not in ("token-mean", "sequence-mean", "sequence-sum-norm"):
        raise ConfigError("algo.aggregation must be token-mean|sequence-mean|sequence-sum-norm")
    if cfg.rollout.group_size < 2:
        raise ConfigError("rollout.group_size must be >= 2 (GRPO compares samples within a group)")
    for name in ("queries_per_step", "max_new_tokens"):
        if getattr(cfg.rollout, name) < 1:
            raise ConfigError(f"rollout.{name} must be >= 1")
    if cfg.model.lora_rank < 0:
        raise ConfigError("model.lora_rank must be >= 0")
    if cfg.log_samples < 0:
        raise ConfigError("log_samples must be >= 0 (0: no sample log)")
    if cfg.optim.micro_batch_size < 1:
        raise ConfigError("optim.micro_batch_size must be >= 1")


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["optim"]["betas"] = list(cfg.optim.betas)
    return d


def save(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def from_dict(d: dict[str, Any]) -> TrainConfig:
    cfg = TrainConfig()
    for k, v in _flatten(d).items():
        set_value(cfg, k, v)
    return cfg
