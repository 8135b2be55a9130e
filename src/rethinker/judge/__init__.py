"""rethinker.judge: extract the final answer, grade it, turn the grade into a reward.

One judge serves training rewards and evaluation. Modules, in reading order:
``extract`` (find the answer), ``normalize`` (canonical strings), ``choice`` (option
letters), ``numeric`` (plain numbers), ``symbolic`` (math-verify, time-bounded),
``grade`` (the verdict), ``reward`` (the method's reward), ``selfcheck`` (counters).
"""

from .extract import ALL_RULES, DEFAULT_RULES, EVAL_RULES, TRAIN_RULES, Extraction, extract, extract_answer, has_box
from .grade import DEFAULT_TIMEOUT_S, REASONS, Verdict, clear_caches, grade, grade_many, is_correct, shutdown_pools
from .reward import RewardConfig, RewardResult, reward
from .selfcheck import count_self_checks, count_wait_words

__all__ = [
    "ALL_RULES",
    "DEFAULT_RULES",
    "DEFAULT_TIMEOUT_S",
    "EVAL_RULES",
    "REASONS",
    "TRAIN_RULES",
    "Extraction",
    "RewardConfig",
    "RewardResult",
    "Verdict",
    "clear_caches",
    "count_self_checks",
    "count_wait_words",
    "extract",
    "extract_answer",
    "grade",
    "grade_many",
    "has_box",
    "is_correct",
    "reward",
    "shutdown_pools",
]
