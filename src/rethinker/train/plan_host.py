"""The memory plan's checkpoint rows: host (CPU RAM) memory of a save, a resume and an
export per rank, and the checkpoint's size on disk, priced from what ``shards.py`` and
``export.py`` do with ``torch.distributed.checkpoint`` (DCP):

- **on disk**: every rank writes its chunk of every tensor of the policy's state (LoRA:
  the adapters, fp32) and of the optimizer state (AdamW: ``exp_avg`` and ``exp_avg_sq`` in
  the trainable parameters' dtype, and a ``step`` scalar per parameter, written once).
  Each stored chunk is a ``torch.save`` archive of its own, ``DCP_ITEM_BYTES`` on top of
  its data, and an entry of the ``.metadata`` index. A tied output head (Qwen2.5-VL-3B)
  is written again under its own name: torch's state dict keeps the tied copy (a LoRA
  checkpoint holds the adapters only: ``shards`` keeps the trainable names).
  Rank 0 adds the trainer state, the config and the processor files.
- **save**: DCP takes the state dict as references to the shards (no copy) and writes one
  tensor at a time: on a CPU a copy only of a padded shard, on a GPU the device-to-host
  copies run ``DCP_COPY_AHEAD`` bytes ahead of the writes. At most one shard of the
  largest tensor (+ the copy-ahead) on top of the training state.
- **start** (a fresh start from the base, or a resume from an old-layout checkpoint):
  rank 0 reads the whole model on the host (``from_pretrained``), the other ranks build
  it on the ``meta`` device, FSDP2 shards it and rank 0's weights are broadcast into the
  shards one tensor at a time (``load_sharded_policy``): rank 0 holds the whole model
  until then, the other ranks only their shards (on a CPU, and one tensor whole as it
  arrives; on a GPU nothing on the host). One process: the whole model.
- **resume** (DCP): every rank builds the model on ``meta`` and DCP reads one stored
  chunk at a time into its shards; no rank reads the base (LoRA: rank 0 does, for the
  frozen base the checkpoint leaves out, as at a start; one process: the whole model
  from the base). On a CPU the shards and the AdamW state are host memory too, and so is
  the step torch takes to build that state: zero gradients and two temporaries of the
  largest shard (``exp_avg_sq.sqrt() / c``) before the checkpoint's values are read in.
- **export** (one process): one tensor at a time and one stored chunk of it (at most the
  tensor again); LoRA merges the adapters into the base model, which it holds whole.
- **old layout** (before DCP, for comparison): rank 0 gathered the full weights and the
  full optimizer state to its host memory to write them.

The host figures are on top of what the process holds anyway (its runtime, and during a
save the training state), and count tensors only: Python objects, the tokenizer and the
loaders' own buffers add some 10-40 MB (``benchmarks/checkpoint_io.py`` measures peak RSS
minus the RSS before, and prints these figures beside it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: bytes a stored chunk takes beyond its data (``torch.save``'s archive, data aligned to 64 bytes; torch 2.x)
DCP_ITEM_BYTES = 1577
#: bytes of a chunk's entry in DCP's ``.metadata`` index (about 240-270 measured)
DCP_INDEX_BYTES = 300
#: ``FileSystemWriter``'s ``per_thread_copy_ahead``: device-to-host copies in flight during a save (GPU)
DCP_COPY_AHEAD = 10_000_000
#: a rank's RNG states in the trainer state (python, numpy, torch), with the rest of it
STATE_BYTES_PER_RANK = 16 * 1024
#: the processor and config files when the model is not on disk (Qwen2.5-VL's tokenizer.json and the rest)
QWEN_FILES_BYTES = 7 * 2**20
_WEIGHT_FILES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")


@dataclass
class TensorCounts:
    """A model's tensors as a checkpoint holds them (numbers of elements)."""

    tensors: int  # parameter tensors (tied ones once)
    vision_tensors: int
    largest: int  # the largest parameter tensor
    tied_head: int  # the output head when tied to the input embedding (written again), else 0
    lora_tensors: int = 0  # LoRA's A and B matrices
    largest_adapter: int = 0


def tensor_counts(model, params: dict[str, Any], adapters: list[int]) -> TensorCounts:
    """``TensorCounts`` of a (meta-device) model, ``params`` its named parameters,
    ``adapters`` the sizes of the LoRA matrices it would get."""
    tied = 0
    head, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if head is not None and emb is not None and head.weight is emb.weight:
        tied = head.weight.numel()
    return TensorCounts(
        tensors=len(params),
        vision_tensors=sum(1 for n in params if ".visual." in f".{n}" or "vision" in n),
        largest=max((p.numel() for p in params.values()), default=0),
        tied_head=tied,
        lora_tensors=len(adapters),
        largest_adapter=max(adapters, default=0),
    )


@dataclass
class HostMemory:
    """A checkpoint's host memory per rank (bytes, on top of the process) and its size on disk."""

    save: float
    resume: float  # a DCP resume, the most any rank holds
    start: float  # a fresh start or an old-layout resume, rank 0 (the whole model)
    start_other: float  # the same, each other rank (its shards)
    export: float
    old_save: float  # rank 0, the layout before DCP
    disk: float
    disk_model: float
    disk_optimizer: float
    lora: bool
    world: int
    device: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def processor_files_bytes(model_dir: str | None) -> float:
    """The config and processor files a checkpoint copies (the model folder's other files)."""
    if not model_dir or not Path(model_dir).is_dir():
        return QWEN_FILES_BYTES
    files = [f for f in Path(model_dir).iterdir() if f.is_file() and not f.name.endswith(_WEIGHT_FILES)]
    return sum(f.stat().st_size for f in files)


