"""The Forced Rethinking stage of the loop (``train/rethinking.py``) with a stand-in
engine: what a kept rethink becomes, and what ``first_pass_loss`` trains on."""

import numpy as np
import pytest
import torch

from rethinker import metric_names as M
from rethinker.algo.rethink import RethinkConfig
from rethinker.judge import RewardConfig
from rethinker.records import Record
from rethinker.rollout.base import Completion, RolloutStats, SamplingParams
from rethinker.rollout.inputs import QueryInputs
from rethinker.train.experience import judge
from rethinker.train.rethinking import force_rethinking

EOS = 0


class Chars:
    """A tokenizer of one id per character (EOS is 0)."""

    def encode(self, text, add_special_tokens=False):
        return [ord(c) for c in text]


class Fixes:
    """Every continuation says the answer is 4."""

    eos_ids = [EOS]
    stop_requested = None

    def __init__(self):
        self.stats = RolloutStats()
        self.prefixes = []

    def generate(self, queries, params):
        self.prefixes += [q.input_ids.tolist() for q in queries]
        text = " Let me recount: it is 4, so \\boxed{4}"
        return [[Completion([ord(c) for c in text] + [EOS], text, True)] for _ in queries]


def _experience():
    q = QueryInputs(input_ids=torch.tensor([7, 8]), mm_token_type_ids=torch.zeros(2, dtype=torch.long))
    texts = ["I count 3. \\boxed{3}", "I count 4. \\boxed{4}"]  # one group of G = 2: wrong, right
    comps = [Completion([ord(c) for c in t] + [EOS], t, True) for t in texts]
    return judge(comps, [Record(id="q", question="How many?", answer="4")], [q], 2, 1, RewardConfig())


@pytest.mark.parametrize("first_pass_loss", ["train", "mask-wrong"])
def test_a_kept_rethink_replaces_its_original_and_trains_on_what_the_setting_says(first_pass_loss):
    cfg = RethinkConfig(skip_prob=0.0, cut_prob=0.0, generic_prob=0.0, min_continuation=1, max_continuation=200,
                        first_pass_loss=first_pass_loss)  # fmt: skip
    exp = _experience()
    assert [s.reward for s in exp.samples] == [0.0, 1.0]
    out = force_rethinking(exp, Fixes(), Chars(), SamplingParams(n=2, max_new_tokens=64), RewardConfig(), cfg,
                           np.random.default_rng(0))  # fmt: skip
    wrong, right = out.samples
    assert exp.samples[0].reward == 0.0 and exp.samples[0].rethink is None  # the input record is untouched
    first = [ord(c) for c in "I count 3. \\boxed{3}"]  # the first pass without its EOS
    trigger = [ord(c) for c in cfg.wrong_trigger]
    assert wrong.completion_ids[: len(first) + len(trigger)] == first + trigger
    assert wrong.reward == 1.0 and wrong.correct and wrong.rethink.kept and not wrong.rethink.first_correct
    trained_first = set(wrong.completion_mask[: len(first)])
    assert trained_first == ({0} if first_pass_loss == "mask-wrong" else {1})
    assert set(wrong.completion_mask[len(first) :]) == {1}  # trigger and continuation always
    assert set(right.completion_mask) == {1}  # a right first pass is trained on in both settings
    assert out.metrics[M.RETHINK_ACCEPTED] == 2 and out.metrics[M.RETHINK_FIXED_WRONG] == 1


def test_test_time_rethinking_judges_each_answer_again_after_the_trigger(toy_policy):
    """evaluate(..., rethink_trigger=...): every greedy answer is continued after the
    trigger and judged again; the counts of changed verdicts add up."""
    from rethinker.algo.rethink import TEST_TRIGGER
    from rethinker.rollout.evaluate import evaluate
    from rethinker.rollout.hf import TransformersEngine
    from rethinker.rollout.inputs import PromptEncoder
    from rethinker.toyworld.puzzles import generate

    model, processor = toy_policy
    engine, encoder = TransformersEngine(model, processor), PromptEncoder(processor)
    records = generate(24, seed=4, split="test")
    plain = evaluate(engine, encoder, records, max_new_tokens=48)
    res = evaluate(engine, encoder, records, max_new_tokens=48, rethink_trigger=TEST_TRIGGER)
    assert plain.rethinking() is None and [p.correct for p in plain.predictions] == [p.correct for p in res.predictions]
    assert all(p.rethought.response.startswith(p.response + TEST_TRIGGER) for p in res.predictions)
    rt, n = res.rethinking(), len(res.predictions)
    assert rt["accuracy_before"] == res.accuracy
    assert rt["accuracy_after"] == pytest.approx(
        rt["accuracy_before"] + (rt["wrong_to_right"] - rt["right_to_wrong"]) / n
    )
    assert rt["accuracy_after"] == sum(p.rethought.correct for p in res.predictions) / n


def test_placement_append_keeps_the_original_and_adds_the_rethink_to_its_group():
    from rethinker.algo.advantages import group_advantages
    from rethinker.train.experience import with_advantages

    cfg = RethinkConfig(skip_prob=0.0, cut_prob=0.0, generic_prob=0.0, min_continuation=1, max_continuation=200,
                        placement="append")  # fmt: skip
    out = force_rethinking(_experience(), Fixes(), Chars(), SamplingParams(n=2, max_new_tokens=64), RewardConfig(),
                           cfg, np.random.default_rng(0))  # fmt: skip
    assert [(s.reward, s.extra, s.group) for s in out.samples] == [(0.0, False, 0), (1.0, False, 0), (1.0, True, 0),
                                                                   (1.0, True, 0)]  # fmt: skip
    wrong, right = out.samples[:2]
    assert wrong.judgement.text == "I count 3. \\boxed{3}" and wrong.rethink.kept  # the original stays
    assert out.samples[2].judgement.text.startswith(wrong.judgement.text + cfg.wrong_trigger)
    adv = with_advantages(out, 2, "std", 1e-6)
    # one group of four (0, 1, 1, 1): the wrong original keeps its negative advantage
    expected = group_advantages(torch.tensor([0.0, 1.0, 1.0, 1.0]), 4).tolist()
    assert [s.advantage for s in adv.samples] == pytest.approx(expected) and adv.samples[0].advantage < 0
    with pytest.raises(ValueError, match="placement"):
        RethinkConfig(placement="swap")
