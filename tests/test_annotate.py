"""``rethinker data annotate``: pass rates from K samples judged by the training reward,
exact on scripted responses, resumable, on the real toy policy end to end."""

from __future__ import annotations

import json

import pytest

from rethinker.cli import main
from rethinker.data.io import read_records, write_records
from rethinker.eval.annotate import annotate, default_sidecar, read_sidecar
from rethinker.model.load import load_policy
from rethinker.records import ImageRef
from rethinker.rollout.base import Completion, RolloutEngine, RolloutStats
from rethinker.rollout.hf import TransformersEngine
from rethinker.toyworld.model import resolve_model_path
from rethinker.toyworld.puzzles import generate


@pytest.fixture(scope="module")
def policy():
    import torch

    return load_policy(resolve_model_path(None), device=torch.device("cpu"), dtype=torch.float32, trainable=False)


class Scripted(RolloutEngine):
    """Per query, the scripted ``(text, finished)`` samples for the record whose answer
    the function returns; counts queries."""

    def __init__(self, script):
        self.script = script
        self.asked = 0
        self.stats = RolloutStats()

    def generate(self, queries, params):
        self.asked += len(queries)
        return [[Completion([1], t, f) for t, f in self.script(q)][: params.n] for q in queries]


def test_pass_rate_uses_the_training_reward_exactly(tmp_path, policy):
    _, processor = policy
    recs = generate(2, seed=3, split="test")
    answers = {r.question: r.answer for r in recs}

    def script(q):
        ans = next(a for question, a in answers.items() if question in q.text)
        return [
            (f"so \\boxed{{{ans}}}", True),  # pass
            (f"so \\boxed{{{ans}}}", False),  # truncated: invalid in training, not a pass
            (f"the answer is {ans}", True),  # no box: invalid in training
            ("so \\boxed{nothing}", True),
        ]  # wrong

    engine = Scripted(script)
    res = annotate(recs, None, processor, engine=engine, samples=4, name="mine", max_new_tokens=8)
    assert [r.pass_rates for r in res.records] == [{"mine": 0.25}, {"mine": 0.25}]
    assert (res.n_annotated, res.skipped, engine.asked) == (2, [], 2)
    assert [r.question for r in res.records] == [r.question for r in recs]  # nothing else changes


def test_resumable_bad_images_kept_and_real_policy(tmp_path, policy):
    model, processor = policy
    recs = generate(3, seed=4, split="test")
    recs[1].pass_rates = {"32B-trained": 0.5}
    broken = generate(1, seed=9, split="test")[0]
    broken.id, broken.images = "broken", [ImageRef(bytes=b"not an image")]
    engine = TransformersEngine(model, processor)
    asked = []
    real = engine.generate
    engine.generate = lambda qs, p: asked.append(len(qs)) or real(qs, p)
    side = tmp_path / "side.jsonl"
    res = annotate(
        [*recs[:2], broken],
        model,
        processor,
        engine=engine,
        samples=2,
        name="toy",
        sidecar=side,
        max_new_tokens=6,
        batch_queries=8,
    )
    assert sum(asked) == 2 and res.n_annotated == 2
    assert [i for i, _ in res.skipped] == ["broken"] and res.records[2].pass_rates is None
    rates = [r.pass_rates["toy"] for r in res.records[:2]]
    assert all(x in (0.0, 0.5, 1.0) for x in rates)
    assert res.records[1].pass_rates["32B-trained"] == 0.5  # other annotations kept
    assert set(read_sidecar(side)) == {recs[0].id, recs[1].id}
    # a crash mid-line leaves a torn line: ignored, and the run goes on from the finished ids
    with open(side, "a") as fh:
        fh.write('{"id": "' + recs[2].id + '", "n_corr')
    res2 = annotate(recs, model, processor, engine=engine, samples=2, name="toy", sidecar=side, max_new_tokens=6)
    assert sum(asked) == 3 and res2.n_resumed == 2 and res2.n_annotated == 3
    assert [r.pass_rates["toy"] for r in res2.records[:2]] == rates
    assert [json.loads(x)["id"] for x in side.read_text().splitlines()] == [r.id for r in recs]


def test_data_annotate_command(tmp_path, capsys):
    src = tmp_path / "in.parquet"
    write_records(src, generate(3, seed=8, split="test"))
    out = tmp_path / "out.parquet"
    args = ["data", "annotate", str(src), "--samples", "2", "--output", str(out), "--max-new-tokens", "8"]
    assert main(args) == 0
    assert "annotated 3 of 3 records with pass_rates['toy']" in capsys.readouterr().out
    back = read_records(out)
    assert len(back.records) == 3 and not back.skipped
    assert all(
        0.0 <= r.pass_rates["toy"] <= 1.0 and r.pass_rates["toy"] * 2 == int(r.pass_rates["toy"] * 2)
        for r in back.records
    )
    assert default_sidecar(out, "toy").exists()
    assert main(args) == 0  # resumed: nothing left to sample
    assert "3 resumed" in capsys.readouterr().out
    assert main(["data", "annotate", str(tmp_path / "nope.parquet"), "--output", str(out)]) == 2
