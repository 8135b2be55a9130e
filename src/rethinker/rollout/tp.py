"""One rollout engine shared by the T ranks of a tensor-parallel group (``rollout.mesh``).

A tensor-parallel vLLM engine started with the ``external_launcher`` executor runs one
scheduler per rank, and each rank's scheduler must see the same requests in the same
order and draw the same random numbers, or the ranks' collectives go out of step.
``TensorParallelGroupEngine`` wraps the engine (``VLLMEngine(tensor_parallel_size=T)``) so
that the trainer can go on giving each rank its own share of queries:

- every ``generate`` is a *round*: the members' requests (queries, sampling parameters)
  are gathered in the TP group (``all_gather_object``; pixel values are left out: vLLM
  runs its own processor on the kept images), every member calls the engine with the
  same joined list (member after member, in rank order) and keeps its own share, in order;
  members whose parameters differ in a round get one call per distinct parameters, in
  the same order everywhere;
- a member with nothing to generate still takes part (an empty share), and the members
  need not call ``generate`` equally often: at the points where the ranks meet (the end
  of a step's rollouts, of an evaluation) each calls ``drain()``, which keeps serving the
  others' rounds until every member has drained;
- each round samples under the group leader's (first rank's) torch RNG state, sent with
  its request: the members draw identical numbers even if their trainer RNGs drifted,
  a member's own RNG is put back afterwards, and the leader's stream goes on as a
  one-rank engine's would (its checkpointed RNG resumes it). Groups differ: each engine
  is seeded ``seed + dp_rank`` (``RolloutMesh.seed``);
- ``sync_weights`` is the engine's own: every rank pushes the full tensors, one
  parameter at a time as FSDP gathers them (``iter_sync_weights``), and vLLM's weight
  loaders keep each rank's tensor-parallel slice.

With T = 1 the trainer uses the engine directly (no wrapper, no rounds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from .base import Completion, RolloutEngine, RolloutStats, SamplingParams
from .inputs import QueryInputs
from .mesh import RolloutMesh, new_tp_group


def without_pixels(q: QueryInputs) -> QueryInputs:
    """What a member sends of a query: everything but ``pixel_values`` (vLLM re-processes
    the kept images; the patches are the largest part of a query)."""
    return replace(q, pixel_values=None)


def rng_state() -> dict[str, torch.Tensor]:
    """The torch RNG states an engine samples with (the CPU's, and the current GPU's)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


@dataclass
class _Turn:
    """One member's part of a round: its request (None: drained) and, from the leader, the
    RNG state the round samples with."""

    queries: list[QueryInputs] | None
    params: SamplingParams | None
    rng: dict[str, torch.Tensor] | None


class TensorParallelGroupEngine(RolloutEngine):
    """``inner`` shared by ``mesh``'s TP group (see the module docstring). ``gather``: one
    object from every member, in TP-rank order (default: ``all_gather_object`` over
    ``group``); ``share``: what a member sends of each query. Attributes the trainer reads
    (``pad_id``, ``eos_ids`` ...) are the inner engine's; ``stats`` counts this rank's own
    completions only (the merged sums over ranks stay right)."""

    def __init__(
        self,
        inner: RolloutEngine,
        mesh: RolloutMesh,
        group: Any = None,
        *,
        gather: Callable[[Any], list[Any]] | None = None,
        share: Callable[[QueryInputs], QueryInputs] = without_pixels,
    ):
        self.inner = inner
        self.mesh = mesh
        self.group = group
        self._gather = gather or self._all_gather
        self._share = share
        self.stats = RolloutStats(extra=inner.stats.extra)
        self.rounds = 0  # rounds this rank took part in (generate and drain)

    @property
    def holds_own_weights(self) -> bool:
        return self.inner.holds_own_weights

    @property
    def needs_images(self) -> bool:  # RolloutEngine's class default would hide the inner engine's
        return self.inner.needs_images

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (during unpickling, copying)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _all_gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.mesh.tp_size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.inner.sync_weights(model)

    def generate(self, queries: Sequence[QueryInputs], params: SamplingParams) -> list[list[Completion]]:
        t0 = time.perf_counter()
        mine = self._round(_Turn([self._share(q) for q in queries], params, None))
        assert mine is not None  # this rank's own request was in the round
        self.stats.seconds += time.perf_counter() - t0
        self.stats.tokens += sum(len(c.token_ids) for g in mine for c in g)
        return mine

    def drain(self) -> None:
        """Serve the other members' rounds until every member has drained."""
        while self._round(_Turn(None, None, None)) is not None:
            pass

    def _round(self, turn: _Turn) -> list[list[Completion]] | None:
        """One round (every member calls it): this rank's completions; None once every member
        has drained (then nothing is generated)."""
        if self.mesh.is_leader:
            turn = replace(turn, rng=rng_state())
        turns: list[_Turn] = self._gather(turn)
        self.rounds += 1
        if all(t.queries is None for t in turns):
            return None
        own = self.mesh.tp_rank
        mine: list[list[Completion]] = []
        saved = rng_state()
        set_rng_state(turns[0].rng)
        try:
            for params in _distinct([t.params for t in turns if t.queries is not None]):
                members = [i for i, t in enumerate(turns) if t.queries is not None and t.params == params]
                joined = [q for i in members for q in turns[i].queries]
                groups = self.inner.generate(joined, params)
                if len(groups) != len(joined):
                    raise RuntimeError(f"the shared engine returned {len(groups)} groups for {len(joined)} queries")
                if own in members:
                    start = sum(len(turns[i].queries) for i in members if i < own)
                    mine = groups[start : start + len(turns[own].queries)]
        finally:
            if not self.mesh.is_leader:
                set_rng_state(saved)  # the leader's stream goes on; a member's own RNG is untouched
        return mine


def _distinct(params: list[SamplingParams]) -> list[SamplingParams]:
    """The distinct sampling parameters, in order of first appearance."""
    out: list[SamplingParams] = []
    for p in params:
        if p not in out:
            out.append(p)
    return out


def group_engine(inner: RolloutEngine, tp_size: int) -> RolloutEngine:
    """``inner`` itself with ``tp_size`` 1, else ``inner`` shared by this rank's TP group
    (its ``torch.distributed`` subgroup created here: every rank must call this)."""
    if tp_size == 1:
        return inner
    import torch.distributed as dist

    mesh = RolloutMesh.of(dist.get_rank(), dist.get_world_size(), tp_size)
    return TensorParallelGroupEngine(inner, mesh, new_tp_group(mesh))
