"""Checkpoints as untrusted input: a trainer state that would run code is refused, a
damaged or incomplete checkpoint is passed over (or stops the run when named), a full
disk during a save leaves the previous checkpoints whole; checkpoints written before
manifests still resume exactly."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from trainrun import ENV, comparable_rows, tiny_args, to_old_layout

from rethinker.train import checkpoint as ckpt

# released SSR: a replay buffer of encoded prompts in the trainer state
ARGS = tiny_args({"--eval-every": "0", "--ssr": "released"})


def _train(args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--no-progress", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished 4-step run with checkpoint-2 and checkpoint-4 (each with a manifest)."""
    out = tmp_path_factory.mktemp("base") / "run"
    res = _train(["--output-dir", str(out), *ARGS])
    assert res.returncode == 0, res.stderr[-3000:]
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    return out


@pytest.fixture
def run_copy(base_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    return out


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated-weights": ("model/__0_0.distcp", _truncate),
    "missing-shard": ("optimizer/__0_0.distcp", Path.unlink),
    "missing-file": ("tokenizer.json", Path.unlink),
    "flipped-state": (ckpt.STATE_FILE, _flip),
}


def _lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_is_passed_over_naming_the_file(run_copy, damage):
    name, hurt = DAMAGE[damage]
    bad = run_copy / "checkpoint-4" / name
    hurt(bad)
    with pytest.raises(ckpt.CheckpointError, match=name):
        ckpt.verify_checkpoint(run_copy / "checkpoint-4")
    assert ckpt.latest_checkpoint(run_copy) == run_copy / "checkpoint-2"
    res = _train(["--resume", str(run_copy)])
    assert res.returncode == 0, res.stderr[-3000:]
    said = _lines_with(res.stderr, "passing over checkpoint-4")
    assert len(said) == 1 and str(bad) in said[0], res.stderr[-3000:]
    assert f"resumed from {run_copy / 'checkpoint-2'} at step 2" in res.stderr
    assert ckpt.verify_checkpoint(run_copy / "checkpoint-4")  # written again, whole


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_named_explicitly_stops_the_run(run_copy, damage):
    name, hurt = DAMAGE[damage]
    bad = run_copy / "checkpoint-4" / name
    hurt(bad)
    res = _train(["--resume", str(run_copy / "checkpoint-4")])
    assert res.returncode == 2, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1].startswith(f"rethinker train: cannot resume: {bad}")
    assert "Traceback" not in res.stderr


