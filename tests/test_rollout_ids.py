"""The stop / pad ids and the pixel limits, each resolved by one function for every engine."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import GenerationConfig

from rethinker.model.pixels import resolve_pixel_limits
from rethinker.rollout.hf import TransformersEngine
from rethinker.rollout.inputs import PromptEncoder
from rethinker.rollout.tokens import end_token_ids
from rethinker.rollout.vllm import pixel_limits, vllm_end_token_ids
from rethinker.toyworld.model import PACKAGE_POLICY_DIR


def _tok(eos, pad):
    return SimpleNamespace(eos_token_id=eos, pad_token_id=pad)


@pytest.mark.parametrize(
    "cfg_eos, expected",
    [(7, [7]), ([7, 8], [7, 8]), ((7, 8), [7, 8]), (torch.tensor([7, 8]), [7, 8]), (None, [2]), ([], [2])],
)
def test_stop_ids_come_from_the_generation_config_else_the_tokenizer(cfg_eos, expected):
    stop, pad = end_token_ids(_tok(2, 0), SimpleNamespace(eos_token_id=cfg_eos))
    assert stop == expected and all(type(t) is int for t in stop) and pad == 0


def test_pad_is_the_tokenizers_else_the_first_stop_id():
    assert end_token_ids(_tok(2, None), GenerationConfig(eos_token_id=[5, 2])) == ([5, 2], 5)
    assert end_token_ids(_tok(2, None)) == ([2], 2)
    assert end_token_ids(_tok(2, 9), GenerationConfig(eos_token_id=5)) == ([5], 9)
    with pytest.raises(ValueError, match="no pad token"):
        end_token_ids(_tok(None, None))


def test_vllm_also_stops_on_the_tokenizers_eos():
    assert vllm_end_token_ids(_tok(2, 0), GenerationConfig(eos_token_id=5)) == ([5, 2], 0)
    assert vllm_end_token_ids(_tok(2, 0), GenerationConfig(eos_token_id=[2, 0])) == ([2, 0], 0)


def test_toy_policy_ids_are_the_ones_generate_uses(toy_policy):
    model, processor = toy_policy
    engine = TransformersEngine(model, processor)
    assert (engine.eos_ids, engine.pad_id) == ([2, 0], 0) == end_token_ids(processor.tokenizer, model.generation_config)
    assert engine.eos_ids == list(model.generation_config.eos_token_id)
    assert PromptEncoder(processor).pad_token_id == 0 == processor.tokenizer.pad_token_id


def test_pixel_limits_from_a_processor_a_folder_or_saved_settings(toy_policy, tmp_path):
    _, processor = toy_policy
    toy = (56 * 56, 112 * 112)
    assert resolve_pixel_limits(processor) == toy == resolve_pixel_limits(PACKAGE_POLICY_DIR)
    assert resolve_pixel_limits(processor.image_processor, max_pixels=999) == (56 * 56, 999)
    assert resolve_pixel_limits(PACKAGE_POLICY_DIR, 5, None) == (5, 112 * 112)
    assert resolve_pixel_limits(None) == (None, None) == resolve_pixel_limits(tmp_path)
    assert resolve_pixel_limits(None, 1, 2) == (1, 2)
    # a flat preprocessor_config.json is read before processor_config.json; min/max_pixels before size
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"min_pixels": 10, "size": {"longest_edge": 40}}))
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": {"min_pixels": 1}}))
    assert resolve_pixel_limits(str(tmp_path)) == (10, 40)
    assert pixel_limits(processor) == {"min_pixels": toy[0], "max_pixels": toy[1]}
    assert pixel_limits(None, max_pixels=7) == {"max_pixels": 7}
