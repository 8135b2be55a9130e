"""Checkpoints: atomic, verified, loadable with plain ``transformers``, resumable exactly.

``DIR/checkpoint-STEP/`` holds the policy and processor in ``save_pretrained`` format,
``trainer_state.pt`` (optimizer, scheduler, every RNG, data position, SSR state) and
``manifest.json`` (each file's size and sha256). A checkpoint is written into a temporary
folder and renamed into place, so a run killed mid-write leaves either the previous
checkpoints or the new one, never a torn one; a write that fails (a full disk) removes
the temporary folder and raises ``CheckpointWriteError``.

Checkpoint files are untrusted input. The trainer state holds only tensors and plain
Python values and is read with ``torch.load(weights_only=True)``, which builds no object
it does not know and so runs no code; the few numpy and ``QueryInputs`` types that
checkpoints written before the manifest held are allowlisted for those. A checkpoint
whose files differ from its manifest, or whose state does not load that way, raises a
``CheckpointError`` naming the file; resuming passes over it to the newest whole one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"
MANIFEST = "manifest.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(Exception):
    """A checkpoint that cannot be used (damaged, incomplete or unsafe); the message names the file."""


class CheckpointWriteError(Exception):
    """A checkpoint could not be written (e.g. the disk is full); the previous ones are intact."""


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np_state = state["numpy"]
    if isinstance(np_state[1], torch.Tensor):  # a checkpoint keeps numpy's key as a tensor
        np_state = (np_state[0], np_state[1].numpy(), *np_state[2:])
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(obj: Any, memo: dict[int, Any] | None = None) -> Any:
    """``obj`` with numpy arrays and scalars as tensors and Python numbers (what
    ``torch.load(weights_only=True)`` reads without an allowlist). A container met twice
    is converted once, so what was shared stays shared (the SSR buffer's prompts)."""
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, dict):
        out: Any = {k: _plain(v, memo) for k, v in obj.items()}
    elif isinstance(obj, (list, tuple)):
        out = type(obj)(_plain(v, memo) for v in obj)
    elif isinstance(obj, np.ndarray):
        out = torch.from_numpy(obj.copy())
    elif isinstance(obj, np.generic):
        out = obj.item()
    else:
        return obj
    memo[id(obj)] = out
    return out


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """``manifest.json``: the size and sha256 of every other file in ``folder``."""
    files = {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({"version": 1, "files": files}, indent=1) + "\n", encoding="utf-8")


def _write(tmp: Path, step: int, model, processor, state: dict[str, Any], model_state: dict[str, Any] | None) -> None:
    if model_state is not None:
        model.save_pretrained(tmp, state_dict=model_state)
    else:
        model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    write_state(tmp, {"rng": rng_state(), **state}, step)


def write_state(folder: Path, state: dict[str, Any], step: int) -> None:
    """``trainer_state.pt``: ``state`` as plain values and tensors (``_plain``) with its step."""
    torch.save(_plain({**state, "step": step}), folder / STATE_FILE)


def write_failures() -> tuple[type[BaseException], ...]:
    """What a write that cannot go on raises: ``OSError`` from Python, ``RuntimeError``
    from ``torch.save``, ``SafetensorError`` from the weights' writer, ``CheckpointException``
    from DCP (a ``BaseException``)."""
    from safetensors import SafetensorError
    from torch.distributed.checkpoint import CheckpointException

    return (OSError, RuntimeError, SafetensorError, CheckpointException)


