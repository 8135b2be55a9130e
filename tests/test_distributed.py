"""Two processes (torchrun, FSDP2 on gloo) against one: the same update, and a short run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from trainrun import comparable_rows

from rethinker import metric_names as M

SCRIPT = Path(__file__).parent / "scripts" / "dist_update.py"


def _env():
    # PYTHONFAULTHANDLER: a rank that aborts (SIGABRT, SIGSEGV) prints every thread's Python stack
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _torchrun(args, nproc=2, timeout=600):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_port",
        "0",
        "--rdzv_backend",
        "c10d",
        "--rdzv_endpoint",
        "localhost:0",
        *args,
    ]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "lora, mini, kl",
    [(0, 0, 0), (4, 0, 0), (0, 4, 0), (0, 0, 0.5), (4, 0, 0.5)],
    ids=["full", "lora", "mini-batches", "kl-sharded-reference", "lora-kl-adapters-off"],
)
def test_two_process_update_matches_single_process(tmp_path, lora, mini, kl):
    """Full weights, LoRA adapters on a frozen base (FSDP2 shards both alike), four
    mini-batches (the behaviour log-probs first, run on the shards in lockstep: the ranks
    hold 7 and 6 samples, so one runs a filler forward), and a KL term to the starting
    model: a frozen copy sharded like the policy (its forwards in lockstep, the filler's
    too), or, with LoRA, the policy with its adapters off."""
    single, double = tmp_path / "one.pt", tmp_path / "two.pt"
    extra = (
        [str(lora), str(mini), str(kl)] if kl else ([str(lora), str(mini)] if mini else ([str(lora)] if lora else []))
    )
    r1 = subprocess.run(
        [sys.executable, str(SCRIPT), str(single), *extra], env=_env(), capture_output=True, text=True, timeout=600
    )
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = _torchrun([str(SCRIPT), str(double), *extra])
    assert r2.returncode == 0, (r2.stdout + r2.stderr)[-3000:]
    a, b = torch.load(single, weights_only=False), torch.load(double, weights_only=False)
    assert a["n"] == b["n"] == 13  # odd: the ranks get 7 and 6
    # every decoder layer, the vision tower and each of its blocks, and the root: one unit each
    assert b["units"] == 1 + 1 + 2 + 4
    # the loss and its statistics are the global ones in both
    for key in (M.LOSS_POLICY, M.UPDATE_TOKENS, "grad_norm", M.APPROX_KL, *([M.LOSS_KL] if kl else [])):
        assert b["stats"][key] == pytest.approx(a["stats"][key], rel=1e-5, abs=1e-5), key
    assert a["stats"]["grad_norm"] > 0
    if kl:  # the policy sits off its reference: a real term; the frozen copy is sharded like the policy
        assert a["stats"][M.LOSS_KL] > 1e-4
        assert b["ref_units"] == (b["units"] if lora else 1 + 1 + 2 + 4) and a["ref_units"] == a["units"]
    # SGD with lr 1: weights after = weights before - gradient, so equal weights = equal gradients
    assert a["weights"].keys() == b["weights"].keys()
    from rethinker.toyworld.model import load_toy

    base = load_toy("cpu")[0].state_dict()
    moved = []
    for k in a["weights"]:
        torch.testing.assert_close(b["weights"][k], a["weights"][k], atol=1e-5, rtol=0, msg=k)
        plain = k.removeprefix("base_model.model.").replace(".base_layer.", ".")
        if plain in base:
            moved += [k] * int((a["weights"][k] - base[plain]).abs().max() > 1e-6)
    if lora:  # only the adapters moved: the base stays frozen in both
        assert not moved and sum("lora_" in k for k in a["weights"]) == 2 * 7 * 4
        assert b["lora_moved"] == 2 * 7 * 4  # A and B of 7 projections in 4 decoder layers
    else:
        assert len(moved) > 10  # the update really changed many tensors


def _resume_in_one_process_to_step_3(out: Path) -> None:
    """Continue the run in ``out`` (2 steps, written by 2 ranks) in one process to step 3."""
    r = subprocess.run(
        [sys.executable, "-m", "rethinker", "train", "--resume", str(out), "--max-steps", "3"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if M.REWARD_MEAN in row] == [1, 2, 3]


def test_two_process_train_end_to_end_and_resume_at_another_world_size(tmp_path):
    out = tmp_path / "run"
    flags = [
        "--output-dir",
        str(out),
        "--max-steps",
        "2",
        "--eval-every",
        "2",
        "--save-every",
        "2",
        "--seed",
        "1",
        "--rollout.queries-per-step",
        "4",
        "--rollout.group-size",
        "4",
        "--rollout.max-new-tokens",
        "16",
        "--data.toy-train-size",
        "32",
        "--data.toy-eval-size",
        "8",
        "--data.toy-test-size",
        "0",
        "--optim.micro-batch-size",
        "4",
        "--threads",
        "1",
    ]
    r = _torchrun(["-m", "rethinker", "train", *flags])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [row for row in rows if M.REWARD_MEAN in row]
    assert [row["step"] for row in train_rows] == [1, 2]  # one line per step, written once
    assert all(row[M.SSR_SELECTED] in (0.0, 16.0) for row in train_rows)  # 4 queries x 4 samples, global
    evals = [row for row in rows if row.get("eval/n")]
    assert [row["eval/n"] for row in evals] == [8, 8]  # the eval split is shared out, then gathered
    ckpt = out / "checkpoint-2"
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.from_pretrained(out / "final")  # full weights, loadable without FSDP
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    for part in ("model", "optimizer"):  # each rank wrote its own shards
        assert sorted(p.name for p in (ckpt / part).iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    _assert_resumed_as_saved(ckpt, tmp_path / "resumed.pt", nproc=1)  # 2 -> 1: DCP reshards
    # continue the 2-process run in one process
    _resume_in_one_process_to_step_3(out)


def _saved_moments(ckpt: Path) -> dict[str, torch.Tensor]:
    """The optimizer state of a distributed checkpoint, read whole in this process."""
    from rethinker.train.shards import SafeReader, dcp_load

    reader = SafeReader(ckpt / "optimizer")
    md = reader.read_metadata().state_dict_metadata
    state = {k: torch.empty(tuple(v.size), dtype=v.properties.dtype) for k, v in md.items()}
    dcp_load(state, reader)
    return state


def _assert_resumed_as_saved(ckpt: Path, dump: Path, nproc: int) -> None:
    """A run set up from ``ckpt`` with ``nproc`` processes restores its step, its data
    position and every optimizer moment (gathered) exactly as saved."""
    script = [str(Path(__file__).parent / "scripts" / "dcp_resumed_state.py"), str(ckpt.parent), str(dump)]
    if nproc == 1:
        r = subprocess.run([sys.executable, *script], env=_env(), capture_output=True, text=True, timeout=600)
    else:
        r = _torchrun(script, nproc=nproc)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    got, saved = torch.load(dump, weights_only=True), torch.load(ckpt / "trainer_state.pt", weights_only=True)
    assert got["world"] == nproc != saved["world_size"]
    assert got["step"] == saved["step"] and got["sampler"] == saved["sampler"]
    moments = _saved_moments(ckpt)
    assert len(moments) == 3 * len(got["state"]) > 30  # step, exp_avg, exp_avg_sq per trained parameter
    for name, s in got["state"].items():
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s[k], moments[f"state.{name}.{k}"]), (name, k)
    assert any(float(s["exp_avg_sq"].abs().max()) > 0 for s in got["state"].values())


TRAIN_FLAGS = ["--max-steps", "2", "--eval-every", "0", "--save-every", "2", "--seed", "1",
               "--rollout.queries-per-step", "4", "--rollout.group-size", "4", "--rollout.max-new-tokens", "16",
               "--data.toy-train-size", "32", "--data.toy-eval-size", "8", "--data.toy-test-size", "0",
               "--optim.micro-batch-size", "4", "--threads", "1"]  # fmt: skip


def test_a_one_process_checkpoint_resumes_on_two_ranks(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "rethinker", "train", "--output-dir", str(out), *TRAIN_FLAGS],
                       env=_env(), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_resumed_as_saved(out / "checkpoint-2", tmp_path / "resumed.pt", nproc=2)  # 1 -> 2: DCP reshards
    r = _torchrun(["-m", "rethinker", "train", "--resume", str(out), "--max-steps", "3"])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if M.REWARD_MEAN in row] == [1, 2, 3]
    assert sorted(p.name for p in (out / "checkpoint-3" / "model").iterdir())[1:] == ["__0_0.distcp", "__1_0.distcp"]


def test_a_save_killed_part_way_on_one_rank_keeps_the_previous_checkpoint_and_resumes_exactly(tmp_path):
    """Rank 1 is killed (SIGKILL) between writing its model and its optimizer shards of
    checkpoint-4: checkpoint-2 stays whole, the torn folder is ignored, and the 2-rank
    resume from checkpoint-2 matches an uninterrupted 2-rank run."""
    from rethinker.train import checkpoint as ckpt
    from rethinker.train.shards import PAUSE_ENV

    flags = [*TRAIN_FLAGS, "--max-steps", "4", "--save-every", "2"]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    r = _torchrun(["-m", "rethinker", "train", "--output-dir", str(ref), *flags])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0",
           "-m", "rethinker", "train", "--output-dir", str(out), *flags]  # fmt: skip
    env = dict(_env(), **{PAUSE_ENV: "2"})
    agent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rank1 = _worker_pid(agent, 1)
    torn = out / ".tmp-checkpoint-4" / "model" / ".metadata"
    deadline = time.time() + 600
    while not torn.exists():  # every rank wrote its model shards and now waits
        assert agent.poll() is None and time.time() < deadline, agent.stderr.read()[-4000:]
        time.sleep(0.02)
    os.kill(rank1, signal.SIGKILL)
    agent.communicate(timeout=600)
    assert agent.returncode != 0
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-2"]
    assert ckpt.verify_checkpoint(out / "checkpoint-2") is True
    assert not (out / ".tmp-checkpoint-4" / "optimizer" / ".metadata").exists()  # torn, ignored
    r = _torchrun(["-m", "rethinker", "train", "--resume", str(out)])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "resumed from" in r.stderr and "checkpoint-2 at step 2" in r.stderr
    assert comparable_rows(out) == comparable_rows(ref)


def _worker_pid(agent: subprocess.Popen, rank: int, timeout: float = 120) -> int:
    """The pid of torchrun's worker of ``rank`` (a child of its agent, RANK in its environment)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for child in Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.1)
    raise AssertionError(f"no worker of rank {rank}")


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_and_resumes_exactly(tmp_path):
    flags = ["--max-steps", "5", "--eval-every", "0", "--save-every", "100", "--seed", "1",
             "--rollout.queries-per-step", "4", "--rollout.group-size", "4", "--rollout.max-new-tokens", "16",
             "--data.toy-train-size", "32", "--data.toy-eval-size", "8", "--data.toy-test-size", "0",
             "--optim.micro-batch-size", "4", "--threads", "1"]  # fmt: skip
    ref, out = tmp_path / "ref", tmp_path / "stopped"
    r = _torchrun(["-m", "rethinker", "train", "--output-dir", str(ref), *flags])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0",
           "-m", "rethinker", "train", "--output-dir", str(out), *flags]  # fmt: skip
    agent = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rank1 = _worker_pid(agent, 1)
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and '"step": 2' in metrics.read_text()):
        assert agent.poll() is None, agent.stderr.read()[-4000:]
        time.sleep(0.05)
    os.kill(rank1, signal.SIGTERM)  # rank 1 only: rank 0 must stop with it
    _, err = agent.communicate(timeout=600)
    assert "exitcode  : 75" in err or "exitcode: 75" in err or agent.returncode == 75, err[-4000:]
    stopped = [line for line in err.splitlines() if "rethinker train: stopped by SIGTERM" in line]
    assert len(stopped) == 1, err[-4000:]  # the main rank says so, once
    saved = [p.name for p in out.glob("checkpoint-*")]
    assert len(saved) == 1 and saved[0] in stopped[0], (saved, stopped)
    r = _torchrun(["-m", "rethinker", "train", "--resume", str(out)])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    keep = ("time/", "tokens_per_s", "memory/")

    def rows(d):
        lines = (d / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if not any(t in k for t in keep)} for x in lines]

    assert rows(out) == rows(ref)


