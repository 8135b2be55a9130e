"""Data parallelism of ``rethinker eval`` and ``rethinker data annotate`` under torchrun:

    torchrun --nproc_per_node N -m rethinker eval ...
    torchrun --nproc_per_node N -m rethinker data annotate ...

Every rank reads what is done already (the merged file and every rank's part), then,
after all ranks have read (so they agree on what is left), takes every N-th item left
(``Shard.take``) and appends each judged item to its own part file, ``NAME.part-R.SUFFIX``
beside the merged one (``predictions.part-1.jsonl``). Rank 0 then merges the parts into
the one file (``predictions.jsonl`` in the order of a one-process run; the annotation
sidecar) and writes the summaries and outputs. A killed run re-run with the same command
(at any number of ranks, or none) finds the parts and the merged file, skips what they
hold, and merges each item once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Rank ``rank`` of ``world``: its share of the items left."""

    rank: int = 0
    world: int = 1

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} of {self.world}")

    def take(self, todo: Sequence[T]) -> list[T]:
        """Every ``world``-th item of ``todo`` from the ``rank``-th: the shares are disjoint,
        cover ``todo``, and differ in size by at most one."""
        return list(todo[self.rank :: self.world])


def part_path(path: str | Path, rank: int) -> Path:
    """Rank ``rank``'s part of ``path``: ``predictions.jsonl`` -> ``predictions.part-R.jsonl``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.part-{rank}{path.suffix}")


def part_paths(path: str | Path) -> list[Path]:
    """The part files of ``path`` there are, by rank."""
    path = Path(path)
    pattern = re.compile(re.escape(path.stem) + r"\.part-(\d+)" + re.escape(path.suffix) + "$")
    found = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = pattern.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def other_files(path: str | Path, shard: Shard) -> list[Path]:
    """What rank ``shard.rank`` reads besides its own part: the merged file and the other parts."""
    own = part_path(path, shard.rank)
    return [Path(path), *(p for p in part_paths(path) if p != own)]


def start_ranks():
    """``(Shard, DistContext)`` from torchrun's environment (gloo on a CPU, nccl on GPUs);
    one process: ``Shard()`` and a context whose collectives do nothing."""
    from ..train.distributed import init_distributed

    ctx = init_distributed()
    return Shard(ctx.rank, ctx.world), ctx


def first_error(ctx, error: str | None) -> str | None:
    """The first of the ranks' errors (None: none failed). Every rank calls it (a gather),
    so all stop together rather than some waiting forever at the next barrier."""
    return next((e for e in ctx.gather_objects(error) if e), None)
