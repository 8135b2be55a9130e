"""DAPO's dynamic sampling (``rollout.dynamic_sampling``): draw more queries, round after
round, until the step holds as many groups with a non-zero advantage as one draw has
groups, or ``rollout.max_sampling_rounds`` draws were made; only those groups are kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .. import metric_names as M
from ..algo.sample import Sample
from .distributed import DistContext, merge_metrics
from .experience import Experience, groups_of


def informative_groups(samples: list[Sample], group_size: int) -> list[Sample]:
    """The samples of the groups with a non-zero advantage. Groups are ``sample.group``
    (``group_size`` first-pass responses, plus any kept rethink appended to them)."""
    return [s for g in groups_of(samples) if any(x.advantage != 0 for x in g) for s in g]


def keep_informative(exp: Experience, group_size: int, first_group: int = 0) -> Experience:
    """The informative groups of one draw with their records, the groups renumbered from
    ``first_group`` (so that ``sample.group`` indexes the records of the joined draws)."""
    kept = groups_of(informative_groups(list(exp.samples), group_size))
    records = tuple(exp.records[g[0].group] for g in kept)
    samples = [replace(s, group=first_group + k) for k, g in enumerate(kept) for s in g]
    return replace(exp, records=records, samples=tuple(samples))


def draw_informative(draw: Callable[[], Experience], group_size: int, max_rounds: int, ctx: DistContext) -> Experience:
    """The informative groups of up to ``max_rounds`` draws, at most one draw's worth.
    Every rank makes the same number of rounds (a round gathers the sharded policy)."""
    first = draw()
    target = len(first.records)  # one draw's worth of groups
    rounds = [first]
    kept = keep_informative(first, group_size)
    while len(rounds) < max_rounds and ctx.sum_float(max(target - len(kept.records), 0)) > 0:
        more = draw()
        rounds.append(more)
        more = keep_informative(more, group_size, first_group=len(kept.records))
        kept = replace(kept, records=kept.records + more.records, samples=kept.samples + more.samples)
    records = kept.records[:target]
    samples = tuple(s for s in kept.samples if s.group < target)
    generated = tuple(r for e in rounds for r in e.generated)
    metrics = merge_metrics([e.metrics for e in rounds], [len(e.samples) for e in rounds])
    for k in {k for e in rounds for k in e.metrics if k.startswith("time/") or k == M.ROLLOUT_TOKENS}:
        metrics[k] = sum(e.metrics.get(k) or 0 for e in rounds)  # rounds run one after another
    metrics.update(
        {
            M.DYNAMIC_ROUNDS: len(rounds),
            M.DYNAMIC_GENERATED: len(generated) // group_size,
            M.DYNAMIC_KEPT: len(records),
        }
    )
    return Experience(records, samples, metrics, generated, sum(e.skipped for e in rounds))
