"""The rollout mesh: W ranks as (W / T data-parallel groups) x (T tensor-parallel ranks).

Each group of T consecutive ranks shares one tensor-parallel vLLM engine (vLLM's own
``external_launcher`` groups are consecutive ranks too, so ours and vLLM's agree):

    W = 4, T = 2:   ranks 0 1 | 2 3     dp_rank 0 0 | 1 1     tp_rank 0 1 | 0 1

``RolloutMesh`` is pure arithmetic; ``new_tp_group`` makes the ``torch.distributed``
subgroup of a rank's TP group (every rank creates every group, in the same order, as
``new_group`` requires).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RolloutMesh:
    """Where one rank sits: its data-parallel group (``dp_rank`` of ``dp_size``) and its
    place in that group's tensor-parallel engine (``tp_rank`` of ``tp_size``; the group's
    ranks ``tp_ranks``, the first of them its leader)."""

    dp_rank: int
    dp_size: int
    tp_rank: int
    tp_size: int
    tp_ranks: tuple[int, ...]

    @classmethod
    def of(cls, rank: int, world: int, tp_size: int = 1) -> RolloutMesh:
        """The mesh position of ``rank`` among ``world`` ranks with ``tp_size`` a group."""
        if tp_size < 1 or world < 1 or world % tp_size:
            raise ValueError(f"a tensor-parallel size of {tp_size} must be >= 1 and divide the {world} rank(s)")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, {world})")
        dp_rank = rank // tp_size
        first = dp_rank * tp_size
        return cls(dp_rank, world // tp_size, rank % tp_size, tp_size, tuple(range(first, first + tp_size)))

    @property
    def rank(self) -> int:
        return self.tp_ranks[self.tp_rank]

    @property
    def world(self) -> int:
        return self.dp_size * self.tp_size

    @property
    def is_leader(self) -> bool:
        """The first rank of its TP group (its RNG drives the group's sampling)."""
        return self.tp_rank == 0

    def seed(self, base: int) -> int:
        """The engine's sampling seed: one per data-parallel group (``base + dp_rank``), the
        same on every rank of a TP group (its members must sample identically). With
        ``tp_size`` 1 this is ``base + rank``."""
        return base + self.dp_rank


def layout_problem(world: int, tp_size: int, local_world: int | None = None) -> str | None:
    """What is wrong with groups of ``tp_size`` consecutive ranks among ``world`` ranks
    (``local_world`` per node, None: unknown), to follow the flag's name in an error; None
    when the layout works. The trainer's and the evaluator's checks both ask here."""
    if world % tp_size:
        return f"must divide the number of ranks ({world}): each group of that many consecutive ranks shares one engine"
    if local_world is not None and tp_size > local_world:
        return (
            f"spans more than one node ({local_world} ranks per node): a tensor-parallel engine needs "
            "its ranks on one node's interconnect"
        )
    return None


def tp_groups(world: int, tp_size: int) -> list[tuple[int, ...]]:
    """Every TP group's ranks, in order: ``[(0..T-1), (T..2T-1), ...]``."""
    return [RolloutMesh.of(r, world, tp_size).tp_ranks for r in range(0, world, tp_size)]


def new_tp_group(mesh: RolloutMesh, backend: str = "gloo"):
    """The ``torch.distributed`` group of ``mesh``'s TP ranks (a collective: every rank
    calls it, and creates every group). Gloo by default: the group exchanges Python objects
    (prompts, images, RNG states) that live on the CPU whatever the device."""
    import torch.distributed as dist

    own = None
    for ranks in tp_groups(mesh.world, mesh.tp_size):
        group = dist.new_group(list(ranks), backend=backend)
        if ranks == mesh.tp_ranks:
            own = group
    return own