def test_two_process_lora_trains_exports_merged_and_resumes_in_one_process(tmp_path):
    """LoRA under torchrun: the exported adapters and merged weights agree (PEFT's own
    merge of the exported adapters), only the projections moved, and a one-process resume
    of the 2-rank adapter checkpoint."""
    pytest.importorskip("peft")
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from rethinker.toyworld.model import load_toy

    out = tmp_path / "run"
    flags = ["--output-dir", str(out), "--max-steps", "2", "--eval-every", "2", "--save-every", "1", "--seed", "2"]
    flags += ["--lora-rank", "4", "--rollout.queries-per-step", "4", "--rollout.group-size", "4"]
    flags += ["--rollout.max-new-tokens", "48", "--data.toy-train-size", "16", "--data.toy-eval-size", "8"]
    flags += ["--data.toy-test-size", "0", "--optim.lr", "1e-2", "--threads", "1", "--ssr", "filter"]
    r = _torchrun(["-m", "rethinker", "train", *flags])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(row.get(M.OPTIMIZER_STEPS, 0) for row in rows) >= 1
    final = out / "final"
    assert (final / "adapter" / "adapter_config.json").is_file() and (out / "merged").resolve() == final.resolve()
    merged = AutoModelForImageTextToText.from_pretrained(final).state_dict()
    reference = PeftModel.from_pretrained(load_toy("cpu")[0], str(final / "adapter")).merge_and_unload().state_dict()
    base = load_toy("cpu")[0].state_dict()
    assert merged.keys() == reference.keys()
    for k in merged:
        torch.testing.assert_close(merged[k], reference[k], atol=1e-6, rtol=0, msg=k)
    changed = [k for k in merged if not torch.equal(merged[k], base[k])]
    assert changed and all("language_model.layers" in k and k.endswith("proj.weight") for k in changed)
    _resume_in_one_process_to_step_3(out)


