"""The rollout interface every engine implements (transformers now; vLLM as an extra)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import torch

from .inputs import QueryInputs


@dataclass
class Sampling:
    """How tokens are drawn. ``top_k=0`` and ``top_p=1.0`` sample from softmax(logits / T)
    exactly (what the importance ratio of an on-policy update assumes). The training
    config's ``rollout`` section extends this class, so these knobs are declared once."""

    max_new_tokens: int = 2048
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0


@dataclass
class SamplingParams(Sampling):
    """One generation request: ``Sampling`` plus ``n`` completions per query, or greedy."""

    n: int = 1
    greedy: bool = False

    @classmethod
    def from_sampling(cls, sampling: Sampling, **changes) -> SamplingParams:
        """The request for ``sampling``'s knobs (any object with ``Sampling``'s fields),
        with ``changes`` (e.g. ``n``) on top."""
        values = {f.name: getattr(sampling, f.name) for f in fields(Sampling)}
        return cls(**{**values, **changes})


class NonFiniteLogits(RuntimeError):
    """The policy produced non-finite logits while sampling (diverged weights)."""


@dataclass
class Completion:
    token_ids: list[int]  # generated ids, up to and including the end-of-sequence token
    text: str  # decoded, special tokens removed
    finished: bool  # ended with an end-of-sequence token (not truncated)


@dataclass
class RolloutStats:
    tokens: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class RolloutEngine(ABC):
    """Generates ``params.n`` completions per encoded query. Completions never contain
    vision special tokens."""

    stats: RolloutStats
    #: set by the trainer: True once a stop signal arrived; an engine that can, stops
    #: generating then (the step is abandoned)
    stop_requested: Callable[[], bool] | None = None
    #: True when the engine generates with weights of its own (vLLM: pushed by
    #: ``sync_weights``); False when it runs the policy module itself (the transformers
    #: engine), whose FSDP shards must then be gathered for the rollout
    holds_own_weights: bool = False
    #: whether queries must carry their decoded images (``PromptEncoder(keep_images=True)``)
    needs_images: bool = False

    @abstractmethod
    def generate(self, queries: Sequence[QueryInputs], params: SamplingParams) -> list[list[Completion]]:
        """One list of ``params.n`` completions per query, in order."""

    def sync_weights(self, model: torch.nn.Module) -> None:  # noqa: B027 - optional
        """Make the engine sample from ``model``'s current weights (no-op when shared)."""

    def drain(self) -> None:  # noqa: B027 - optional
        """Called by every rank where the ranks meet (the end of a step's rollouts, of an
        evaluation): an engine shared by several ranks (``rollout.tp``) serves the other
        members' generation calls until each has got there. No-op for a rank's own engine."""


def extend_query(q: QueryInputs, extra_ids: Sequence[int]) -> QueryInputs:
    """A query whose prompt continues with ``extra_ids`` (text tokens), e.g. a first
    pass plus a rethinking trigger, so the policy continues from there."""
    ids = torch.as_tensor(list(extra_ids), dtype=torch.long)
    return QueryInputs(
        input_ids=torch.cat([q.input_ids, ids]),
        mm_token_type_ids=torch.cat([q.mm_token_type_ids, torch.zeros_like(ids, dtype=q.mm_token_type_ids.dtype)]),
        pixel_values=q.pixel_values,
        image_grid_thw=q.image_grid_thw,
        text=q.text,
        images=q.images,
    )