def _reason(exc: BaseException) -> str:
    """A write error in words: the OS's (``File too large``, ``No space left on device``)
    where the error carries an errno, directly or in its text, else its first line. A
    failed DCP write (``CheckpointException``) is told by its first rank's error."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        first = failures[min(failures)]
        exc = first[0] if isinstance(first, tuple) else first
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    m = re.search(r"os error (\d+)", str(exc))  # safetensors: "I/O error: ... (os error 27)"
    if m:
        return os.strerror(int(m.group(1)))
    if "unexpected pos" in str(exc):  # torch.save's archive writer (DCP's shards) after a short write
        return "a write was cut short: no space left on device or file too large"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model,
    processor,
    state: dict[str, Any],
    keep: int = 2,
    model_state: dict[str, Any] | None = None,
) -> Path:
    """The layout before distributed checkpoints (kept to write test fixtures of it and
    read by ``load_state``): ``checkpoint-STEP`` with the weights in ``save_pretrained``
    format and the full optimizer state in the trainer state, written atomically; the
    newest ``keep`` up to it are kept. ``model_state``: a full state dict to write instead
    of the model's own. ``CheckpointWriteError`` when a file cannot be written."""
    start_checkpoint(run_dir, step)
    return finish_checkpoint(
        run_dir, step, lambda tmp: _write(tmp, step, model, processor, state, model_state), keep=keep
    )


def temp_folder(run_dir: str | Path, step: int) -> Path:
    """Where ``checkpoint-STEP`` is written before it is renamed into place."""
    return Path(run_dir) / f".tmp-checkpoint-{step}"


def _write_error(run_dir: Path, step: int, exc: BaseException) -> CheckpointWriteError:
    shutil.rmtree(temp_folder(run_dir, step), ignore_errors=True)
    return CheckpointWriteError(
        f"could not write checkpoint-{step} ({_reason(exc)}): the previous checkpoints are intact; "
        f"free space and resume with --resume {run_dir}"
    )


def start_checkpoint(run_dir: str | Path, step: int) -> Path:
    """An empty temporary folder for ``checkpoint-STEP`` (what an earlier attempt left there is removed)."""
    run_dir, tmp = Path(run_dir), temp_folder(run_dir, step)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    except write_failures() as exc:
        raise _write_error(run_dir, step, exc) from exc
    return tmp


def abandon_checkpoint(run_dir: str | Path, step: int, exc: BaseException) -> CheckpointWriteError:
    """The temporary folder removed; the error to raise for ``exc`` (a rank's failed write)."""
    return _write_error(Path(run_dir), step, exc)


