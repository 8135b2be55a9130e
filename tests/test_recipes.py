"""The shipped recipes (recipes/*.yaml) load, validate, and say what they claim."""

import math
from pathlib import Path

import pytest

from rethinker.train.config import TrainConfig, resolve

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_every_recipe_resolves_without_the_toy_preset():
    paths = sorted(RECIPES.glob("*.yaml"))
    assert [p.name for p in paths] == [
        "qwen2.5-vl-72b-virl39k-multinode.yaml",
        "qwen2.5-vl-7b-lora-1gpu.yaml",
        "qwen2.5-vl-7b-virl39k.yaml",
    ]
    for p in paths:
        cfg = resolve(str(p))  # unknown keys or bad values raise ConfigError
        assert cfg.preset is None and cfg.model.path.startswith("/models/Qwen2.5-VL-")
        assert cfg.model.dtype == "bfloat16" and cfg.model.gradient_checkpointing
        assert (cfg.model.min_pixels, cfg.model.max_pixels) == (256 * 28 * 28, 1280 * 28 * 28)
        assert cfg.ssr.mode == "paper" and cfg.rethink.enabled and cfg.rollout.group_size == 8
        assert (cfg.algo.clip_low, cfg.algo.clip_high) == (0.2, 0.35) and cfg.data.max_prompt_tokens == 2048


@pytest.mark.parametrize(
    "name,nodes", [("qwen2.5-vl-7b-virl39k.yaml", 1), ("qwen2.5-vl-72b-virl39k-multinode.yaml", 4)]
)
def test_paper_recipes_hold_the_papers_hyperparameters(name, nodes):
    text = (RECIPES / name).read_text()
    cfg = resolve(str(RECIPES / name))
    paper = TrainConfig()  # the defaults for real models are the paper's values
    for section, key in [
        ("optim", "lr"),
        ("optim", "scheduler"),
        ("optim", "mini_batch_size"),
        ("rollout", "queries_per_step"),
        ("rollout", "max_new_tokens"),
        ("rollout", "temperature"),
        ("rollout", "top_p"),
        ("rollout", "top_k"),
        ("algo", "aggregation"),
        ("algo", "advantage_scale"),
    ]:
        assert getattr(getattr(cfg, section), key) == getattr(getattr(paper, section), key), (section, key)
    assert cfg.optim.lr == 1e-6 and cfg.rollout.queries_per_step == 512 and cfg.rollout.engine == "vllm"
    assert cfg.max_steps == math.ceil(3 * 38870 / 512)  # three passes over ViRL39K
    command = "torchrun --nproc_per_node 8" if nodes == 1 else f"torchrun --nnodes {nodes}"
    assert command in text and f"--config recipes/{name}" in text


def test_the_single_gpu_recipe_trains_lora_adapters():
    cfg = resolve(str(RECIPES / "qwen2.5-vl-7b-lora-1gpu.yaml"))
    assert cfg.model.lora_rank == 64 and cfg.model.freeze_vision and cfg.rollout.engine == "transformers"
    assert cfg.rollout.queries_per_step * cfg.rollout.group_size == 256 == cfg.optim.mini_batch_size
