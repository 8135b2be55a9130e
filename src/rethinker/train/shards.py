"""Distributed checkpoints with ``torch.distributed.checkpoint`` (DCP): every rank writes
and reads its own shards of the policy and of the optimizer state, in parallel; no rank
ever holds more than its shard (plus DCP's bounded write buffer). One process (no process
group) writes and reads the same layout, and DCP reshards on load, so a checkpoint
written by N ranks resumes on M.

``checkpoint-STEP/model/`` holds the policy's state (LoRA runs: the adapters only), and
``checkpoint-STEP/optimizer/`` the optimizer's per-parameter state (``step``,
``exp_avg``, ``exp_avg_sq``); each is a DCP folder (``__R_0.distcp`` per rank and a
``.metadata`` index). Only tensors go in them: the optimizer's hyper-parameters travel in
the trainer state. DCP reads its index with ``pickle``; ``SafeReader`` reads it with an
unpickler that builds only DCP's own metadata types, so no code runs from a checkpoint,
and ``check_against`` refuses a checkpoint whose tensors do not fit the model before
anything is read (a parameter of another shape is named with both shapes).
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from .checkpoint import CheckpointError

MODEL_DIR = "model"
OPTIM_DIR = "optimizer"
#: seconds each rank waits between writing its model and its optimizer shards (tests kill a save part way)
PAUSE_ENV = "RETHINKER_SAVE_PAUSE_S"

_METADATA_TYPES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "MetadataIndex", "ChunkStorageMetadata", "TensorStorageMetadata", "BytesStorageMetadata",
        "TensorProperties", "StorageMeta", "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath", "Path"},
    "collections": {"OrderedDict"},
}  # fmt: skip


class _MetadataUnpickler(pickle.Unpickler):
    """Builds DCP's metadata dataclasses, ``torch.Size``, dtypes and paths; nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if name in _METADATA_TYPES.get(module, ()):
            return pathlib.Path if module == "pathlib" else super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"refused, it would build {module}.{name}")


class SafeReader(FileSystemReader):
    """``FileSystemReader`` whose ``.metadata`` is read with ``_MetadataUnpickler`` (DCP's
    own reader unpickles it freely); the metadata is read once and kept."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._metadata: Metadata | None = None

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if self._metadata is None:
            path = Path(self.path) / ".metadata"
            try:
                md = _MetadataUnpickler(io.BytesIO(path.read_bytes())).load()
            except OSError as exc:
                raise CheckpointError(f"{path}: {exc.strerror or exc}") from None
            except Exception as exc:  # untrusted bytes: any failure is the file's
                raise CheckpointError(f"{path}: not a DCP index that loads safely ({exc})") from None
            if not isinstance(md, Metadata):
                raise CheckpointError(f"{path}: not a DCP index")
            from torch.distributed.checkpoint.metadata import StorageMeta

            md.storage_meta = md.storage_meta or StorageMeta()
            md.storage_meta.load_id = self.load_id
            self._metadata = md
        return self._metadata


def _no_dist() -> bool:
    return not (dist.is_available() and dist.is_initialized())


def dcp_save(state: dict[str, Any], folder: Path) -> None:
    """``dcp.save``: collective with a process group, this process alone without one."""
    with warnings.catch_warnings():  # "assuming the intent is to save in a single process": it is
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save(state, checkpoint_id=folder, no_dist=_no_dist())


def dcp_load(state: dict[str, Any], reader: SafeReader, *, alone: bool = False) -> None:
    """``dcp.load`` in place; ``alone``: this process only, even in a process group."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, storage_reader=reader, no_dist=alone or _no_dist())


def _model_options(adapters_only: bool) -> StateDictOptions:
    """LoRA runs keep only the trainable parameters (the adapters); the base comes from the model path."""
    return StateDictOptions(ignore_frozen_params=adapters_only, strict=not adapters_only)


