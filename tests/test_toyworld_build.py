"""Toy-world warm start and the ``rethinker toy`` command."""

from __future__ import annotations

import pytest
import torch

from rethinker.cli import main
from rethinker.records import Record
from rethinker.toyworld.model import load_toy, toy_model_path
from rethinker.toyworld.puzzles import DEFAULT_KINDS, KINDS, generate, solution_of
from rethinker.toyworld.warmstart import (
    WarmStartConfig,
    boxed,
    build,
    evaluate,
    exact_check,
    sft_batch,
    sft_loss,
    wilson,
)


@pytest.fixture(scope="module")
def packaged():
    return load_toy()


def test_boxed_and_exact_check():
    r = Record(id="x", question="q", answer="Red")
    assert boxed("so \\boxed{a} then \\boxed{{red}}") == "{red}"
    assert boxed("\\boxed{red") is None and boxed("no box") is None
    assert exact_check("It is red. \\boxed{ red }", r)
    assert not exact_check("\\boxed{blue}", r)
    assert not exact_check("red", r)


def test_wilson_interval():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.404, abs=1e-3) and hi == pytest.approx(0.596, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)


def test_sft_batch_masks_the_prompt(packaged):
    model, proc = packaged
    recs = generate(3, seed=0, split="train")
    batch = sft_batch(proc, recs)
    tok = proc.tokenizer
    for i, r in enumerate(recs):
        labelled = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert tok.decode(labelled) == solution_of(r) + "<|im_end|>"
        n_img = int((batch["input_ids"][i] == tok.image_token_id).sum())
        assert n_img == 16 and int(batch["mm_token_type_ids"][i].sum()) == 16
        # padding sits on the right, outside the attention mask and the labels
        length = int(batch["attention_mask"][i].sum())
        assert bool((batch["input_ids"][i, length:] == tok.pad_token_id).all())
    loss = sft_loss(model, batch)
    assert torch.isfinite(loss) and 0 < loss.item() < 20


def test_packaged_policy_answers_in_format(packaged):
    """The shipped warm start puts a boxed answer in (nearly) every greedy response."""
    model, proc = packaged
    acc = evaluate(model, proc, generate(len(KINDS) * 2, seed=0, split="test"))
    assert acc.n == len(KINDS) * 2 and set(acc.per_kind) == set(KINDS)
    assert acc.boxed_rate >= 0.9


def test_build_is_deterministic(tmp_path):
    cfg = WarmStartConfig(steps=2, batch_size=4, corpus_size=200, eval_n=len(KINDS), warmup=1)
    p1, acc1 = build(tmp_path / "a", cfg, log=lambda s: None)
    p2, acc2 = build(tmp_path / "b", cfg, log=lambda s: None)
    m1, _ = load_toy(path=p1)
    m2, _ = load_toy(path=p2)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert acc1.correct == acc2.correct
    assert (p1 / "tokenizer.json").read_text() == (p2 / "tokenizer.json").read_text()


def test_cli_model_and_data(tmp_path, capsys):
    from rethinker.data.io import read_records

    assert main(["toy", "model", "--output-dir", str(tmp_path / "policy")]) == 0
    assert (tmp_path / "policy" / "model.safetensors").read_bytes() == (
        toy_model_path() / "model.safetensors"
    ).read_bytes()
    assert main(["toy", "model", "--output-dir", str(tmp_path / "policy")]) == 2  # refuses to overwrite

    out = tmp_path / "test.parquet"
    assert main(["toy", "data", "--split", "test", "--n", "12", "--seed", "4", "--output", str(out)]) == 0
    loaded = read_records(out)
    recs = loaded.records if hasattr(loaded, "records") else list(loaded)
    expected = generate(12, seed=4, split="test", kinds=DEFAULT_KINDS)  # the default mix
    assert [r.to_dict() for r in recs] == [r.to_dict() for r in expected]
