"""rethinker.algo: the RL algorithms as pure functions on tensors/arrays.

- ``advantages``: GRPO group advantages and group statistics.
- ``losses``: PPO-clip policy loss (asymmetric clip, three aggregations), auxiliary SFT loss.
- ``kl``: k1/k2/k3 KL estimators.
- ``sample``: ``Sample``, one response as the trainer carries it.
- ``ssr``: Selective Sample Replay (paper / released / filter / off).
- ``rethink``: Forced Rethinking (eligibility, cut, triggers, acceptance, token masks).
"""

from rethinker.algo.advantages import ADVANTAGE_SCALES, group_advantages, group_stats
from rethinker.algo.kl import kl_penalty
from rethinker.algo.losses import entropy_from_logits, masked_mean, policy_loss, sft_aux_loss
from rethinker.algo.rethink import (
    Acceptance,
    RethinkConfig,
    RethinkPlan,
    accept,
    choose_trigger,
    count_self_checks,
    cut_before_final_answer,
    eligible,
    join_tokens,
    plan_rethinks,
    reflection_rate,
)
from rethinker.algo.sample import Sample
from rethinker.algo.ssr import SSR_MODES, SampleSelector, Selection, SSRConfig, ssr_probabilities

__all__ = [
    "ADVANTAGE_SCALES",
    "Acceptance",
    "RethinkConfig",
    "RethinkPlan",
    "SSR_MODES",
    "Sample",
    "SampleSelector",
    "Selection",
    "accept",
    "choose_trigger",
    "count_self_checks",
    "cut_before_final_answer",
    "eligible",
    "entropy_from_logits",
    "group_advantages",
    "group_stats",
    "join_tokens",
    "kl_penalty",
    "masked_mean",
    "plan_rethinks",
    "policy_loss",
    "reflection_rate",
    "SSRConfig",
    "sft_aux_loss",
    "ssr_probabilities",
]
