"""The trainer's start-up under torchrun (2 ranks, FSDP2 on gloo): no rank but rank 0 reads
the policy's weights, no rank ever holds all of them, and the shards hold rank 0's weights.

    torchrun --nproc_per_node 2 meta_setup.py OUT_DIR [LORA_RANK]

1. a fresh start: rank 0 reads the toy policy (``from_pretrained`` once), rank 1 builds it
   on the meta device; after set-up every sharded parameter of rank 1 holds only its
   shard, the gathered weights equal the toy policy's (LoRA: rank 0's adapters, drawn as
   one process draws them), rank 1's buffers (rotary ``inv_freq``) equal rank 0's, and
   rank 1's random stream is where reading the weights would have left it;
2. its shards saved as a DCP checkpoint and read back into a second set-up: no rank reads
   the base (full weights; LoRA: rank 0 reads the frozen base), the same weights again.
Writes ``OUT_DIR/rank{R}.json`` with what each rank counted."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor
from transformers import AutoModelForImageTextToText

from rethinker.model.load import load_policy
from rethinker.toyworld.model import resolve_model_path
from rethinker.train import run as run_mod
from rethinker.train.config import resolve
from rethinker.train.distributed import init_distributed
from rethinker.train.shards import save_model_shards

torch.set_num_threads(1)
OUT = Path(sys.argv[1])
LORA = int(sys.argv[2]) if len(sys.argv) > 2 else 0
SEED = 7
reads = {"n": 0}
_orig = AutoModelForImageTextToText.from_pretrained.__func__


def _counted(cls, *args, **kwargs):
    reads["n"] += 1
    return _orig(cls, *args, **kwargs)


ctx = init_distributed()
cfg = resolve(None, {"model.lora_rank": LORA, "seed": SEED})
device, dtype = torch.device("cpu"), torch.float32


def full_state(model):
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.clone() for k, v in sd.items()} if ctx.is_main else None


def set_up(last=None, state=None):
    torch.manual_seed(SEED + ctx.rank)
    before = reads["n"]
    AutoModelForImageTextToText.from_pretrained = classmethod(_counted)
    try:
        model, _, _ = run_mod._load_models(cfg, ctx, device, dtype, last, state)
    finally:
        AutoModelForImageTextToText.from_pretrained = classmethod(_orig)
    return model, reads["n"] - before, torch.get_rng_state()


model, fresh_reads, rng = set_up()
whole = 0
for name, p in model.named_parameters():
    assert isinstance(p, DTensor), name
    if p.shape[0] >= ctx.world and p.to_local().numel() >= p.numel():
        whole += 1  # a sharded parameter held whole on this rank
buffers = {k: b.clone() for k, b in model.named_buffers()}
got = full_state(model)

# what one process reads (LoRA: its adapters drawn from the seed rank 0 starts from)
torch.manual_seed(SEED + ctx.rank)
lora = {"rank": LORA, "targets": cfg.model.lora_targets, "base": resolve_model_path(None)} if LORA else None
ref, _ = load_policy(resolve_model_path(None), device=device, dtype=dtype, lora=lora)
rng_same = torch.equal(rng, torch.get_rng_state())
ref_sd = ref.state_dict()
same = got is None or (set(got) == set(ref_sd) and all(torch.equal(got[k], ref_sd[k]) for k in got))
same_buffers = all(torch.equal(b, dict(ref.named_buffers())[k]) for k, b in buffers.items())

folder = OUT / "ckpt"
save_model_shards(folder, model, adapters_only=LORA > 0)
dist.barrier()
del model
model2, dcp_reads, _ = set_up(folder, {"layout": "dcp"})
got2 = full_state(model2)
same_dcp = got2 is None or all(torch.equal(got2[k], ref_sd[k]) for k in got2)
row = {
    "fresh_reads": fresh_reads,
    "dcp_reads": dcp_reads,
    "whole_sharded_params": whole,
    "params": sum(1 for _ in model2.parameters()),
    "same_weights": same,
    "same_weights_after_dcp": same_dcp,
    "same_buffers": same_buffers,
    "buffers": sorted(buffers),
    "rng_as_if_read": rng_same,
}
(OUT / f"rank{ctx.rank}.json").write_text(json.dumps(row))
dist.destroy_process_group()
