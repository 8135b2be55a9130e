"""Selective Sample Replay (SSR): choose which samples of a rollout step the update trains on.

When every response of a query gets the same reward, the whole group has advantage 0 and
gives no gradient. SSR resamples the informative (A != 0) samples, preferring large |A|.
One entry point, ``SampleSelector(mode=...)``, with the four modes of docs/method.md:

``paper`` (default), the paper's pseudocode::

    effective = [j : A_j != 0]                                   # this step's samples
    p_j       = |A_j|^alpha / sum_{k in effective} |A_k|^alpha   # alpha = 1
    selection = rng.choice(effective, size=batch_size, p=p)      # with replacement

  ``batch_size`` defaults to the step's sample count N (the update sees as many samples as
  plain GRPO). No effective sample -> empty selection, ``skipped_update=True``.

``released``, the authors' ``active_sampling``:
  target = batch_size or N // refill_factor (refill factor 2). A FIFO buffer of capacity C
  (default: N // refill_factor of the first step) receives this step's A != 0 samples,
  the oldest dropping out. Candidates = shuffled A != 0 samples + the first
  floor(positive_share * n_nonzero) "positive" zero-advantage samples (reward >
  positive_threshold), truncated to the target; draw min(target, n_candidates) of them
  with replacement, p proportional to |A|^alpha (the positive ones weigh
  ``positive_weight``: 0 as released, so never drawn). The rest of the target comes from
  the buffer with p proportional to |A| + 1e-4: whole copies of the buffer while more than
  its size is missing, then a draw with replacement (the released loop).
  An empty selection (nothing non-zero now or in the buffer) skips the update (the
  released loop would spin forever there). ``max_age`` (not in the released code) caps
  staleness: buffered samples more than ``max_age`` steps older than this step's are
  dropped before the draw (plain prioritized replay without an age limit has been
  reported to degrade LLM/VLM RL).

``filter``: A != 0 samples only, shuffled, whole copies then a uniform draw with
  replacement to fill ``batch_size`` (default N) -- DAPO-like dynamic sampling.

``off``: plain GRPO: every sample of the step once, in order (``batch_size`` ignored).

Samples: the selector is generic over ``Sample`` records; it reads only ``advantage``
and ``reward`` and passes everything else through untouched. Replayed samples (released
mode) come from earlier steps: their ``behaviour_logprobs`` (log-probs of the policy that
generated them, stored at generation time) must serve as old log-probs in the importance
ratio, and their ``prompt`` must be self-contained (not an index into a per-step cache).

Determinism: the selector owns a ``numpy.random.Generator`` (PCG64) seeded by ``seed``;
``state_dict()`` holds its state and the buffer, ``load_state_dict`` restores both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .. import metric_names as M
from .sample import Sample

SSRMode = Literal["paper", "released", "filter", "off"]
SSR_MODES: tuple[str, ...] = ("paper", "released", "filter", "off")


def check_mode(mode: str, name: str = "ssr mode") -> None:
    """Raise ``ValueError`` unless ``mode`` is one of ``SSR_MODES``."""
    if mode not in SSR_MODES:
        raise ValueError(f"{name} must be one of {'|'.join(SSR_MODES)}, got {mode!r}")


@dataclass(frozen=True)
class SSRConfig:
    """The ``ssr`` section of the training config: ``SampleSelector``'s settings."""

    mode: str = "paper"  # paper | released | filter | off
    alpha: float = 1.0
    batch_size: int | None = None  # samples per update; None -> the step's sample count
    positive_share: float = 0.1  # released mode
    refill_factor: int = 2  # released mode
    #: released mode: replay only samples at most this many steps (policy versions) older
    #: than the newest; None: no limit, as released
    max_age: int | None = None

    def __post_init__(self) -> None:
        check_mode(self.mode)
        if self.max_age is not None and self.max_age < 0:
            raise ValueError(f"max_age must be >= 0 or None, got {self.max_age}")


@dataclass
class Selection:
    """The samples to train on, in order, with where each came from.

    ``indices[k]``: position of ``samples[k]`` in this step's input list, -1 when it is a
    sample of an earlier step. ``from_buffer[k]``: drawn in the buffer (replay) phase.
    """

    samples: list[Sample]
    indices: list[int]
    from_buffer: list[bool]
    stats: dict[str, float]
    skipped_update: bool

    #: the statistics a training step logs (the rest describe the selector's inner state)
    LOGGED = (
        M.EFFECTIVE_BEFORE_SSR,
        M.EFFECTIVE_AFTER_SSR,
        M.SSR_MEAN_ABS_ADV,
        M.SSR_POSITIVE_SHARE,
        M.SSR_SELECTED,
        M.SSR_UNIQUE,
        M.SSR_REPLAYED,
        M.SSR_REPLAY_AGE_MAX,
    )

    @property
    def metrics(self) -> dict[str, float]:
        return {k: self.stats[k] for k in self.LOGGED if k in self.stats}


