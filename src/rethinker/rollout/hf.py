"""The ``transformers`` rollout engine: batched ``generate`` with sampling, CPU or GPU."""

from __future__ import annotations

import time
from typing import Sequence

import torch

from .base import Completion, RolloutEngine, RolloutStats, SamplingParams
from .inputs import QueryInputs, collate_prompts, vision_token_ids


class TransformersEngine(RolloutEngine):
    """Samples with ``model.generate`` from the live policy (weights are shared, so
    ``sync_weights`` has nothing to do). The G samples of a query are one prompt row
    expanded by ``num_return_sequences``: transformers encodes the images once before the
    expansion when the model accepts pre-computed vision features."""

    def __init__(self, model, processor, *, max_batch_queries: int = 64):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_batch_queries = max_batch_queries
        gen_cfg = model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids: list[int] = list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.eos_ids[0])
        self.suppress = [t for t in vision_token_ids(processor) if t not in self.eos_ids]
        self.stats = RolloutStats()

    def generate(self, queries: Sequence[QueryInputs], params: SamplingParams) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        t0 = time.perf_counter()
        for start in range(0, len(queries), self.max_batch_queries):
            out.extend(self._generate_chunk(queries[start:start + self.max_batch_queries], params))
        self.stats.seconds += time.perf_counter() - t0
        self.stats.tokens += sum(len(c.token_ids) for group in out for c in group)
        return out

    @torch.no_grad()
    def _generate_chunk(self, queries: Sequence[QueryInputs], params: SamplingParams) -> list[list[Completion]]:
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        batch = collate_prompts(queries, self.pad_id).to(device, dtype)
        sample = not params.greedy
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            num_return_sequences=params.n,
            suppress_tokens=self.suppress or None,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        was_training = self.model.training
        self.model.eval()
        try:
            seqs = self.model.generate(**batch.model_kwargs(self.model), **kwargs)
        finally:
            self.model.train(was_training)
        new = seqs[:, batch.input_ids.shape[1]:].tolist()
        eos = set(self.eos_ids)
        groups: list[list[Completion]] = []
        for i in range(len(queries)):
            group = []
            for row in new[i * params.n:(i + 1) * params.n]:
                cut = next((j for j, t in enumerate(row) if t in eos), None)
                ids = row if cut is None else row[:cut + 1]
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                group.append(Completion(ids, text, cut is not None))
            groups.append(group)
        return groups
