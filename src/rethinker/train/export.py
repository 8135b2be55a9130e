"""A checkpoint's policy in ``save_pretrained`` format (``rethinker export``), loadable with
plain ``transformers``.

A distributed checkpoint's weights are streamed: the safetensors header is written from
the DCP index (names, dtypes, shapes), then each tensor is read alone (DCP gathers its
shards from every rank's file) and appended, so the peak host memory is about one
tensor, whatever the model's size; shards of ``max_shard_bytes`` with an index beyond
that. The names are the ones ``save_pretrained`` writes (``transformers``' own reversal
of its load-time renaming), a tied ``lm_head`` is left out as it does. LoRA checkpoints
(adapters only) are written as the adapters (``adapter/``) and the merged weights, which
needs the base model in memory. Checkpoints of the layout before DCP are copied.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from . import checkpoint as ckpt
from .shards import MODEL_DIR, SafeReader, dcp_load, load_model_shards

_ST_DTYPES = {
    torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip
_KEEP = (ckpt.STATE_FILE, ckpt.MANIFEST)


def export_checkpoint(ckpt_dir: str | Path, output: str | Path, *, max_shard_bytes: int = 2 << 30) -> Path:
    """Write the policy of ``ckpt_dir`` (verified against its manifest) to ``output`` in
    ``save_pretrained`` format, with the config and processor files; ``output`` appears
    whole or not at all (written beside it, then renamed)."""
    ckpt_dir, output = Path(ckpt_dir), Path(output)
    state = ckpt.checked_state(ckpt_dir)
    tmp = output.parent / f".tmp-export-{output.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for f in ckpt_dir.iterdir():  # config, generation config, processor (and old-layout weights)
            if f.is_file() and f.name not in _KEEP:
                shutil.copy2(f, tmp / f.name)
        if state.get("layout") == "dcp" and state.get("lora"):
            _export_lora(ckpt_dir, tmp, state["lora"])
        elif state.get("layout") == "dcp":
            stream_weights(ckpt_dir / MODEL_DIR, tmp, max_shard_bytes=max_shard_bytes)
        elif (ckpt_dir / "adapter_config.json").is_file():  # old layout, LoRA: the adapters beside the merge
            _export_old_lora(ckpt_dir, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if output.exists():
        shutil.rmtree(output)
    tmp.replace(output)
    return output


def saved_names(config_dir: Path, keys: list[str]) -> dict[str, str]:
    """Each state-dict key as ``save_pretrained`` names it in the file (tied copies left out)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # a transformers without load-time renaming: names are kept
        revert_weight_conversion = None
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(config_dir))
    tied = set(getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or ())
    out = {}
    for k in keys:
        if k in tied:
            continue
        if revert_weight_conversion is None:
            out[k] = k
        else:
            (out[k],) = revert_weight_conversion(model, {k: torch.empty(0, device="meta")})
    return out


def _shards(entries: list[tuple[str, str, Any]], max_bytes: int) -> list[list[tuple[str, str, Any]]]:
    shards: list[list[tuple[str, str, Any]]] = [[]]
    size = 0
    for e in entries:
        n = _nbytes(e[2])
        if shards[-1] and size + n > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += n
    return shards


def _nbytes(md: TensorStorageMetadata) -> int:
    return int(torch.Size(md.size).numel()) * md.properties.dtype.itemsize


def stream_weights(dcp_dir: Path, out: Path, *, max_shard_bytes: int = 2 << 30) -> list[Path]:
    """The DCP model state in ``dcp_dir`` as safetensors files in ``out`` (``model.safetensors``,
    or numbered shards and ``model.safetensors.index.json``), one tensor in memory at a time."""
    reader = SafeReader(dcp_dir)
    md = reader.read_metadata().state_dict_metadata
    keys = [k for k, v in md.items() if isinstance(v, TensorStorageMetadata)]
    names = saved_names(out, keys)
    shards = _shards([(k, names[k], md[k]) for k in keys if k in names], max_shard_bytes)
    n = len(shards)
    files = [out / ("model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors") for i in range(n)]
    for path, items in zip(files, shards):
        _write_shard(path, items, reader)
    if n > 1:
        index = {
            "metadata": {"total_size": sum(_nbytes(m) for s in shards for _, _, m in s)},
            "weight_map": {name: f.name for f, s in zip(files, shards) for _, name, _ in s},
        }
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return files


def _write_shard(path: Path, items: list[tuple[str, str, Any]], reader: SafeReader) -> None:
    """A safetensors file: its header first (known from the index), then each tensor as read."""
    header: dict[str, Any] = {}
    offset = 0
    for _, name, md in items:
        n = _nbytes(md)
        dtype = _ST_DTYPES[md.properties.dtype]
        header[name] = {"dtype": dtype, "shape": list(md.size), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for key, _, md in items:
            t = torch.empty(tuple(md.size), dtype=md.properties.dtype)
            dcp_load({key: t}, reader, alone=True)
            fh.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
            del t


def _export_lora(ckpt_dir: Path, out: Path, lora: dict[str, Any]) -> None:
    """Adapters to ``out/adapter`` (PEFT format) and the merged policy to ``out``."""
    from ..model.load import load_policy

    md = SafeReader(ckpt_dir / MODEL_DIR).read_metadata().state_dict_metadata
    dtype = next(v.properties.dtype for v in md.values() if isinstance(v, TensorStorageMetadata))
    model, _ = load_policy(lora["base"], device=torch.device("cpu"), dtype=dtype, lora=lora)
    load_model_shards(ckpt_dir, model, adapters_only=True, alone=True)  # rank 0 alone at the end of a run
    model.save_pretrained(out / "adapter")
    model.merge_and_unload().save_pretrained(out)


def _export_old_lora(ckpt_dir: Path, out: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    (out / "adapter").mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (out / name).replace(out / "adapter" / name)
    base = json.loads((ckpt_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), ckpt_dir)
    model.merge_and_unload().save_pretrained(out)
