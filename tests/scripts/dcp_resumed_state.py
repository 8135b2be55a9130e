"""Set up the run in RUN_DIR resumed from its newest checkpoint (one process, or each rank
under torchrun) and write to OUT what it restored: the step, the data position and the
optimizer's moments gathered to full tensors."""

import sys

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

from rethinker.train.config import resumed_config
from rethinker.train.run import setup

run_dir, out = sys.argv[1:3]
run = setup(resumed_config(run_dir, {}), resume=True)
full = get_optimizer_state_dict(
    run.model, run.optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
)
if run.ctx.is_main:
    state = {name: {k: v.clone() for k, v in s.items()} for name, s in full["state"].items()}
    torch.save(
        {"step": run.start_step, "sampler": run.sampler.state_dict(), "world": run.ctx.world, "state": state}, out
    )
run.close_logs()
if dist.is_initialized():
    dist.barrier()
    dist.destroy_process_group()
