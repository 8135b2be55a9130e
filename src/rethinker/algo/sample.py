"""One response as the trainer carries it, from the rollout through SSR to the update.

A step's record is a table with one row per response (``Sample``); every stage of the
loop returns new rows (``dataclasses.replace``) instead of writing into the ones it was
given. The algorithms (``advantages``, ``ssr``) read only the numeric columns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ..judge.reward import INVALID_RULES

if TYPE_CHECKING:
    from torch import Tensor

    from ..rollout.inputs import QueryInputs


@dataclass(frozen=True)
class Judgement:
    """What the judge said of a response's text: the reward rule that fired, the judge's
    reason and the extracted answer (the sample log shows them)."""

    text: str
    finished: bool
    rule: str
    reason: str | None = None
    extracted: str | None = None


@dataclass(frozen=True)
class RethinkAttempt:
    """A Forced Rethinking continuation tried from a response, kept or not.

    ``why``: ``kept`` or the acceptance filter's reason. ``first``: the first pass it was
    continued from when that was cut back before its answer (``cut``), and ``original``
    the original response when such a cut attempt was kept.
    """

    trigger: str
    continuation: str
    kept: bool
    why: str
    cut: bool
    first_correct: bool
    joined_correct: bool
    first: str | None = None
    original: str | None = None


@dataclass(frozen=True)
class Sample:
    """One response and what its update needs.

    ``prompt``: the encoded query (shared by the G samples of a group; self-contained, so
    a replayed sample needs nothing of its step). ``group``: index of its query in the
    step's records. ``completion_ids`` / ``completion_mask``: response tokens and the loss
    mask over them. ``behaviour_logprobs``: log-probs of those tokens under the policy that
    sampled them, when they had to be stored (replay, several optimizer steps).
    ``rethink``: the Forced Rethinking attempt made from this response (a kept one made
    this sample the joined response).
    """

    advantage: float
    reward: float
    group: int = 0
    step: int = 0
    prompt: QueryInputs | None = None
    completion_ids: list[int] | None = None
    completion_mask: list[int] | None = None
    behaviour_logprobs: Tensor | None = None
    correct: bool | None = None
    judgement: Judgement | None = None
    rethink: RethinkAttempt | None = None
    #: an extra member of its group: a kept rethink added beside its original
    #: (``rethink.placement append``), not one of the group's G first-pass slots
    extra: bool = False

    @property
    def valid(self) -> bool:
        """Not invalid (truncated, no boxed answer, too many waits): the judge's rule says."""
        return self.judgement is None or self.judgement.rule not in INVALID_RULES

    @property
    def valid_correct(self) -> bool:
        """Judged correct and a valid response (what the metrics count as correct)."""
        return bool(self.correct) and self.valid

    def to_dict(self, prompts: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Plain values for a checkpoint (tensors, lists, dicts: nothing that a
        ``weights_only`` load must be told about): the judgement and the prompt as dicts.
        Left out: the rethinking attempt (shown in its own step's sample log, never read
        again) and the prompt's decoded images (a replayed sample is trained on, never
        generated from). ``prompts``: the dicts made so far, by ``id`` of their prompt, so
        that the samples of a group share one dict as they shared one prompt (the update
        encodes a shared prompt once: sharing changes its arithmetic)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rethink"}
        d["judgement"] = asdict(self.judgement) if self.judgement is not None else None
        if self.prompt is not None:
            prompts = {} if prompts is None else prompts
            if id(self.prompt) not in prompts:
                prompts[id(self.prompt)] = {f.name: getattr(self.prompt, f.name) for f in fields(self.prompt)
                                            if f.name != "images"}  # fmt: skip
            d["prompt"] = prompts[id(self.prompt)]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], prompts: dict[int, Any] | None = None) -> Sample:
        """A sample from ``to_dict``; also reads the older layouts (a ``meta`` dict, the
        prompt as a ``QueryInputs``). ``prompts``: the prompts built so far, by ``id`` of
        their dict, so that samples that shared a prompt dict share one prompt again."""
        d = dict(d)
        if isinstance(d.get("prompt"), dict):
            from ..rollout.inputs import QueryInputs

            prompts = {} if prompts is None else prompts
            key = id(d["prompt"])
            if key not in prompts:
                prompts[key] = QueryInputs(**d["prompt"])
            d["prompt"] = prompts[key]
        meta = d.pop("meta", None) or {}
        judgement = d.pop("judgement", None)
        if judgement is None and "rule" in meta:
            judgement = {k: meta.get(k) for k in ("text", "finished", "rule", "reason", "extracted")}
        d.pop("rethink", None)
        return cls(**d, judgement=Judgement(**judgement) if judgement is not None else None)
