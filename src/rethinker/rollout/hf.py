"""The ``transformers`` rollout engine: batched sampling with the policy itself, CPU or GPU.

For models ``prefix.supported`` accepts (Qwen-VL family, 1-D RoPE models) the engine runs
its own decode loop: each query's prompt (and images) is prefilled ONCE, its cache rows
repeated for the G samples, and rows that have finished leave the batch. Tokens are
drawn from softmax(logits / T) with top-k / top-p as ``transformers`` applies them
(temperature, then top-k, then top-p) and nothing else: the checkpoint's
``generation_config`` extras (repetition penalty etc.) are not applied, so the sampling
distribution is the one the importance ratio of the update assumes. Other models, and a
streamed generation (``rethinker infer``), go through ``model.generate``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from . import prefix
from .base import Completion, NonFiniteLogits, RolloutEngine, RolloutStats, SamplingParams
from .inputs import ModelBatch, QueryInputs, collate_prompts, vision_token_ids
from .tokens import end_token_ids


def next_tokens(
    logits: torch.Tensor,
    params: SamplingParams,
    suppress: list[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row of ``logits`` ([B, V]): argmax when ``params.greedy``, else a draw
    from softmax(logits / T) restricted to the top-k tokens and then to the smallest set
    whose probability reaches top-p (``transformers``' order and tie rules)."""
    logits = logits.float().clone()
    if suppress:
        logits[:, suppress] = -float("inf")
    if params.greedy:
        return logits.argmax(-1)
    if params.temperature <= 0:
        raise ValueError("temperature must be > 0 when sampling (use greedy)")
    logits = logits / params.temperature
    vocab = logits.shape[-1]
    if params.top_k and 0 < params.top_k < vocab:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if params.top_p < 1.0:
        srt, idx = torch.sort(logits, descending=False)
        cum = srt.softmax(-1).cumsum(-1)
        drop = cum <= (1.0 - params.top_p)
        drop[:, -1] = False  # always keep the most likely token
        logits = logits.masked_fill(drop.scatter(-1, idx, drop), -float("inf"))
    probs = logits.softmax(-1)
    try:
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    except RuntimeError as exc:  # torch checks the probabilities itself: no extra sync here
        if not bool(torch.isfinite(probs).all()):
            raise NonFiniteLogits(
                "the policy's next-token probabilities are not finite: its weights have diverged "
                "(a lower optim.lr or optim.grad_clip usually helps)"
            ) from exc
        raise


class TransformersEngine(RolloutEngine):
    """Samples from the live policy (weights are shared, so ``sync_weights`` has nothing
    to do). The G samples of a query share one prefill of its prompt and images (own
    decode loop), or are one prompt row expanded by ``num_return_sequences`` (``generate``
    fallback)."""

    def __init__(
        self,
        model,
        processor,
        *,
        max_batch_queries: int = 64,
        own_decode: bool | None = None,
        streamer=None,
    ):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_batch_queries = max_batch_queries
        self.eos_ids, self.pad_id = end_token_ids(self.tokenizer, model.generation_config)
        self.suppress = [t for t in vision_token_ids(processor) if t not in self.eos_ids]
        self.stats = RolloutStats()
        #: None: decide per call with ``prefix.supported`` (False forces ``model.generate``)
        self.own_decode = own_decode
        #: a ``transformers`` streamer handed to ``model.generate`` (one query per call); with
        #: one set, generation always goes through ``model.generate``
        self.streamer = streamer

    def generate(self, queries: Sequence[QueryInputs], params: SamplingParams) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        t0 = time.perf_counter()
        for start in range(0, len(queries), self.max_batch_queries):
            chunk = queries[start : start + self.max_batch_queries]
            if self._stopping():  # the rest of an abandoned rollout: empty, unfinished
                out.extend([[Completion([], "", False) for _ in range(params.n)] for _ in chunk])
                continue
            out.extend(self._generate_chunk(chunk, params))
        self.stats.seconds += time.perf_counter() - t0
        self.stats.tokens += sum(len(c.token_ids) for group in out for c in group)
        return out

    @torch.no_grad()
    def _generate_chunk(self, queries: Sequence[QueryInputs], params: SamplingParams) -> list[list[Completion]]:
        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        batch = collate_prompts(queries, self.pad_id).to(device, dtype)
        was_training = self.model.training
        self.model.eval()
        try:
            own = self._use_own_decode()
            rows = self._decode(batch, params) if own else self._hf_generate(batch, params)
        finally:
            self.model.train(was_training)
        eos = set(self.eos_ids)
        groups: list[list[Completion]] = []
        for i in range(len(queries)):
            group = []
            for row in rows[i * params.n : (i + 1) * params.n]:
                cut = next((j for j, t in enumerate(row) if t in eos), None)
                ids = row if cut is None else row[: cut + 1]
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                group.append(Completion(ids, text, cut is not None))
            groups.append(group)
        return groups

    def _stopping(self) -> bool:
        return self.stop_requested is not None and self.stop_requested()

    def _use_own_decode(self) -> bool:
        if self.streamer is not None:
            return False
        return prefix.supported(self.model) if self.own_decode is None else self.own_decode

    def _decode(self, batch: ModelBatch, params: SamplingParams) -> list[list[int]]:
        """Prefill each prompt once, repeat its cache for the ``n`` samples, then sample
        token by token; a row leaves the batch once it has emitted an end-of-sequence
        token (compaction waits until 1/8 of the rows are done, to copy the cache rarely)."""
        model = self.model
        device = batch.input_ids.device
        pre = prefix.prefill(model, batch)
        n = params.n
        if n > 1:
            pre = prefix.select_rows(pre, torch.arange(batch.input_ids.shape[0], device=device).repeat_interleave(n))
        logits, cache, pos, attn = pre.last_logits, pre.cache, pre.next_pos, pre.attention_mask
        cache_name = prefix.cache_kwarg(model)
        total = logits.shape[0]
        out: list[list[int]] = [[] for _ in range(total)]
        alive = list(range(total))  # original row of each active row
        done = torch.zeros(total, dtype=torch.bool, device=device)
        eos = torch.tensor(self.eos_ids, device=device)
        for step in range(params.max_new_tokens):
            tok = next_tokens(logits, params, self.suppress)
            tok = torch.where(done, torch.full_like(tok, self.pad_id), tok)
            for r, t, d in zip(alive, tok.tolist(), done.tolist()):
                if not d:
                    out[r].append(t)
            done = done | torch.isin(tok, eos)
            if step == params.max_new_tokens - 1 or bool(done.all()) or self._stopping():
                break
            n_done = int(done.sum())
            if n_done and n_done >= max(1, len(alive) // 8):
                keep = (~done).nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                alive = [alive[i] for i in keep.tolist()]
                tok, attn, pos, done = tok[keep], attn[keep], pos[..., keep, :], done[keep]
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
            res = prefix.continue_forward(model, cache, tok[:, None], attn, pos, cache_name)
            logits = res.logits[:, -1]
            pos = pos + 1
        return out

    def _hf_generate(self, batch: ModelBatch, params: SamplingParams) -> list[list[int]]:
        sample = not params.greedy
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            num_return_sequences=params.n,
            suppress_tokens=self.suppress or None,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            streamer=self.streamer,
        )
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        seqs = self.model.generate(**batch.model_kwargs(self.model), **kwargs)
        return seqs[:, batch.input_ids.shape[1] :].tolist()
