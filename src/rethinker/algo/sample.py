"""One response as the trainer carries it: from the rollout through SSR to the update."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Sample:
    """One response with what its update needs; the selector reads advantage and reward.

    ``prompt``: the prompt inputs or a self-contained reference to them (opaque to SSR).
    ``completion_ids`` / ``completion_mask``: response token ids [T] and loss mask [T].
    ``behaviour_logprobs``: log-probs [T] of the response under the policy that sampled it.
    ``group``: query/group id; ``step``: rollout step that generated it.
    """

    advantage: float
    reward: float
    group: Any = None
    step: int = 0
    prompt: Any = None
    completion_ids: Any = None
    completion_mask: Any = None
    behaviour_logprobs: Any = None
    correct: bool | None = None
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Shallow dict of the fields (tensors kept as tensors; torch.save / pickle safe)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        return cls(**d)