def ssr_probabilities(advantages: Sequence[float] | np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """p_j = |A_j|^alpha / sum_k |A_k|^alpha (zero-advantage entries get p = 0).

    Raises ValueError when no entry is non-zero, or on NaN/inf.
    """
    a = np.abs(np.asarray(advantages, dtype=np.float64))
    if not np.all(np.isfinite(a)):
        raise ValueError("advantages contain NaN or inf")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    w = np.where(a > 0, a**alpha, 0.0)
    total = w.sum()
    if total <= 0:
        raise ValueError("no non-zero advantage to draw from")
    return w / total


def _effective_ratio(advs: Sequence[float]) -> float:
    return float(np.mean([a != 0 for a in advs])) if len(advs) else 0.0


class SampleSelector:
    """Selective Sample Replay; ``select(samples)`` once per rollout step (see module doc)."""

    def __init__(
        self,
        mode: SSRMode = "paper",
        alpha: float = 1.0,
        batch_size: int | None = None,
        seed: int = 0,
        *,
        refill_factor: int = 2,
        positive_share: float = 0.1,
        positive_threshold: float = 0.95,
        positive_weight: float = 0.0,
        buffer_capacity: int | None = None,
        buffer_eps: float = 1e-4,
        max_age: int | None = None,
    ) -> None:
        check_mode(mode)
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        if refill_factor < 1:
            raise ValueError(f"refill_factor must be >= 1, got {refill_factor}")
        if buffer_capacity is not None and buffer_capacity < 1:
            raise ValueError(f"buffer_capacity must be >= 1 or None, got {buffer_capacity}")
        if positive_weight < 0 or not 0 <= positive_share:
            raise ValueError("positive_weight and positive_share must be >= 0")
        self.mode = mode
        self.alpha = float(alpha)
        self.batch_size = batch_size
        self.seed = seed
        self.refill_factor = refill_factor
        self.positive_share = positive_share
        self.positive_threshold = positive_threshold
        self.positive_weight = positive_weight
        self.buffer_capacity = buffer_capacity
        self.buffer_eps = buffer_eps
        self.max_age = max_age
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.buffer: deque[Sample] = deque(maxlen=buffer_capacity)

    @classmethod
    def from_config(cls, config: SSRConfig, seed: int = 0) -> SampleSelector:
        return cls(
            config.mode,
            config.alpha,
            config.batch_size,
            seed,
            refill_factor=config.refill_factor,
            positive_share=config.positive_share,
            max_age=config.max_age,
        )

    # ------------------------------------------------------------------ selection
    def select(self, samples: Sequence[Sample]) -> Selection:
        """Choose this step's training samples (with repetition) from ``samples``."""
        samples = list(samples)
        advs = []
        for i, s in enumerate(samples):
            a = float(s.advantage)
            if not np.isfinite(a) or not np.isfinite(float(s.reward)):
                raise ValueError(f"sample {i} has a non-finite advantage or reward")
            advs.append(a)
        if self.mode == "off":
            picked: list[tuple[Sample, int, bool]] = [(s, i, False) for i, s in enumerate(samples)]
        elif self.mode == "paper":
            picked = self._paper(samples, advs)
        elif self.mode == "filter":
            picked = self._filter(samples, advs)
        else:
            picked = self._released(samples, advs)
        chosen = [p[0] for p in picked]
        newest = max((int(x.step) for x in samples), default=0)
        trained = [float(s.advantage) for s in chosen]
        stats = {
            M.EFFECTIVE_BEFORE_SSR: _effective_ratio(advs),
            M.EFFECTIVE_AFTER_SSR: _effective_ratio(trained),
            "n_candidates": float(len(samples)),
            M.SSR_SELECTED: float(len(chosen)),
            M.SSR_UNIQUE: float(len({id(s) for s in chosen})),
            M.SSR_REPLAYED: float(sum(p[2] for p in picked)),
            "n_from_earlier_steps": float(sum(p[1] < 0 for p in picked)),
            M.SSR_REPLAY_AGE_MAX: float(max((newest - int(p[0].step) for p in picked if p[2]), default=0)),
            "buffer_size": float(len(self.buffer)),
        }
        if trained:  # the trained batch: its mean |A| and share of positive advantages
            stats[M.SSR_MEAN_ABS_ADV] = sum(abs(a) for a in trained) / len(trained)
            stats[M.SSR_POSITIVE_SHARE] = sum(a > 0 for a in trained) / len(trained)
        skipped = len(chosen) == 0
        stats["skipped_update"] = float(skipped)
        return Selection(
            samples=chosen,
            indices=[p[1] for p in picked],
            from_buffer=[p[2] for p in picked],
            stats=stats,
            skipped_update=skipped,
        )

    def _paper(self, samples: list[Sample], advs: list[float]) -> list[tuple[Sample, int, bool]]:
        nonzero = [i for i, a in enumerate(advs) if a != 0]
        if not nonzero:
            return []
        size = self.batch_size if self.batch_size is not None else len(samples)
        p = ssr_probabilities([advs[i] for i in nonzero], self.alpha)
        draws = self.rng.choice(len(nonzero), size=size, replace=True, p=p)
        return [(samples[nonzero[d]], nonzero[d], False) for d in draws]

    def _filter(self, samples: list[Sample], advs: list[float]) -> list[tuple[Sample, int, bool]]:
        nonzero = [i for i, a in enumerate(advs) if a != 0]
        if not nonzero:
            return []
        order = [nonzero[j] for j in self.rng.permutation(len(nonzero))]
        remaining = self.batch_size if self.batch_size is not None else len(samples)
        out: list[int] = []
        while remaining > 0:
            if remaining > len(order):
                out.extend(order)
            else:
                out.extend(order[j] for j in self.rng.choice(len(order), size=remaining, replace=True))
            remaining -= len(order)
        return [(samples[i], i, False) for i in out]

    def _released(self, samples: list[Sample], advs: list[float]) -> list[tuple[Sample, int, bool]]:
        n = len(samples)
        if self.buffer.maxlen is None:
            cap = self.buffer_capacity or max(n // self.refill_factor, 1)
            self.buffer = deque(self.buffer, maxlen=cap)
        nonzero = [i for i, a in enumerate(advs) if a != 0]
        positive = [i for i, a in enumerate(advs) if a == 0 and float(samples[i].reward) > self.positive_threshold]
        self.buffer.extend(samples[i] for i in nonzero)
        if self.max_age is not None and samples:  # staleness cap: drop what is too old to replay
            newest = max(int(x.step) for x in samples)
            self.buffer = deque(
                (x for x in self.buffer if newest - int(x.step) <= self.max_age), maxlen=self.buffer.maxlen
            )
        target = self.batch_size if self.batch_size is not None else n // self.refill_factor

        shuffled = [nonzero[j] for j in self.rng.permutation(len(nonzero))]
        n_pos = int(self.positive_share * len(nonzero))
        candidates = (shuffled + positive[:n_pos])[:target]
        out: list[tuple[Sample, int, bool]] = []
        if candidates:
            w = np.array(
                [abs(advs[i]) ** self.alpha if advs[i] != 0 else self.positive_weight for i in candidates],
                dtype=np.float64,
            )
            if w.sum() > 0:
                draws = self.rng.choice(len(candidates), size=min(target, len(candidates)), replace=True, p=w / w.sum())
                out.extend((samples[candidates[d]], candidates[d], False) for d in draws)

        remaining = target - len(out)
        buf = list(self.buffer)
        if remaining > 0 and buf:
            index_of = {id(s): i for i, s in enumerate(samples)}
            wb = np.array([abs(float(s.advantage)) + self.buffer_eps for s in buf], dtype=np.float64)
            pb = wb / wb.sum()
            picks: list[int] = []
            while remaining > 0:
                if remaining > len(buf):
                    picks.extend(range(len(buf)))
                else:
                    picks.extend(int(j) for j in self.rng.choice(len(buf), size=remaining, replace=True, p=pb))
                remaining -= len(buf)
            out.extend((buf[j], index_of.get(id(buf[j]), -1), True) for j in picks)
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Plain objects: mode, settings, rng state (dict of ints), buffer (list of dicts;
        samples that share a prompt share its dict)."""
        prompts: dict[int, dict[str, Any]] = {}
        return {
            "version": 1,
            "mode": self.mode,
            "alpha": self.alpha,
            "seed": self.seed,
            "buffer_capacity": self.buffer.maxlen,
            "rng": self.rng.bit_generator.state,
            "buffer": [s.to_dict(prompts) for s in self.buffer],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rng and buffer saved by ``state_dict`` (mode must match)."""
        if state.get("version") != 1:
            raise ValueError(f"unknown SampleSelector state version {state.get('version')!r}")
        if state["mode"] != self.mode:
            raise ValueError(f"state is for ssr mode {state['mode']!r}, selector is {self.mode!r}")
        bg = np.random.PCG64()
        bg.state = state["rng"]
        self.rng = np.random.Generator(bg)
        prompts: dict[int, Any] = {}
        self.buffer = deque((Sample.from_dict(d, prompts) for d in state["buffer"]), maxlen=state["buffer_capacity"])