def _model_state(model, adapters_only: bool) -> dict[str, Any]:
    """The policy's state as its checkpoint holds it. LoRA: the adapters only; torch keeps
    a tied head (``lm_head`` sharing the frozen embedding) under its own name even when
    frozen parameters are left out, so only names of trainable parameters are kept."""
    sd = get_model_state_dict(model, options=_model_options(adapters_only))
    if adapters_only:
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        sd = {k: v for k, v in sd.items() if k in trainable}
    return sd


def flat(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as DCP names their leaves (keys joined with dots)."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, name + "."))
        else:
            out[name] = v
    return out


def check_against(folder: Path, state: dict[str, Any], *, what: str) -> None:
    """Every tensor of ``state`` is in the DCP folder with the same (global) shape; a
    ``CheckpointError`` naming the first that is missing or differs (with both shapes),
    or the checkpoint's first entry the run has no place for."""
    md = SafeReader(folder).read_metadata().state_dict_metadata
    want = flat(state)
    for name, value in want.items():
        entry = md.get(name)
        if entry is None:
            raise CheckpointError(f"{folder}: no {what} entry {name!r} (a checkpoint of another model?)")
        if not isinstance(value, torch.Tensor) or not isinstance(entry, TensorStorageMetadata):
            raise CheckpointError(f"{folder}: {name!r} is not a tensor")
        if tuple(entry.size) != tuple(value.shape):
            raise CheckpointError(
                f"{folder}: {name} has shape {tuple(entry.size)} in the checkpoint, {tuple(value.shape)} in this "
                f"run's {what} (a checkpoint of another model?)"
            )
    extra = sorted(set(md) - set(want))
    if extra:
        raise CheckpointError(
            f"{folder}: {extra[0]!r} has no place in this run's {what} (a checkpoint of another model?)"
        )


def save_shards(folder: Path, model, optimizer, *, adapters_only: bool) -> list[dict[str, Any]]:
    """This rank's shards of the policy (``folder/model``) and of the optimizer state
    (``folder/optimizer``), written by every rank at once (collective); the optimizer's
    parameter groups (plain values, the same on every rank) are returned for the trainer state."""
    save_model_shards(folder, model, adapters_only=adapters_only)
    if pause := float(os.environ.get(PAUSE_ENV, "0") or 0):  # fault injection: a save killed part way
        time.sleep(pause)
    if optimizer is None:
        return []
    osd = get_optimizer_state_dict(model, optimizer)
    dcp_save({"state": osd["state"]}, folder / OPTIM_DIR)
    return osd["param_groups"]


def save_model_shards(folder: Path, model, *, adapters_only: bool) -> None:
    dcp_save(_model_state(model, adapters_only), folder / MODEL_DIR)


def load_model_shards(folder: Path, model, *, adapters_only: bool, alone: bool = False) -> None:
    """The policy's weights from ``folder/model`` into this rank's shards (resharded when
    the checkpoint was written by another number of ranks); ``alone``: an unsharded model
    in this process only, even in a process group (rank 0's export at the end of a run)."""
    sd = _model_state(model, adapters_only)
    check_against(folder / MODEL_DIR, sd, what="model")
    dcp_load(sd, SafeReader(folder / MODEL_DIR), alone=alone)
    set_model_state_dict(model, sd, options=_model_options(adapters_only))


def load_optimizer_shards(folder: Path, model, optimizer, param_groups: list[dict[str, Any]]) -> None:
    """The optimizer state from ``folder/optimizer`` (this rank's shards) and ``param_groups``."""
    osd = get_optimizer_state_dict(model, optimizer)  # builds the state to load into
    state = {"state": osd["state"]}
    check_against(folder / OPTIM_DIR, state, what="optimizer state")
    dcp_load(state, SafeReader(folder / OPTIM_DIR))
    set_optimizer_state_dict(model, optimizer, {"state": state["state"], "param_groups": param_groups})
