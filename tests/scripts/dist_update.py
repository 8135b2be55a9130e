"""One policy update on fixed rollouts, in one process or under torchrun (FSDP2, gloo).

    python dist_update.py OUT.pt [LORA_RANK [MINI_BATCH [KL_COEF]]]           # reference
    torchrun --nproc_per_node 2 dist_update.py OUT.pt [LORA_RANK [MINI_BATCH [KL_COEF]]]

Writes the loss statistics and the full weights after the update (rank 0). With a
LORA_RANK, PEFT adapters (seeded alike in every process, B made non-zero so that both
factors get a gradient) are trained on a frozen base. With a KL_COEF, a KL term to the
starting model: the policy with its adapters off (LoRA), or a frozen copy loaded as the
trainer loads it (``load_sharded_policy``: sharded under torchrun), the policy's weights
moved off it first (seeded alike) so that the term and its gradient are not zero."""

import sys
from dataclasses import replace

import torch

from rethinker.algo.advantages import group_advantages
from rethinker.algo.sample import Sample
from rethinker.rollout.inputs import PromptEncoder
from rethinker.toyworld.model import load_toy, toy_model_path
from rethinker.toyworld.puzzles import generate
from rethinker.train.config import AlgoConfig, OptimConfig
from rethinker.train.distributed import full_model_state, init_distributed, load_sharded_policy, shard_model
from rethinker.train.update import policy_update

torch.set_num_threads(1)
ctx = init_distributed()
model, processor = load_toy("cpu")
LORA = int(sys.argv[2]) if len(sys.argv) > 2 else 0
MINI = int(sys.argv[3]) if len(sys.argv) > 3 else None  # several mini-batches: sharded behaviour log-probs first
MINI = MINI or None
KL = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
if LORA:
    from rethinker.model.load import add_lora
    from rethinker.train.config import ModelConfig

    torch.manual_seed(5)
    model = add_lora(model, LORA, None, 0.0, ModelConfig().lora_targets)
    with torch.no_grad():  # PEFT starts B at zero (then A gets no gradient): move it off zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
ref = None
if KL and LORA:
    ref = model  # the base it started from: the adapters off
elif KL:
    ref, _ = load_sharded_policy(str(toy_model_path()), ctx, torch.device("cpu"), dtype=torch.float32, trainable=False)
    torch.manual_seed(6)
    with torch.no_grad():  # the policy moves off its reference
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
model.train()
enc = PromptEncoder(processor)
records = generate(3, seed=11, split="train")
queries = [enc.encode(r) for r in records]
gen = torch.Generator().manual_seed(0)
G = 4
samples = []
rewards = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, -0.1, 1.0]
for qi, q in enumerate(queries):
    for j in range(G):
        n = int(torch.randint(3, 12, (1,), generator=gen))
        ids = torch.randint(30, 300, (n,), generator=gen).tolist()
        samples.append(
            Sample(
                advantage=0.0,
                reward=rewards[qi * G + j],
                group=qi,
                prompt=q,
                completion_ids=ids,
                completion_mask=[1] * n,
            )
        )
adv = group_advantages(torch.tensor(rewards), G)
samples = [replace(s, advantage=a) for s, a in zip(samples, adv.tolist())]
# an SSR-like selection: the non-zero samples, one of them twice (13: uneven over 2 ranks)
chosen = [s for s in samples if s.advantage != 0]
chosen = chosen + chosen[:1]
before = {k: v.detach().clone() for k, v in model.state_dict().items()}
if ctx.enabled:
    shard_model(model, ctx, torch.device("cpu"))
# lr 1 for one step (weights after = weights before - gradient); several mini-batches take
# several steps, where lr 1 would blow the toy model up (and its rounding with it)
opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3 if MINI else 1.0)
algo = AlgoConfig(
    clip_low=0.2, clip_high=0.35, aggregation="token-mean", kl_coef=KL, kl_kind="k3", entropy_coef=0.0, sft_coef=0.0
)
optim = OptimConfig(mini_batch_size=MINI, micro_batch_size=2, bucket_by_length=True, grad_clip=0.0)
out = policy_update(model, opt, None, chosen, algo, optim, pad_id=enc.pad_token_id, ctx=ctx, ref_model=ref)
state = full_model_state(model, ctx) if ctx.enabled else {k: v.detach().clone() for k, v in model.state_dict().items()}
if ctx.is_main:
    units = sum(hasattr(m, "unshard") and hasattr(m, "reshard") for m in model.modules())
    ref_units = sum(hasattr(m, "unshard") and hasattr(m, "reshard") for m in ref.modules()) if ref is not None else 0
    moved = sum(int(not torch.equal(state[k], before[k])) for k in state if "lora_" in k)
    torch.save(
        {"stats": out, "weights": state, "n": len(chosen), "units": units, "lora_moved": moved, "ref_units": ref_units},
        sys.argv[1],
    )
if ctx.enabled:
    torch.distributed.barrier()  # rank 0 has written the file: no rank leaves while another still works
    torch.distributed.destroy_process_group()
