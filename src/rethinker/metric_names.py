"""Every name the trainer logs to ``metrics.jsonl``, defined once, with its meaning and how
the ranks of a multi-process run combine it.

The trainer writes these keys and the report, the curves and the tests read them through
the constants below; nothing builds a metric name from strings elsewhere. A name with a
``{placeholder}`` stands for a family (one key per judge rule, per rejection reason, per
category); ``key(NAME, field=value)`` spells one member. ``docs/metrics.md`` is generated
from this table (``markdown()``; a test keeps the two equal).

Merging over ranks (and over dynamic-sampling rounds): ``sum`` for counts, ``max`` for
times and maxima, ``mean`` weighted by each rank's sample count for rates and means;
``global`` metrics are computed once, on the whole step (the gathered pool, the update's
own reductions over ranks, the merged evaluation), and never merged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    meaning: str
    merge: str = "mean"  # mean | sum | max | global
    section: str = ""


SCHEMA: dict[str, Metric] = {}
_section = ""


def _m(name: str, meaning: str, merge: str = "mean") -> str:
    if name in SCHEMA:
        raise ValueError(f"metric {name!r} defined twice")
    SCHEMA[name] = Metric(name, meaning, merge, _section)
    return name


def key(name: str, **fields: str) -> str:
    """One member of a metric family: ``key(INVALID_SHARE, rule="no_box")``."""
    return name.format(**fields)


def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"\{[a-z_]+\}", name)
    return re.compile("[^/]+".join(re.escape(p) for p in parts) + "$")


def lookup(name: str) -> Metric | None:
    """The schema entry a logged key belongs to (a family's entry for its members)."""
    if name in SCHEMA:
        return SCHEMA[name]
    for m in SCHEMA.values():
        if "{" in m.name and _pattern(m.name).match(name):
            return m
    return None


STEP = "step"

_section = "data"
TRAIN_RECORDS = _m("data/train_records", "training records loaded (logged once, at step 0)", "global")
EVAL_RECORDS = _m("data/eval_records", "dev (held-out) records loaded", "global")
TEST_RECORDS = _m("data/test_records", "test records loaded", "global")
SKIPPED_AT_LOAD = _m("data/skipped_at_load", "records skipped at load (malformed; each named in a warning)", "global")
SKIPPED_BAD = _m(
    "data/skipped_bad", "records of this step skipped at encoding (unreadable image, prompt too long)", "sum"
)

_section = "rollout (first pass)"
ACCURACY = _m("accuracy", "share of first-pass responses judged correct and valid")
INVALID_RATIO = _m(
    "invalid_ratio", "share of first-pass responses that are invalid (no box, truncated, too many waits)"
)
INVALID_SHARE = _m("reward/invalid_{rule}", "share of first-pass responses invalid for this reason")
REFLECTION_RATE = _m("reflection_rate", "share of first-pass responses with a self-check (every trigger form)")
REFLECTION_RATE_RELEASED = _m("reflection_rate/released", "the same with the released code's counter")
LENGTH_MEAN = _m("response_length/mean", "mean first-pass response length (tokens)")
LENGTH_MAX = _m("response_length/max", "longest first-pass response (tokens)", "max")
TRUNCATED_RATIO = _m("truncated_ratio", "share of first-pass responses cut at max_new_tokens")
ROLLOUT_TOKENS = _m("rollout/tokens", "tokens generated in the first pass", "sum")
ROLLOUT_TOKENS_PER_S = _m(
    "rollout/tokens_per_s", "first-pass generation speed (recomputed from the merged sums)", "sum"
)
ROLLOUT_SAMPLES = _m("rollout/samples", "responses generated this step (every dynamic-sampling round)", "global")
BUDGET_SAMPLES = _m("budget/samples", "responses generated since the run began (the --max-samples budget)", "global")
ZERO_ADV_BEFORE_RETHINK = _m(
    "groups/zero_advantage_before_rethink", "share of groups whose first-pass rewards are all equal"
)
EFFECTIVE_BEFORE_RETHINK = _m(
    "effective_ratio/before_rethink", "share of first-pass responses with a non-zero advantage"
)

_section = "Forced Rethinking"
RETHINK_ATTEMPTS = _m("rethink/attempts", "responses continued after a trigger", "sum")
RETHINK_ACCEPTED = _m("rethink/accepted", "continuations kept (they replace their original)", "sum")
RETHINK_ACCEPTANCE = _m("rethink/acceptance_rate", "accepted / attempts (recomputed from the merged sums)")
RETHINK_FIXED_WRONG = _m("rethink/fixed_wrong", "kept continuations whose first answer was wrong", "sum")
RETHINK_TOKENS = _m("rethink/tokens", "tokens generated in continuations", "sum")
RETHINK_REJECTED = _m("rethink/rejected_{reason}", "continuations rejected for this reason", "sum")
REWARD_MEAN = _m("reward/mean", "mean reward of the step's responses after Forced Rethinking")
ACCURACY_AFTER_RETHINK = _m("accuracy/after_rethink", "share correct and valid after Forced Rethinking")

_section = "groups and Selective Sample Replay"
ALL_CORRECT = _m("groups/all_correct", "share of generated groups whose responses are all correct", "global")
ALL_WRONG = _m("groups/all_wrong", "share of generated groups whose responses are all wrong", "global")
ZERO_ADVANTAGE = _m(
    "groups/zero_advantage", "share of generated groups whose rewards are all equal (no gradient)", "global"
)
EFFECTIVE_BEFORE_SSR = _m("effective_ratio/before_ssr", "share of the pool with a non-zero advantage", "global")
EFFECTIVE_AFTER_SSR = _m("effective_ratio/after_ssr", "the same in the trained batch (1.0 unless SSR is off)", "global")
SSR_MEAN_ABS_ADV = _m("ssr/mean_abs_advantage", "mean |A| of the trained batch", "global")
SSR_POSITIVE_SHARE = _m("ssr/positive_share", "share of the trained batch with A > 0", "global")
SSR_SELECTED = _m("ssr/n_selected", "samples in the trained batch (with repeats)", "global")
SSR_UNIQUE = _m("ssr/n_unique", "distinct samples in the trained batch", "global")
SSR_REPLAYED = _m("ssr/n_replayed", "samples drawn from the replay buffer (released mode)", "global")
SSR_REPLAY_AGE_MAX = _m("ssr/replay_age_max", "steps since the oldest replayed sample was generated", "global")
DYNAMIC_ROUNDS = _m("dynamic/rounds", "dynamic-sampling draws this step")
DYNAMIC_GENERATED = _m("dynamic/generated_groups", "groups generated over those draws")
DYNAMIC_KEPT = _m("dynamic/kept_groups", "groups with a non-zero advantage kept for the update")

_section = "update"
UPDATE_SKIPPED = _m("update/skipped", "1 when the step had nothing to train on, else 0", "global")
OPTIMIZER_STEPS = _m("update/optimizer_steps", "optimizer steps taken (mini-batches with finite gradients)", "global")
NONFINITE_STREAK = _m(
    "update/nonfinite_streak",
    "consecutive optimizer steps skipped as non-finite, up to now (optim.max_nonfinite_steps stops the run)",
    "global",
)
SKIPPED_NONFINITE = _m(
    "update/skipped_nonfinite", "mini-batches skipped for a non-finite loss or gradient norm", "global"
)
UPDATE_TOKENS = _m("update/tokens", "completion tokens trained on", "global")
UPDATE_TOKENS_PER_S = _m("update/tokens_per_s", "update speed", "global")
GRAD_NORM = _m("grad_norm", "gradient norm before clipping (mean over mini-batches)", "global")
ENTROPY = _m("entropy", "token-mean policy entropy over the trained tokens (nats)", "global")
LOSS_POLICY = _m("loss/policy", "clipped policy-gradient loss", "global")
LOSS_KL = _m("loss/kl", "KL to the frozen reference (with algo.kl_coef > 0)", "global")
LOSS_SFT = _m("loss/sft", "auxiliary SFT loss on correct positive-advantage responses (algo.sft_coef > 0)", "global")
CLIP_FRAC_LOW = _m("loss/clip_frac_low", "share of tokens clipped below 1 - clip_low", "global")
CLIP_FRAC_HIGH = _m("loss/clip_frac_high", "share of tokens clipped above 1 + clip_high", "global")
APPROX_KL = _m("loss/approx_kl", "approximate KL between the behaviour and the current policy", "global")
RATIO_MEAN = _m("loss/ratio_mean", "mean importance ratio", "global")
RATIO_MIN = _m("loss/ratio_min", "smallest importance ratio", "global")
RATIO_MAX = _m("loss/ratio_max", "largest importance ratio", "global")
PARAM_DELTA_NORM = _m(
    "update/param_delta_norm",
    "norm of the parameter change of the optimizer steps (mean over them; optim.log_update_norm)",
    "global",
)
LR = _m("lr", "learning rate after this step", "global")

_section = "time and memory"
TIME_STEP = _m(
    "time/step_s", "wall time of the step, its bookkeeping included (evaluation and checkpoint excluded)", "global"
)
TIME_ROLLOUT = _m("time/rollout_s", "first-pass generation time", "max")
TIME_RETHINK = _m("time/rethink_s", "Forced Rethinking time (continuations and judging)", "max")
TIME_UPDATE = _m("time/update_s", "update time", "global")
TIME_OVERHEAD = _m(
    "time/overhead_s",
    "the step's bookkeeping: heap trim, metrics row, RSS read, sample log (part of time/step_s)",
    "global",
)
TIME_SPLIT = _m("time/{split}_s", "evaluation time on the split (eval: dev, test: test)", "global")
HOST_RSS_MB = _m("memory/host_rss_mb", "resident host memory of the main process after the step (MiB)", "global")

_section = "evaluation (greedy; split is eval for the dev set, test for the test set)"
SPLIT_ACCURACY = _m("{split}/accuracy", "greedy accuracy on the split", "global")
SPLIT_CI_LOW = _m("{split}/ci_low", "lower end of its Wilson 95% interval", "global")
SPLIT_CI_HIGH = _m("{split}/ci_high", "upper end of its Wilson 95% interval", "global")
SPLIT_N = _m("{split}/n", "items judged", "global")
SPLIT_SKIPPED = _m("{split}/skipped", "items skipped (bad input)", "global")
SPLIT_REFLECTION = _m("{split}/reflection_rate", "share of greedy answers with a self-check", "global")
SPLIT_AFTER_RETHINK = _m(
    "{split}/accuracy_after_rethink",
    "greedy accuracy after a forced trigger and the policy's continuation (rethink_at_test)",
    "global",
)
SPLIT_WRONG_TO_RIGHT = _m("{split}/wrong_to_right", "answers the forced rethink turned from wrong to right", "global")
SPLIT_RIGHT_TO_WRONG = _m("{split}/right_to_wrong", "answers the forced rethink turned from right to wrong", "global")
SPLIT_CATEGORY_ACCURACY = _m("{split}/accuracy/{category}", "greedy accuracy per category (toy: puzzle kind)", "global")
_section = ""

#: the members of the evaluation families that the trainer and the report read by name
EVAL_ACCURACY, EVAL_CI_LOW, EVAL_CI_HIGH = (key(n, split="eval") for n in (SPLIT_ACCURACY, SPLIT_CI_LOW, SPLIT_CI_HIGH))
TEST_ACCURACY = key(SPLIT_ACCURACY, split="test")


def merge_kind(name: str) -> str:
    """How ranks combine ``name`` (``mean`` for a global key or one outside the schema)."""
    m = lookup(name)
    return m.merge if m is not None and m.merge != "global" else "mean"


def markdown() -> str:
    """``docs/metrics.md``: every metric with its meaning and merge rule, by section."""
    lines = [
        "# Metrics",
        "",
        "Every key `rethinker train` writes to `metrics.jsonl` (one JSON object per step; step 0",
        "holds the data counts and the base policy's evaluation). Generated from",
        "`src/rethinker/metric_names.py` by `python -m rethinker.metric_names`; do not edit by hand.",
        "A `{placeholder}` stands for a family of keys. *Ranks*: how the processes of a",
        "multi-process run (and the draws of dynamic sampling) are combined: `sum`, `max`, `mean`",
        "(weighted by each rank's samples), or `global` (computed once on the whole step).",
    ]
    current = None
    for m in SCHEMA.values():
        if m.section != current:
            current = m.section
            lines += ["", f"## {current}", "", "| key | meaning | ranks |", "|---|---|---|"]
        lines.append(f"| `{m.name}` | {m.meaning} | {m.merge} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