def test_a_whole_checkpoint_named_explicitly_resumes_from_it(run_copy):
    res = _train(["--resume", str(run_copy / "checkpoint-2"), "--max-steps", "3"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed from {run_copy / 'checkpoint-2'} at step 2" in res.stderr
    res = _train(["--resume", str(run_copy / "checkpoint-9")])
    assert res.returncode == 2 and "no such checkpoint folder" in res.stderr


class _RunsCode:
    """Unpickling this runs a shell command (what a hostile trainer_state.pt can hold)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("manifest", ["updated", "absent"])
def test_a_trainer_state_that_would_run_code_is_refused(run_copy, tmp_path, manifest):
    marker = tmp_path / "PWNED"
    state = run_copy / "checkpoint-4" / ckpt.STATE_FILE
    torch.save({"step": 4, "optimizer": _RunsCode(marker)}, state)
    (run_copy / "checkpoint-4" / ckpt.MANIFEST).unlink()
    if manifest == "updated":  # the attacker also rewrote the manifest: the load refuses it
        ckpt.write_manifest(run_copy / "checkpoint-4")
    with pytest.raises(ckpt.CheckpointError, match="refused, it would build posix.system"):
        ckpt.load_state(run_copy / "checkpoint-4")
    res = _train(["--resume", str(run_copy / "checkpoint-4")])
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"rethinker train: cannot resume: {state}: refused, it would build posix.system"), last
    res = _train(["--resume", str(run_copy), "--max-steps", "3"])
    assert res.returncode == 0, res.stderr[-3000:]
    said = _lines_with(res.stderr, "passing over checkpoint-4")
    assert len(said) == 1 and str(state) in said[0]
    assert "resumed from" in res.stderr and "checkpoint-2 at step 2" in res.stderr
    assert not marker.exists()


def test_new_trainer_states_need_no_allowlist(base_run):
    path = base_run / "checkpoint-4" / ckpt.STATE_FILE
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    state = torch.load(path, weights_only=True)  # no allowlist at all
    assert state["step"] == 4 and state["selector"]["buffer"]


def _legacy(state: dict) -> dict:
    """The trainer state as the writer before manifests saved it: numpy's RNG key as an
    ndarray, the SSR buffer's prompts as ``QueryInputs`` (with their ``images`` field)."""
    from rethinker.rollout.inputs import QueryInputs

    def rng(r):
        name, key, *rest = r["numpy"]
        return {**r, "numpy": (name, key.numpy(), *rest)}

    state = dict(state)
    state["rng"] = [rng(r) for r in state["rng"]]
    state["selector"] = dict(state["selector"])
    prompts: dict[int, QueryInputs] = {}  # a group's samples shared one prompt object
    state["selector"]["buffer"] = [
        {**s, "prompt": prompts.setdefault(id(s["prompt"]), QueryInputs(**s["prompt"], images=None))}
        for s in state["selector"]["buffer"]
    ]
    return state


def test_a_checkpoint_of_the_layout_before_dcp_resumes_exactly(base_run, run_copy):
    """checkpoint-2 rewritten as the code before distributed checkpoints wrote it (full
    weights in ``save_pretrained`` format, the full optimizer state in the trainer state):
    the resumed run matches the uninterrupted one, and its last checkpoint is a DCP one."""
    c2 = run_copy / "checkpoint-2"
    to_old_layout(c2)
    assert (c2 / "model.safetensors").is_file() and not (c2 / "model").exists()
    assert "optimizer" in ckpt.load_state(c2) and ckpt.verify_checkpoint(c2) is True
    shutil.rmtree(run_copy / "checkpoint-4")
    res = _train(["--resume", str(run_copy)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed from {c2} at step 2" in res.stderr
    assert comparable_rows(run_copy) == comparable_rows(base_run)
    assert (run_copy / "checkpoint-4" / "model" / ".metadata").is_file()


def test_a_checkpoint_written_before_manifests_resumes_exactly(base_run, run_copy):
    """checkpoint-2 rewritten in the earlier layout (full weights; no manifest; numpy
    arrays and ``QueryInputs`` pickled): the resumed run matches the uninterrupted one."""
    c2 = run_copy / "checkpoint-2"
    to_old_layout(c2)
    old = _legacy(ckpt.load_state(c2))
    assert isinstance(old["rng"][0]["numpy"][1], np.ndarray)
    torch.save(old, c2 / ckpt.STATE_FILE)
    (c2 / ckpt.MANIFEST).unlink()
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(c2 / ckpt.STATE_FILE)
    assert "rethinker.rollout.inputs.QueryInputs" in unsafe and "numpy.ndarray" in unsafe
    assert ckpt.verify_checkpoint(c2) is False  # no manifest: accepted unchecked
    loaded = ckpt.load_state(c2)
    prompt = loaded["selector"]["buffer"][0]["prompt"]
    assert {f.name for f in fields(prompt)} >= {"input_ids", "images"}
    shutil.rmtree(run_copy / "checkpoint-4")
    res = _train(["--resume", str(run_copy)])
    assert res.returncode == 0, res.stderr[-3000:]
    assert comparable_rows(run_copy) == comparable_rows(base_run)


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoints(run_copy):
    weights = (run_copy / "checkpoint-4" / "model" / "__0_0.distcp").stat().st_size
    limit = 2 << 20  # above the logs and the config, below the weights
    assert weights > limit
    res = _train(["--resume", str(run_copy), "--max-steps", "6"], preexec_fn=_limit_file_size(limit))
    assert res.returncode == 1, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last == (
        "rethinker train: could not write checkpoint-6 (a write was cut short: no space left on device or file too "
        "large): the previous checkpoints are intact; "
        f"free space and resume with --resume {run_copy}"
    ), res.stderr[-3000:]
    assert not list(run_copy.glob(".tmp-checkpoint-*"))
    assert [p.name for p in ckpt.list_checkpoints(run_copy)] == ["checkpoint-2", "checkpoint-4"]
    assert ckpt.verify_checkpoint(run_copy / "checkpoint-4") is True
    res = _train(["--resume", str(run_copy), "--max-steps", "6"])  # space freed: it goes on
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stderr and "checkpoint-4 at step 4" in res.stderr


# ---------------------------------------------------------------- without a trainer run


class _Writes:
    """A stand-in model or processor whose ``save_pretrained`` writes one file (or fails)."""

    def __init__(self, name: str, fail: OSError | None = None):
        self.name, self.fail = name, fail

    def save_pretrained(self, folder, state_dict=None):
        if self.fail is not None:
            raise self.fail
        (Path(folder) / self.name).write_bytes(os.urandom(64))


def _save(run_dir: Path, step: int, keep: int = 2, fail: OSError | None = None) -> Path:
    return ckpt.save_checkpoint(
        run_dir, step, _Writes("model.safetensors", fail), _Writes("tokenizer.json"), {"x": 1}, keep=keep
    )


def test_pruning_never_deletes_the_last_whole_checkpoint_for_newer_damaged_ones(tmp_path):
    for step in (2, 3, 4):
        _save(tmp_path, step, keep=0)
    for step in (3, 4):  # a crash or a bad disk damaged the newest two
        _flip(tmp_path / f"checkpoint-{step}" / "model.safetensors")
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    found = ckpt.resume_point(tmp_path, say=lambda line: None)
    assert found is not None and found[0] == tmp_path / "checkpoint-2"
    _save(tmp_path, 3, keep=1)  # the resumed run saves its next step, keeping one
    assert ckpt.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-3"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-3", "checkpoint-4"]


def test_no_whole_checkpoint_is_an_error_naming_each(tmp_path):
    _save(tmp_path, 2)
    (tmp_path / "checkpoint-2" / "tokenizer.json").unlink()
    said: list[str] = []
    with pytest.raises(ckpt.CheckpointError, match="no whole checkpoint"):
        ckpt.resume_point(tmp_path, say=said.append)
    assert said == [f"passing over checkpoint-2: {tmp_path / 'checkpoint-2' / 'tokenizer.json'}: missing"]
    assert ckpt.resume_point(tmp_path / "empty") is None


def test_a_failed_write_leaves_no_temporary_folder(tmp_path):
    _save(tmp_path, 2)
    with pytest.raises(ckpt.CheckpointWriteError, match=r"could not write checkpoint-4 \(No space left on device\)"):
        _save(tmp_path, 4, fail=OSError(28, "No space left on device"))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]
    assert ckpt.verify_checkpoint(tmp_path / "checkpoint-2") is True


@pytest.mark.parametrize(
    "manifest",
    [
        "not json",
        json.dumps({"files": {"../outside": {"size": 1, "sha256": "0"}}}),
        json.dumps({"files": {"tokenizer.json": {"size": "big"}}}),
        json.dumps(["files"]),
    ],
)
def test_a_hostile_manifest_is_a_clear_error(tmp_path, manifest):
    folder = _save(tmp_path, 2)
    (folder / ckpt.MANIFEST).write_text(manifest)
    with pytest.raises(ckpt.CheckpointError, match=str(folder)):
        ckpt.verify_checkpoint(folder)


def test_split_resume_names_a_run_folder_or_one_checkpoint(tmp_path):
    assert ckpt.split_resume(tmp_path) == (tmp_path, None)
    assert ckpt.split_resume(tmp_path / "checkpoint-6") == (tmp_path, tmp_path / "checkpoint-6")


def test_samples_that_shared_a_prompt_share_it_after_a_checkpoint(tmp_path):
    """The update encodes a prompt shared by several samples once: a resumed buffer must
    share its prompts as the live one did, or its arithmetic (and the metrics) change."""
    from rethinker.algo.sample import Judgement, Sample
    from rethinker.rollout.inputs import QueryInputs

    shared = QueryInputs(input_ids=torch.arange(5), mm_token_type_ids=torch.zeros(5, dtype=torch.long), images=["x"])
    other = QueryInputs(input_ids=torch.arange(3), mm_token_type_ids=torch.zeros(3, dtype=torch.long))
    judged = Judgement(text="t", finished=True, rule="correct")
    samples = [
        Sample(advantage=a, reward=1.0, prompt=p, judgement=judged) for a, p in [(1, shared), (-1, shared), (1, other)]
    ]
    memo: dict = {}
    folder = ckpt.save_checkpoint(
        tmp_path,
        1,
        _Writes("model.safetensors"),
        _Writes("tokenizer.json"),
        {"buffer": [s.to_dict(memo) for s in samples]},
    )
    assert torch.serialization.get_unsafe_globals_in_checkpoint(folder / ckpt.STATE_FILE) == []
    built: dict = {}
    back = [Sample.from_dict(d, built) for d in ckpt.load_state(folder)["buffer"]]
    assert back[0].prompt is back[1].prompt and back[2].prompt is not back[0].prompt
    assert torch.equal(back[0].prompt.input_ids, shared.input_ids) and back[0].prompt.images is None
    assert back[0].judgement == judged


# ---------------------------------------------------------------- distributed checkpoints


def _rewrite_index(folder: Path, edit) -> None:
    """The DCP index of ``folder`` changed by ``edit(metadata)``, the manifest updated (a
    checkpoint written that way, not damaged on the way)."""
    import pickle

    path = folder / ".metadata"
    md = pickle.loads(path.read_bytes())
    edit(md)
    path.write_bytes(pickle.dumps(md))
    (folder.parent / ckpt.MANIFEST).unlink()
    ckpt.write_manifest(folder.parent)


def test_a_checkpoint_of_another_model_names_the_parameter_and_both_shapes(run_copy):
    name = "model.language_model.norm.weight"

    def widen(md):  # as if the checkpoint's model had a wider hidden size
        md.state_dict_metadata[name].size = torch.Size([96])

    _rewrite_index(run_copy / "checkpoint-4" / "model", widen)
    res = _train(["--resume", str(run_copy / "checkpoint-4")])
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last == (
        f"rethinker train: cannot resume: {run_copy / 'checkpoint-4' / 'model'}: {name} has shape (96,) in the "
        "checkpoint, (192,) in this run's model (a checkpoint of another model?)"
    ), res.stderr[-3000:]
    assert "Traceback" not in res.stderr


def test_a_dcp_index_that_would_run_code_is_refused(run_copy, tmp_path):
    from rethinker.train.shards import SafeReader

    marker = tmp_path / "PWNED"
    folder = run_copy / "checkpoint-4" / "optimizer"
    (folder / ".metadata").write_bytes(__import__("pickle").dumps(_RunsCode(marker)))
    with pytest.raises(ckpt.CheckpointError, match=r"refused, it would build posix\.system"):
        SafeReader(folder).read_metadata()
    (run_copy / "checkpoint-4" / ckpt.MANIFEST).unlink()
    ckpt.write_manifest(run_copy / "checkpoint-4")  # the attacker rewrote the manifest too
    res = _train(["--resume", str(run_copy / "checkpoint-4")])
    assert res.returncode == 2, res.stderr[-3000:]
    assert (
        res.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"rethinker train: cannot resume: {folder / '.metadata'}: not a DCP index that loads safely (refused"
        )
    ), res.stderr[-3000:]
    assert not marker.exists()
