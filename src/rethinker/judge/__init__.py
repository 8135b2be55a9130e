"""rethinker.judge: extract the final answer, grade it, turn the grade into a reward.

One judge serves training rewards and evaluation. Modules, in reading order:
``extract`` (find the answer), ``normalize`` (canonical strings), ``choice`` (option
letters), ``numeric`` (plain numbers), ``sets`` (intervals, sets, tuples, matrices of numbers),
``symbolic`` (math-verify, screened and time-bounded), ``grade`` (the verdict),
``reward`` (the method's reward), ``selfcheck`` (counters), ``helper`` / ``sandbox``
(helper processes for threads and ``grade_many``).

Where the verdict deliberately differs from plain math-verify
(``verify(parse(gold), parse(response))``, the released code's call); each is a test
case in ``tests/test_judge_table.py`` or ``tests/test_judge_classes.py``, is counted by
``benchmarks/judge_speed.py``, and docs/judge.md gives the reasons and the agreement with
other graders' test suites (``benchmarks/judge_agreement.py``):

- the answer is the content of the last complete ``\\boxed{}``/``\\fbox{}``; with the
  training rules (the default) a response without one has no answer, where math-verify
  takes any LaTeX or number it finds; an unclosed last box is no answer;
- multiple choice: strict option letters (``B``, ``(B)``, ``B.``, ``B: text``), mapped
  to and from option texts; math-verify reads letters as symbols and cannot map texts.
  Also stricter than the released code, whose "starts with the letter" rule rewards
  ``Area is 5`` for ``A``; an answer naming a second option (``(A) or (B)``,
  ``A) 3 cm; B) 5 cm``) is no letter, and ``A:B=1`` is a ratio, not the letter ``A``;
- hedges get nothing: several values or options where one is asked for, ``\\pm 12``
  for 12, an empty or blank box (``tests/test_judge_classes.py``);
- yes/no and word answers compare as words (case, spaces, trailing period ignored);
  math-verify compares products of symbols, case-sensitively (``ab`` equals ``ba``);
- a benchmark ``precision`` rounds both numbers to that many decimals (MathVista);
  math-verify always rounds to 6;
- ``X%`` equals ``X`` and ``X/100`` for every number (math-verify: for integers only;
  ``allow_percent=False`` makes ``X%`` mean ``X/100`` only);
- a number followed by unit words equals the number (``51\\text{ cm^2}``, ``16 km/h``,
  ``5 m²``, ``250 milliliters (ml)``, ``12€``); ``10,\\!000`` is 10000; ``1e4`` is
  10000; ``17 \\bmod 5`` is 2; in a chain ``a = b = c`` the last side is the answer;
- ``precision`` applies to every entry of tuples, intervals and matrices; matrices
  compare entry by entry whatever their bracket style;
- answers that would make sympy run for minutes (over 1000 characters, brackets nested
  deeper than 12, power towers, huge exponents or factorials) are ``parse_error``
  without parsing, and every symbolic comparison is bounded (``timeout_s``, 1 s by
  default, in any thread); math-verify may hang on them;
- math-verify's ``ExprExtractionConfig`` (sympy ``parse_expr``, i.e. ``eval``) is never
  used: model output is never evaluated as code.
"""

from .extract import ALL_RULES, DEFAULT_RULES, EVAL_RULES, TRAIN_RULES, Extraction, extract, extract_answer
from .grade import DEFAULT_TIMEOUT_S, REASONS, Verdict, clear_caches, grade, grade_many, is_correct
from .reward import INVALID_RULES, RewardConfig, RewardResult, reward
from .reward import RULES as REWARD_RULES
from .selfcheck import count_self_checks, count_wait_words

__all__ = [
    "ALL_RULES",
    "DEFAULT_RULES",
    "DEFAULT_TIMEOUT_S",
    "EVAL_RULES",
    "INVALID_RULES",
    "REASONS",
    "REWARD_RULES",
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
    "is_correct",
    "reward",
]
