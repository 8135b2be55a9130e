"""The ``report_to`` sinks with the real libraries: a tiny training run logs to tensorboard
and to wandb (offline, no network), and both are read back from disk: the scalars of every
step equal ``metrics.jsonl``'s, the sample table of every step arrived whole."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from trainrun import ENV, tiny_args

from rethinker import metric_names as M
from rethinker.report.samples import TABLE_COLUMNS, push_table, read_samples, sample_rows
from rethinker.train.metrics import MetricsLogger

pytest.importorskip("tensorboard", reason="the test extra installs tensorboard")
wandb = pytest.importorskip("wandb", reason="the test extra installs wandb")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

EVAL_ACCURACY = M.key(M.SPLIT_ACCURACY, split="eval")
STEPS = 3
ARGS = tiny_args(
    {"--max-steps": str(STEPS), "--save-every": "0", "--log-samples": "2", "--report-to": "tensorboard,wandb"}
)


def _wandb_env(tmp: Path) -> dict[str, str]:
    """Offline and silent, every wandb folder (cache, staging, settings) under ``tmp``."""
    env = {k: v for k, v in ENV.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    for var, sub in (
        ("WANDB_DIR", "dir"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    return env


# -- reading back -------------------------------------------------------------------------


def wandb_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` transaction log (wandb ships no Python reader
    of its own any more): a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
    LevelDB-log framing: 32 KiB blocks of chunks (crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    import zlib

    from wandb.proto import wandb_internal_pb2

    raw = path.read_bytes()
    assert raw[:4] == b":W&B" and struct.unpack("<HB", raw[4:7]) == (0xBEE1, 0), raw[:7]
    block, pos, parts, out = 32768, 7, b"", []
    while pos + 7 <= len(raw):
        left = block - pos % block
        crc, n, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if left < 7 or (crc, n, kind) == (0, 0, 0):  # a block's zero padding
            pos += left
            continue
        data = raw[pos + 7 : pos + 7 + n]
        assert zlib.crc32(data, zlib.crc32(bytes([kind]))) == crc, f"bad chunk at byte {pos}"
        pos += 7 + n
        parts = data if kind in (1, 2) else parts + data
        if kind in (1, 4):
            out.append(wandb_internal_pb2.Record.FromString(parts))
    return out


def wandb_history(records) -> dict[int, dict]:
    """step -> the history row (nested keys, e.g. a table's fields, as nested dicts)."""
    rows: dict[int, dict] = {}
    for r in records:
        if r.WhichOneof("record_type") != "history":
            continue
        row = rows.setdefault(r.history.step.num, {})
        for item in r.history.item:
            keys = list(item.nested_key) or [item.key]
            d = row
            for k in keys[:-1]:
                d = d.setdefault(k, {})
            d[keys[-1]] = json.loads(item.value_json)
    return rows


def wandb_config(records) -> dict:
    out = {}
    for r in records:
        if r.WhichOneof("record_type") in ("config", "run"):
            cfg = r.config if r.WhichOneof("record_type") == "config" else r.run.config
            for item in cfg.update:
                out[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out


def tensorboard_run(logdir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def tensorboard_text(acc: EventAccumulator, tag: str = "samples") -> dict[int, str]:
    return {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors(f"{tag}/text_summary")}


def merged_metrics(run_dir: Path) -> dict[int, dict]:
    """step -> every number ``metrics.jsonl`` logged at that step (its rows merged)."""
    out: dict[int, dict] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        nums = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != M.STEP}
        out.setdefault(row[M.STEP], {}).update(nums)
    return out


# -- the end-to-end run -------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sinks")
    out = tmp / "run"
    env = _wandb_env(tmp / "wandb")
    res = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--output-dir", str(out), *ARGS],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out, tmp


KEYS = (M.REWARD_MEAN, M.LOSS_POLICY, M.EFFECTIVE_BEFORE_SSR, M.LR)


def test_tensorboard_scalars_and_sample_table_read_back(logged_run):
    out, _ = logged_run
    want = merged_metrics(out)
    acc = tensorboard_run(out / "tensorboard")
    scalars = set(acc.Tags()["scalars"])
    for key in (*KEYS, EVAL_ACCURACY):
        assert key in scalars, key
    for key in KEYS:
        got = {e.step: e.value for e in acc.Scalars(key)}
        assert got == pytest.approx({s: r[key] for s, r in want.items() if key in r}, rel=1e-6), key
    assert sorted(e.step for e in acc.Scalars(M.REWARD_MEAN)) == list(range(1, STEPS + 1))
    # the evaluation's accuracy once per evaluated step (the step row repeats it)
    evals = acc.Scalars(EVAL_ACCURACY)
    assert [e.step for e in evals] == [0, 2, STEPS]
    assert [e.value for e in evals] == pytest.approx([want[e.step][EVAL_ACCURACY] for e in evals], rel=1e-6)
    # every scalar of metrics.jsonl arrived, at its step
    for key in scalars:
        got = {e.step: e.value for e in acc.Scalars(key)}
        assert got == pytest.approx({s: r[key] for s, r in want.items() if r.get(key) is not None}, rel=1e-5), key
    # the sample table of every step: a markdown table, one line per response
    samples = read_samples(out)
    text = tensorboard_text(acc)
    assert sorted(text) == list(range(1, STEPS + 1))
    for step, table in text.items():
        lines = table.splitlines()
        assert lines[0] == "| " + " | ".join(TABLE_COLUMNS) + " |"
        rows = [r for r in samples if r["step"] == step]
        assert len(rows) == 2 and len(lines) - 2 == sum(len(r["responses"]) for r in rows) == 8
        assert lines[2].startswith(f"| {step} | 0 | {rows[0]['id']} |")


def test_wandb_offline_run_reads_back(logged_run):
    out, tmp = logged_run
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    records = wandb_records(runs[0])
    kinds = [r.WhichOneof("record_type") for r in records]
    assert kinds[0] == "header" and "run" in kinds and kinds[-1] == "exit"
    # the run's config is the training config
    config = wandb_config(records)
    assert (
        config["seed"] == 3
        and config["rollout"]["group_size"] == 4
        and config["report_to"]
        == [
            "tensorboard",
            "wandb",
        ]
    )
    want = merged_metrics(out)
    hist = wandb_history(records)
    assert sorted(hist) == list(range(0, STEPS + 1))
    for step, row in hist.items():
        assert row["_step"] == step
        for key, value in want[step].items():
            if value is not None:
                assert row[key] == value, (step, key)
    assert [s for s in hist if EVAL_ACCURACY in hist[s]] == [0, 2, STEPS]
    # the sample table of every step: the columns, one row per response, as in samples.jsonl
    samples = read_samples(out)
    run_files = runs[0].parent / "files"
    for step in range(1, STEPS + 1):
        meta = hist[step]["samples"]
        assert meta["_type"] == "table-file" and meta["ncols"] == len(TABLE_COLUMNS) and meta["nrows"] == 8
        table = json.loads((run_files / meta["path"]).read_text())
        assert table["columns"] == TABLE_COLUMNS
        responses = [x for r in samples if r["step"] == step for x in r["responses"]]
        col = TABLE_COLUMNS.index
        assert [row[col("step")] for row in table["data"]] == [step] * 8
        assert [row[col("response")] for row in table["data"]] == [x["text"] for x in responses]
        assert [row[col("ssr_draws")] for row in table["data"]] == [x["ssr_draws"] for x in responses]
    assert "samples" not in hist[0]


# -- the sinks on their own ---------------------------------------------------------------


def test_resumed_tensorboard_hides_what_the_killed_attempt_logged_after_its_checkpoint(tmp_path):
    first = MetricsLogger(tmp_path, ["tensorboard"])
    for step in range(1, 5):
        first.log({M.STEP: step, M.REWARD_MEAN: float(step)})
    first.close()
    resumed = MetricsLogger(tmp_path, ["tensorboard"], resume_step=2)
    resumed.log({M.STEP: 3, M.REWARD_MEAN: 30.0})
    resumed.close()
    acc = tensorboard_run(tmp_path / "tensorboard")
    assert [(e.step, e.value) for e in acc.Scalars(M.REWARD_MEAN)] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    # a restart from step 0 (resume_step -1) hides everything
    MetricsLogger(tmp_path, ["tensorboard"], resume_step=-1).close()
    assert tensorboard_run(tmp_path / "tensorboard").Scalars(M.REWARD_MEAN) == []


def test_sample_table_text_escapes_cells(tmp_path):
    from test_report import group, record
    from torch.utils.tensorboard import SummaryWriter

    rows = sample_rows(3, [record(0)], group(0, 2, [1, 0], texts={0: "a | b\nc"}), [0], 1)
    writer = SummaryWriter(str(tmp_path))
    push_table("tensorboard", writer, 3, rows)
    writer.close()
    text = tensorboard_text(tensorboard_run(tmp_path))
    lines = text[3].splitlines()
    assert len(lines) == 4 and "| a \\| b c |" in lines[2]