@pytest.mark.parametrize("lora", [0, 4], ids=["full", "lora"])
def test_no_rank_but_rank_0_reads_the_policy_and_none_holds_it_whole(tmp_path, lora):
    """Start-up under torchrun (``scripts/meta_setup.py``): rank 1 builds the policy on the
    meta device and never calls ``from_pretrained``; no sharded parameter is held whole on
    any rank; the gathered weights equal the toy policy's (LoRA: the adapters one process
    draws), the rotary buffers are right on both ranks and rank 1's random stream is where
    reading the weights leaves it (exact metrics). A resume from a DCP checkpoint reads the
    base on no rank (LoRA: rank 0 reads the frozen base the checkpoint leaves out)."""
    r = _torchrun([str(SCRIPT.parent / "meta_setup.py"), str(tmp_path), str(lora)])
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rows = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert [x["fresh_reads"] for x in rows] == [1, 0]
    assert [x["dcp_reads"] for x in rows] == ([1, 0] if lora else [0, 0])
    for x in rows:
        assert x["whole_sharded_params"] == 0 and x["params"] > 0
        assert x["same_weights"] and x["same_weights_after_dcp"] and x["same_buffers"] and x["rng_as_if_read"]
        assert any(b.endswith("rotary_emb.inv_freq") for b in x["buffers"])
