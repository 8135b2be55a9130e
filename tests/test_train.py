"""The trainer end to end on the tiny toy policy: a short run, exact resume after
SIGKILL, bad records, config handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trainrun import ENV, comparable_rows, kill_after_checkpoint, tiny_args

from rethinker import metric_names as M
from rethinker.train.config import ConfigError, parse_overrides, resolve

TINY = tiny_args()


def _run(args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "rethinker", "train", *args], env=ENV, capture_output=True, text=True, timeout=600, **kw
    )


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    res = _run(["--output-dir", str(out), *TINY])
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res


def test_short_run_writes_metrics_checkpoints_and_curves(full_run):
    out, res = full_run
    rows = _rows(out)
    train_rows = [r for r in rows if M.REWARD_MEAN in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    for r in train_rows:
        for key in (
            M.REWARD_MEAN,
            "accuracy",
            M.EFFECTIVE_BEFORE_SSR,
            M.EFFECTIVE_AFTER_SSR,
            "reflection_rate",
            M.TIME_STEP,
            M.ALL_CORRECT,
            M.ALL_WRONG,
            M.RETHINK_ATTEMPTS,
            M.LENGTH_MEAN,
            M.ROLLOUT_TOKENS_PER_S,
        ):
            assert key in r, key
        assert -0.1 <= r[M.REWARD_MEAN] <= 1.1
        assert 0.0 <= r[M.EFFECTIVE_BEFORE_SSR] <= 1.0
    evals = [r for r in rows if "eval/accuracy" in r and r.get("eval/n")]
    assert [r["step"] for r in evals] == [0, 2, 4]
    assert all(r["eval/n"] == 8 for r in evals)
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "config.yaml").is_file()
    ckpts = sorted(p.name for p in out.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-2", "checkpoint-4"]
    # distributed checkpoints (DCP): the policy's and the optimizer's shards, one file per rank
    for part in ("model", "optimizer"):
        assert sorted(p.name for p in (out / "checkpoint-4" / part).iterdir()) == [".metadata", "__0_0.distcp"]
    # the final policy loads with plain transformers
    from transformers import AutoModelForImageTextToText, AutoProcessor

    AutoProcessor.from_pretrained(out / "final")
    AutoModelForImageTextToText.from_pretrained(out / "final")
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 4 and summary["final"] == str(out / "final")


def test_killed_and_resumed_run_matches_uninterrupted(full_run, tmp_path):
    ref_dir, _ = full_run
    out = tmp_path / "killed"
    kill_after_checkpoint(out, TINY, step=2)
    assert not (out / "checkpoint-4").exists()
    res = _run(["--resume", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert comparable_rows(out) == comparable_rows(ref_dir)


def test_bad_records_are_skipped_and_counted(tmp_path):
    import io

    from PIL import Image

    from rethinker.data.io import write_records
    from rethinker.records import ImageRef, Record
    from rethinker.toyworld.puzzles import generate

    good = generate(6, seed=5, split="train")
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, format="PNG")  # 64 MP: beyond the bomb limit
    bad = [
        Record(id="bad-bytes", question="What colour?", answer="red", images=[ImageRef(bytes=b"not an image")]),
        Record(id="bomb", question="What colour?", answer="red", images=[ImageRef(bytes=buf.getvalue())]),
        Record(id="missing-file", question="What colour?", answer="red", images=[ImageRef(path="nowhere.png")]),
    ]
    path = tmp_path / "train.parquet"
    write_records(path, good + bad)
    # rows the reader must refuse: no answer, empty question (written as raw rows)
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pylist()
    table.append({**table[0], "id": "no-answer", "answer": None})
    table.append({**table[0], "id": "empty-question", "question": "  "})
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(path)), path)
    out = tmp_path / "run"
    res = _run(
        [
            "--output-dir",
            str(out),
            *TINY,
            "--max-steps",
            "3",
            "--save-every",
            "0",
            "--eval-every",
            "0",
            "--data",
            str(path),
            "--rollout.queries-per-step",
            "3",
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(out)
    head = rows[0]
    assert head["step"] == 0 and head[M.TRAIN_RECORDS] == 6 and head[M.SKIPPED_AT_LOAD] == 5
    for name in ("bad-bytes", "bomb", "missing-file", "no-answer", "empty-question"):
        assert name in res.stderr
    assert [r["step"] for r in rows if M.REWARD_MEAN in r] == [1, 2, 3]


def test_images_that_fail_only_at_decode_are_skipped_per_step(toy_policy):
    """encode_batch names and counts records whose images fail when decoded for a step."""
    from rethinker.records import ImageRef, Record
    from rethinker.rollout.inputs import PromptEncoder
    from rethinker.toyworld.puzzles import generate
    from rethinker.train.experience import encode_batch

    _, processor = toy_policy
    good = generate(2, seed=9, split="train")
    bad = Record(
        id="torn", question="What colour?", answer="red", images=[ImageRef(bytes=good[0].images[0].bytes[:60])]
    )
    kept, queries, skipped = encode_batch(PromptEncoder(processor), [good[0], bad, good[1]])
    assert [r.id for r in kept] == [good[0].id, good[1].id] and len(queries) == 2
    assert [s[0] for s in skipped] == ["torn"] and "unreadable image" in skipped[0][1]


def test_config_precedence_and_errors(tmp_path):
    cfg = resolve(None, {})
    assert cfg.preset == "toy" and cfg.rollout.max_new_tokens == 48 and cfg.ssr.mode == "off"
    assert cfg.rethink.enabled is False  # off on the toy world only (README: the ablation's rule)
    assert resolve(None, parse_overrides(["--rethink", "on"])).rethink.enabled is True
    real = resolve(None, {"model": str(tmp_path)})
    assert real.preset is None and real.rollout.max_new_tokens == 2048 and real.optim.lr == 1e-6
    assert real.rethink.enabled is True and real.ssr.mode == "paper"  # real checkpoints keep the paper's settings
    assert resolve(None, parse_overrides(["--ssr", "paper"])).ssr.mode == "paper"
    assert real.algo.clip_high == 0.35 and real.rollout.group_size == 8 and real.rollout.queries_per_step == 512
    y = tmp_path / "c.yaml"
    y.write_text("optim:\n  lr: 0.001\nrollout:\n  group_size: 4\nssr: {mode: filter}\n")
    cfg = resolve(str(y), parse_overrides(["--optim.lr", "2e-5", "--rethink", "on"]))
    assert cfg.optim.lr == 2e-5 and cfg.rollout.group_size == 4 and cfg.ssr.mode == "filter"
    assert cfg.rethink.enabled is True
    for bad in (["--ssr", "sometimes"], ["--nope", "1"], ["--rollout.group-size", "1"], ["--max-steps"]):
        with pytest.raises(ConfigError):
            resolve(None, parse_overrides(bad))


def test_cli_reports_config_errors():
    res = _run(["--rollout.group-size", "many"])
    assert res.returncode == 2 and "group_size" in res.stderr


def test_config_yaml_of_an_earlier_version_still_loads(tmp_path):
    """A config.yaml written before the sections became the algorithms' own configs (the
    fixture, from commit 32b9283) loads with every value, and resumes into the same run."""
    import yaml

    from rethinker.train.config import from_dict, resumed_config, save, to_dict

    old = Path(__file__).parent / "data" / "config_before_sections_merged.yaml"
    cfg = from_dict(yaml.safe_load(old.read_text()))
    assert (cfg.ssr.mode, cfg.ssr.refill_factor, cfg.rollout.max_new_tokens) == ("released", 2, 48)
    assert (cfg.rethink.min_continuation, cfg.rethink.max_continuation, cfg.reward.max_waits) == (30, 1024, 5)
    assert cfg.rollout.sampling().n == 8 and cfg.rethink_for_rollout().max_response_tokens == 48
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(old.read_text())
    again = resumed_config(run, {"max_steps": "6"})
    assert again.output_dir == str(run) and again.max_steps == 6 and again.ssr == cfg.ssr
    save(again, run / "config.yaml")  # the new layout round-trips
    assert to_dict(resumed_config(run)) == to_dict(again)


def test_config_sections_are_the_algorithms_own():
    from rethinker.algo.rethink import RethinkConfig
    from rethinker.algo.ssr import SSRConfig
    from rethinker.judge import RewardConfig
    from rethinker.train.config import to_dict

    cfg = resolve(
        None,
        parse_overrides(
            ["--rethink.min-continuation", "5", "--reward.penalize-truncated", "off", "--ssr.refill-factor", "3"]
        ),
    )
    assert isinstance(cfg.rethink, RethinkConfig) and isinstance(cfg.ssr, SSRConfig)
    assert isinstance(cfg.reward, RewardConfig) and cfg.reward.penalize_truncated is False
    assert cfg.rethink.min_continuation == 5 and cfg.ssr.refill_factor == 3
    assert "max_response_tokens" not in to_dict(cfg)["rethink"]  # derived from rollout.max_new_tokens
    for bad in (
        ["--rethink.max-response-tokens", "9"],
        ["--ssr.refill-factor", "2.5"],
        ["--rethink.min-continuation", "2000"],
    ):
        with pytest.raises(ConfigError):
            resolve(None, parse_overrides(bad))
    # a section checks itself once, with all its values: raising both bounds together is fine
    both = resolve(None, parse_overrides(["--rethink.min-continuation", "2000", "--rethink.max-continuation", "3000"]))
    assert (both.rethink.min_continuation, both.rethink.max_continuation) == (2000, 3000)


def test_two_image_puzzles_train_evaluate_and_resume(tmp_path):
    """The multi-image kind through the whole trainer: rollouts, Forced Rethinking, update,
    held-out evaluation and a resume from a checkpoint; nothing is skipped."""
    out = tmp_path / "run"
    two = [*TINY, "--data.toy-kinds", "count_two", "--max-steps", "2", "--save-every", "1", "--ssr", "off"]
    res = _run(["--output-dir", str(out), *two])
    assert res.returncode == 0, res.stderr[-3000:]
    res = _run(["--resume", str(out), "--max-steps", "3"])
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(out)
    steps = [r for r in rows if M.REWARD_MEAN in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r[M.SKIPPED_BAD] == 0 and r[M.UPDATE_SKIPPED] == 0 and r[M.UPDATE_TOKENS] > 0 for r in steps)
    evals = [r for r in rows if "eval/n" in r]
    assert [r["step"] for r in evals] == [0, 2, 3] and all(r["eval/n"] == 8 and r["eval/skipped"] == 0 for r in evals)
    assert set(k for r in evals for k in r if k.startswith("eval/accuracy/")) == {"eval/accuracy/count_two"}


def test_informative_groups_keep_whole_groups_with_a_nonzero_advantage():
    from rethinker.algo.sample import Sample
    from rethinker.train.dynamic import informative_groups

    advs = [0, 0, 0, 0, 0.5, -0.5, 0, 0, 1, -1, 1, -1]  # groups of 4: none, partly, all non-zero
    samples = [Sample(advantage=a, reward=0.0, group=i // 4, step=i) for i, a in enumerate(advs)]
    assert [s.step for s in informative_groups(samples, 4)] == [4, 5, 6, 7, 8, 9, 10, 11]
    assert informative_groups(samples[:4], 4) == []


def test_dynamic_sampling_fills_the_step_with_informative_groups(tmp_path):
    out = tmp_path / "dyn"
    res = _run(
        [
            "--output-dir",
            str(out),
            *TINY,
            "--max-steps",
            "2",
            "--eval-every",
            "0",
            "--save-every",
            "0",
            "--data.toy-test-size",
            "4",
            "--rollout.dynamic-sampling",
            "on",
            "--rollout.max-sampling-rounds",
            "3",
            "--rethink",
            "off",
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(out)
    steps = [r for r in rows if M.REWARD_MEAN in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert 1 <= r[M.DYNAMIC_ROUNDS] <= 3 and r[M.DYNAMIC_KEPT] <= 2
        assert r[M.DYNAMIC_GENERATED] == 2 * r[M.DYNAMIC_ROUNDS]
        # every kept group is informative, and a step stops drawing once it has two
        assert r[M.DYNAMIC_KEPT] == 2 or r[M.DYNAMIC_ROUNDS] == 3
        if r[M.DYNAMIC_KEPT]:
            assert r[M.SSR_UNIQUE] <= 4 * r[M.DYNAMIC_KEPT]
    # with this seed the last step finds no informative group in three draws: it trains on
    # nothing, yet logs what it generated and still ends the run with the test evaluation
    last = steps[-1]
    assert (last[M.DYNAMIC_KEPT], last[M.DYNAMIC_ROUNDS], last[M.UPDATE_SKIPPED]) == (0, 3, 1)
    assert last[M.ROLLOUT_SAMPLES] == 3 * 8 == last[M.BUDGET_SAMPLES] - steps[0][M.BUDGET_SAMPLES]
    assert last[M.ZERO_ADVANTAGE] == 1.0
    assert any(r.get("step") == 2 and "test/accuracy" in r for r in rows)


def test_same_seed_and_threads_give_bit_identical_runs(tmp_path):
    """Two fresh runs, two threads each: every metric but the timings is equal to the last
    bit (the shared-prompt update's index_put_ accumulate is order-dependent across threads
    unless torch's deterministic algorithms are on; with --deterministic off this fails)."""
    args = [*TINY, "--max-steps", "3", "--eval-every", "0", "--save-every", "0", "--threads", "2"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "rethinker", "train", "--output-dir", str(tmp_path / f"r{i}"), *args],
            env=dict(os.environ, TQDM_DISABLE="1"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for p in procs:
        assert p.wait(timeout=900) == 0, p.stderr.read()[-3000:]
    a, b = (comparable_rows(tmp_path / f"r{i}") for i in range(2))
    assert len(a) == 4 and a == b


def test_sample_budget_ends_the_run_and_the_test_split_is_scored_first_and_last(tmp_path):
    """--max-samples stops at the first step whose generated responses (every dynamic-
    sampling round counted) reach the budget; the test split is judged at step 0 and at
    that last step only, its per-item verdicts written for paired comparisons."""
    import itertools

    out = tmp_path / "budget"
    res = _run(
        [
            "--output-dir",
            str(out),
            *TINY,
            "--max-steps",
            "10",
            "--max-samples",
            "20",
            "--eval-every",
            "0",
            "--save-every",
            "100",
            "--rollout.dynamic-sampling",
            "on",
            "--rollout.max-sampling-rounds",
            "3",
            "--rethink",
            "off",
            "--data.toy-test-size",
            "6",
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(out)
    steps = [r for r in rows if M.REWARD_MEAN in r]
    budgets = [r[M.BUDGET_SAMPLES] for r in steps]
    assert budgets == list(itertools.accumulate(r[M.ROLLOUT_SAMPLES] for r in steps))
    assert all(r[M.ROLLOUT_SAMPLES] == 8 * r[M.DYNAMIC_ROUNDS] for r in steps)  # 2 queries x G=4 a round
    assert budgets[-1] >= 20 and all(b < 20 for b in budgets[:-1]) and len(steps) < 10
    tests = [r for r in rows if "test/accuracy" in r]
    last = steps[-1]["step"]
    assert [r["step"] for r in tests] == [0, last] and all(r["test/n"] == 6 for r in tests)
    preds = [json.loads(x) for x in (out / f"test-predictions-{last}.jsonl").read_text().splitlines()]
    assert len(preds) == 6 and sum(p["correct"] for p in preds) == round(tests[-1]["test/accuracy"] * 6)
    assert all(p["id"].startswith("toy-test-0-") for p in preds)
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["samples"] == budgets[-1] and summary["final_test"] == tests[-1]["test/accuracy"]
    assert summary["steps"] == last  # the step the budget ended it at, not --max-steps
    # resuming a run whose budget is spent takes no further step
    res = _run(["--resume", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert _rows(out) == rows and json.loads(res.stdout.strip().splitlines()[-1])["steps"] == last


def test_cosine_schedule_ends_at_its_floor():
    import torch

    from rethinker.train.optim import make_scheduler

    cfg = resolve(
        None,
        parse_overrides(
            [
                "--max-steps",
                "20",
                "--optim.scheduler",
                "cosine",
                "--optim.warmup-steps",
                "4",
                "--optim.min-lr-ratio",
                "0.1",
                "--optim.lr",
                "1e-3",
            ]
        ),
    )
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim.lr)
    sched = make_scheduler(opt, cfg)
    lrs = []
    for _ in range(20):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(2.5e-4) and lrs[3] == pytest.approx(1e-3)  # warm-up
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))  # then decays ...
    assert sched.get_last_lr()[0] == pytest.approx(1e-4)  # ... to 10% of the peak, not to zero
    with pytest.raises(ConfigError, match="min_lr_ratio"):
        resolve(None, parse_overrides(["--optim.min-lr-ratio", "1.5"]))


def test_export_streams_a_checkpoint_to_plain_transformers_with_the_same_logits(full_run, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText

    from rethinker.toyworld.model import toy_model_path
    from rethinker.train.shards import load_model_shards

    out, _ = full_run
    dest = tmp_path / "exported"
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "export", str(out / "checkpoint-4"), "--output", str(dest),
         "--max-shard-gb", "0.004"],  # fmt: skip
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    shards = sorted(p.name for p in dest.glob("*.safetensors"))
    assert len(shards) > 1 and (dest / "model.safetensors.index.json").is_file()  # ~4 MB shards
    exported = AutoModelForImageTextToText.from_pretrained(dest).eval()
    policy = AutoModelForImageTextToText.from_pretrained(out / "final").eval()  # the run's own export
    base = AutoModelForImageTextToText.from_pretrained(toy_model_path())
    load_model_shards(out / "checkpoint-4", base, adapters_only=False)  # the policy as trained
    base.eval()
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        want = base(input_ids=ids).logits
        assert torch.equal(exported(input_ids=ids).logits, want)
        assert torch.equal(policy(input_ids=ids).logits, want)
    untrained = AutoModelForImageTextToText.from_pretrained(toy_model_path()).eval()
    with torch.no_grad():
        assert not torch.equal(untrained(input_ids=ids).logits, want)  # training changed the policy
    res = subprocess.run([sys.executable, "-m", "rethinker", "export", str(tmp_path / "none"), "--output", str(dest)],
                         env=ENV, capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 2 and "no whole checkpoint to export" in res.stderr