def finish_checkpoint(run_dir: str | Path, step: int, write: Callable[[Path], None], keep: int = 2) -> Path:
    """``write(tmp)`` (the main rank's files), then the manifest over everything in the
    temporary folder (every rank's shards included), then the rename into place; the
    newest ``keep`` checkpoints up to it are kept (newer ones, left by an earlier attempt,
    are overwritten when the run reaches them). ``CheckpointWriteError`` when a file
    cannot be written: nothing of it is left."""
    run_dir = Path(run_dir)
    final, tmp = run_dir / f"checkpoint-{step}", temp_folder(run_dir, step)
    try:
        write(tmp)
        write_manifest(tmp)
        _fsync_tree(tmp)
    except write_failures() as exc:
        raise _write_error(run_dir, step, exc) from exc
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    dfd = os.open(run_dir, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    if keep > 0:
        for old in [p for p in list_checkpoints(run_dir) if checkpoint_step(p) <= step][:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_step(path: str | Path) -> int:
    m = _CKPT.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not a checkpoint-STEP folder")
    return int(m.group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint folders (with a trainer state or a manifest), oldest first; temporary
    folders are ignored. ``verify_checkpoint`` tells whether one is whole."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        m = _CKPT.match(p.name)
        if m and ((p / STATE_FILE).is_file() or (p / MANIFEST).is_file()):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint that verifies (``verify_checkpoint``)."""
    for ckpt in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(ckpt)
        except CheckpointError:
            continue
        return ckpt
    return None


def _manifest_files(path: Path) -> dict[str, dict[str, Any]]:
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        if not all(isinstance(e, dict) and isinstance(e["size"], int) and isinstance(e["sha256"], str)
                   for e in files.values()):  # fmt: skip
            raise ValueError("an entry lacks a size or a sha256")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: unreadable manifest ({exc})") from None
    return files


def verify_checkpoint(ckpt: str | Path) -> bool:
    """Check every file of ``ckpt`` against its manifest (size, then sha256): True when
    it is whole, False when it has no manifest (written before manifests: accepted
    unchecked); ``CheckpointError`` naming the first file that is missing or differs."""
    ckpt = Path(ckpt)
    if not (ckpt / MANIFEST).is_file():
        if not (ckpt / STATE_FILE).is_file():
            raise CheckpointError(f"{ckpt / STATE_FILE}: missing")
        return False
    root = ckpt.resolve()
    for name, entry in _manifest_files(ckpt / MANIFEST).items():
        path = ckpt / name
        if root not in path.resolve().parents:
            raise CheckpointError(f"{ckpt / MANIFEST}: names a file outside the checkpoint ({name!r})")
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
        size = path.stat().st_size
        if size != entry["size"]:
            raise CheckpointError(f"{path}: {size} bytes, the manifest says {entry['size']} (cut short or damaged)")
        if _sha256(path) != entry["sha256"]:
            raise CheckpointError(f"{path}: its contents differ from the manifest's sha256 (damaged)")
    return True


def _legacy_globals() -> list[Any]:
    """The types a trainer state written before manifests holds besides tensors and
    plain values: numpy's RNG key array and the SSR buffer's encoded prompts. None of
    them runs code when built (they only hold the values they are given)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

    from ..rollout.inputs import QueryInputs

    return [np.ndarray, np.dtype, type(np.dtype(np.uint32)), _reconstruct, QueryInputs]


def _refusal(path: Path, exc: Exception) -> str:
    """Why ``path`` does not load: the types it would build that are not allowed (the
    ones that could run code), or the loader's first line."""
    try:
        allowed = {f"{g.__module__}.{g.__name__}" for g in _legacy_globals()}
        unsafe = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path) if g not in allowed]
    except Exception:  # not even a readable pickle archive
        unsafe = []
    if unsafe:
        return f"{path}: refused, it would build {', '.join(sorted(unsafe))} (a trainer state holds only plain values)"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return f"{path}: not a trainer state that loads safely ({first})"


def load_state(ckpt: str | Path) -> dict[str, Any]:
    """The trainer state of ``ckpt``, read with ``weights_only=True`` (no code runs);
    ``CheckpointError`` naming the file when it does not load that way."""
    path = Path(ckpt) / STATE_FILE
    try:
        with torch.serialization.safe_globals(_legacy_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # untrusted bytes: any failure is the file's, reported as one line
        raise CheckpointError(_refusal(path, exc)) from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path}: not a trainer state (no step)")
    return state


def checked_state(ckpt: str | Path) -> dict[str, Any]:
    """``load_state`` of a checkpoint that ``verify_checkpoint`` passed."""
    verify_checkpoint(ckpt)
    return load_state(ckpt)


def resume_point(
    run_dir: str | Path, explicit: str | Path | None = None, say: Callable[[str], None] = print
) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume and its trainer state: ``explicit`` when given (a
    ``CheckpointError`` when it is damaged or unsafe), else the newest whole one of
    ``run_dir``; each newer one passed over is named by ``say`` on one line. None when
    the run has no checkpoint; ``CheckpointError`` when it has some but none is whole."""
    if explicit is not None:
        return Path(explicit), checked_state(explicit)
    ckpts = list_checkpoints(run_dir)
    for ckpt in reversed(ckpts):
        try:
            return ckpt, checked_state(ckpt)
        except CheckpointError as exc:
            say(f"passing over {ckpt.name}: {exc}")
    if ckpts:
        raise CheckpointError(
            f"no whole checkpoint in {run_dir} (each is named above); move them away to start it from step 0"
        )
    return None


def split_resume(path: str | Path) -> tuple[Path, Path | None]:
    """``--resume``'s argument as (run folder, checkpoint named explicitly or None):
    ``D`` or ``D/checkpoint-N``."""
    path = Path(path)
    if _CKPT.match(path.name) and not (path / "config.yaml").is_file():
        return path.parent, path
    return path, None