def _stored(elements: float, itemsize: int, items: int) -> float:
    return elements * itemsize + items * (DCP_ITEM_BYTES + DCP_INDEX_BYTES)


def host_memory(
    counts, *, b: int, train_bytes: int, trainable: int, freeze_vision: bool, lora: bool, world: int, device: str,
    model_dir: str | None = None,
) -> HostMemory:  # fmt: skip
    """The checkpoint rows for a model of ``counts`` (``ModelCounts``) in ``b``-byte
    parameters, ``trainable`` of them trained in ``train_bytes`` (LoRA: the adapters, fp32)."""
    t: TensorCounts = counts.checkpoint
    tied = 1 if t.tied_head else 0
    if lora:
        model_disk = _stored(counts.lora, 4, t.lora_tensors * world)  # the adapters only
        largest_saved = t.largest_adapter * 4
        largest_trainable = t.largest_adapter * 4
        n_trainable = t.lora_tensors
    else:
        model_disk = _stored(counts.total + t.tied_head, b, (t.tensors + tied) * world)
        largest_saved = largest_trainable = t.largest * b
        n_trainable = t.tensors - (t.vision_tensors if freeze_vision else 0)
    moments = 2 * trainable * train_bytes
    optim_disk = _stored(trainable, 2 * train_bytes, 2 * n_trainable * world + n_trainable) + 4 * n_trainable
    disk = model_disk + optim_disk + processor_files_bytes(model_dir) + STATE_BYTES_PER_RANK * world
    shard = math.ceil(largest_saved / world)
    full = counts.total * b + (counts.lora * 4 if lora else 0)
    start, start_other, resume = _start_and_resume(
        full, t.largest * b, shard, trainable * train_bytes, moments, largest_trainable, lora, world, device
    )
    return HostMemory(
        save=shard + (DCP_COPY_AHEAD if device == "cuda" else 0),
        resume=resume,
        start=start,
        start_other=start_other,
        export=full + t.largest * b if lora else 2 * t.largest * b,
        old_save=full + moments,
        disk=disk,
        disk_model=model_disk,
        disk_optimizer=optim_disk,
        lora=lora,
        world=world,
        device=device,
    )


def _start_and_resume(
    full: float, largest: float, shard: float, trained: float, moments: float, largest_trainable: float,
    lora: bool, world: int, device: str,
) -> tuple[float, float, float]:  # fmt: skip
    """Rank 0's and the other ranks' host memory at a start, and the most a rank holds in a
    DCP resume (``host_memory``'s figures: bytes of the whole model, its largest tensor, a
    rank's shard of the largest saved tensor, the trained parameters, AdamW's moments)."""
    cpu = device == "cpu"
    if world == 1:
        start, start_other = full, 0.0
    else:  # rank 0: the whole model (on a CPU its shards beside it); the others: their shards
        start = full + (full / world if cpu else 0)
        start_other = full / world + largest if cpu else 0.0
    base = start if (world == 1 or lora) else 0.0  # who reads the base at a DCP resume: rank 0 (LoRA), one process
    if cpu:  # the shards and AdamW's moments; its first step's zero gradients and two temporaries
        step = trained / world + 2 * math.ceil(largest_trainable / world)
        resume = max(base, (full + moments) / world + max(step, shard))
    else:  # DCP reads one stored chunk at a time to the host
        resume = base + shard
    return start, start_other, resume


def host_table(h: HostMemory, fmt) -> list[str]:
    """The plan's checkpoint lines (``fmt``: bytes as text)."""
    per = f" / {h.world}" if h.world > 1 else ""
    gpu = " + DCP's 10 MB copy-ahead" if h.device == "cuda" else ""
    what = "the adapters (fp32)" if h.lora else "the weights"
    on_cpu = "; then the shards, AdamW state and its zero gradients" if h.device == "cpu" else ""
    if h.world == 1:
        resume_note = "the whole model from the base, then the checkpoint one stored chunk at a time"
    elif h.lora:
        resume_note = "rank 0 the frozen base (as at a start), every rank its shards one stored chunk at a time"
    else:
        resume_note = "no rank reads the base: each its shards, one stored chunk at a time"
    export = (
        "the base model merged with the adapters, in memory" if h.lora else "one tensor at a time and a stored chunk"
    )
    return [
        "",
        "| checkpoint (host memory, on top of the process) | per rank | note |",
        "|---|---|---|",
        f"| save (DCP) | {fmt(h.save)} | the largest tensor{per}, one at a time{gpu} |",
        f"| start (from the base, or an old-layout checkpoint), rank 0 | {fmt(h.start)} | the whole model, "
        "broadcast into the shards one tensor at a time |",
        *(
            [f"| start, each other rank | {fmt(h.start_other)} | built on the meta device: its shards only |"]
            if h.world > 1
            else []
        ),
        f"| resume (DCP) | {fmt(h.resume)} | {resume_note}{on_cpu} |",
        f"| export (`rethinker export`, rank 0) | {fmt(h.export)} | {export} |",
        f"| old layout's save, rank 0 (before DCP) | {fmt(h.old_save)} | full weights + full optimizer state "
        "gathered |",
        f"| **checkpoint on disk** | {fmt(h.disk)} | all ranks: {what} {fmt(h.disk_model)}, optimizer state "
        f"{fmt(h.disk_optimizer)}, trainer state and processor files |",
    ]
