"""``rethinker infer`` on the packaged toy policy: prompt suffix, streaming, answer line."""

from __future__ import annotations

import io

import pytest

from rethinker.cli import main
from rethinker.eval.infer import infer
from rethinker.model.load import load_policy
from rethinker.prompt import SUFFIX
from rethinker.toyworld.model import resolve_model_path
from rethinker.toyworld.puzzles import generate


@pytest.fixture(scope="module")
def puzzle(tmp_path_factory):
    rec = generate(1, seed=2, split="test")[0]
    path = tmp_path_factory.mktemp("img") / "puzzle.png"
    path.write_bytes(rec.images[0].bytes)
    return rec, path


def test_infer_streams_the_response_and_extracts(puzzle):
    import torch

    rec, path = puzzle
    model, processor = load_policy(
        resolve_model_path(None), device=torch.device("cpu"), dtype=torch.float32, trainable=False
    )
    out = io.StringIO()
    res = infer(rec.question, path, model=model, processor=processor, max_new_tokens=12, stream=out)
    assert out.getvalue().strip() == res.response.strip() and res.response
    assert (rec.question + SUFFIX) in res.prompt and "<|image_pad|>" in res.prompt
    from rethinker.judge import EVAL_RULES, extract_answer

    assert res.answer == extract_answer(res.response, EVAL_RULES)
    assert res.n_image_tokens == 16  # 112x112 puzzle within the toy processor's own limits
    small = infer(
        rec.question, path, model=model, processor=processor, max_new_tokens=2, min_pixels=56 * 56, max_pixels=56 * 56
    )
    assert small.n_image_tokens == 4  # --max-pixels overrides the processor: 56x56 -> 2x2 merged patches


def test_infer_command_prints_an_answer_line(puzzle, capsys):
    rec, path = puzzle
    assert main(["infer", "--image", str(path), "--max-new-tokens", "12", rec.question]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("answer: ") and len(lines) >= 2  # streamed response, then the answer
    assert main(["infer", "--image", str(path.parent / "missing.png"), "q"]) == 2
    assert "image file not found" in capsys.readouterr().err
