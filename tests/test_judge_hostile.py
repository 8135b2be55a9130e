"""Hostile inputs: never rewarded, never executed, in the main thread, in threads and in
worker processes. (How long they take is measured in benchmarks/judge_speed.py.)"""

from __future__ import annotations

import builtins
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rethinker.judge import EVAL_RULES, grade, grade_many, reward
from rethinker.judge.grade import clear_caches


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("hostile") / "PWNED")


def _payloads(sentinel: str) -> list[tuple[str, str, str]]:
    """(id, response, ground truth). The ground truths are what running the code would
    produce (``os.system`` returns 0), so an eval-ing judge would reward them."""
    touch = f"__import__('os').system('touch {sentinel}')"
    code = [
        ("os-system", f"\\boxed{{{touch}}}", "0"),
        ("os-system-eval-rules", f"The answer is {touch}", "0"),
        ("eval-call", f'\\boxed{{eval("{touch}")}}', "0"),
        ("exec-call", f'\\boxed{{exec("{touch}")}}', "None"),
        ("open-write", f"\\boxed{{open('{sentinel}', 'w').write('1')}}", "1"),
        ("builtins-mutation", "\\boxed{__import__('builtins').__dict__.__setitem__('PWNED', 1)}", "None"),
        ("environ-mutation", "\\boxed{__import__('os').environ.__setitem__('RETHINKER_PWNED', '1')}", "None"),
        ("subclasses-walk", "\\boxed{().__class__.__bases__[0].__subclasses__()}", "[]"),
        ("lambda", f"\\boxed{{(lambda: {touch})()}}", "0"),
        ("python-fence", f"```python\n{touch}\n```\n\\boxed{{{touch}}}", "0"),
        ("latex-write18", f"\\boxed{{\\immediate\\write18{{touch {sentinel}}}}}", "0"),
        ("latex-input", "\\boxed{\\input{/etc/passwd}}", "root"),
        ("arith-expr", "\\boxed{2**2**2**2**2**2}", "0"),
        ("sympy-sympify-bait", "\\boxed{Symbol('x').__class__.__init__.__globals__}", "0"),
    ]
    bombs = [
        ("huge-response-no-box", "x" * 100_000, "1"),
        ("huge-answer", "\\boxed{" + "9" * 100_000 + "}", "9"),
        ("huge-response-unclosed-box", "\\boxed{" + "1+" * 50_000, "1"),
        ("unbalanced-open", "\\boxed{" + "{" * 10_000, "1"),
        ("unbalanced-close", "\\boxed{1" + "}" * 10_000 + "{", "2"),
        ("nested-braces-10k", "\\boxed{" + "{" * 10_000 + "2" + "}" * 10_000 + "}", "1"),
        ("nested-frac-500", "\\boxed{" + "\\frac{1}{" * 500 + "2" + "}" * 500 + "}", "1"),
        ("nested-sqrt-300", "\\boxed{" + "\\sqrt{" * 300 + "4" + "}" * 300 + "}", "1"),
        ("nested-parens-500", "\\boxed{" + "(" * 500 + "1" + ")" * 500 + "}", "2"),
        # short enough to pass the length cap: stopped by the nesting screen
        ("nested-frac-60", "\\boxed{" + "\\frac{1}{" * 60 + "2" + "}" * 60 + "}", "1"),
        ("nested-sqrt-100", "\\boxed{" + "\\sqrt{" * 100 + "4" + "}" * 100 + "}", "1"),
        ("nested-parens-200", "\\boxed{" + "(" * 200 + "1" + ")" * 200 + "}", "2"),
        ("nested-braces-400", "\\boxed{" + "{" * 400 + "2" + "}" * 400 + "}", "1"),
        ("power-tower", "\\boxed{9^{9^{9^{9}}}}", "1"),
        ("power-tower-flat", "\\boxed{10^10^10}", "1"),
        ("huge-exponent", "\\boxed{3^{99999999}}", "1"),
        ("huge-factorial", "\\boxed{100000000!}", "1"),
        ("computed-factorial", "\\boxed{(10^{4})!}", "1"),
        ("huge-product", "\\boxed{\\prod_{i=1}^{99999999} i}", "1"),
        ("long-sum", "\\boxed{" + "+".join(["1"] * 5000) + "}", "1"),
        ("many-boxes", "\\boxed{1}" * 20_000 + "\\boxed{2", "2"),
        ("null-bytes", "\\boxed{\x00\x00\x00}", "0"),
        ("lone-surrogate", "\\boxed{\ud800}", "1"),
        ("control-chars", "\\boxed{\x1b[2J\x07}", "1"),
        ("regex-bait-answer-is", "the answer is " * 20_000, "1"),
        ("regex-bait-answer-colon", "Answer:" * 20_000, "1"),
    ]
    return code + bombs


def _no_code_ran(sentinel: str) -> None:
    assert not os.path.exists(sentinel), "model output was executed (sentinel file created)"
    assert not hasattr(builtins, "PWNED"), "model output was executed (builtins mutated)"
    assert "RETHINKER_PWNED" not in os.environ, "model output was executed (environment mutated)"


def _ids(sentinel_path="s"):
    return [p[0] for p in _payloads(sentinel_path)]


@pytest.mark.parametrize("idx", range(len(_ids())), ids=_ids())
def test_hostile_main_thread(idx: int, sentinel: str) -> None:
    _, response, gold = _payloads(sentinel)[idx]
    for rules in (EVAL_RULES, ("box",)):
        v = grade(response, gold, rules=rules)
        assert not v.correct, v
        assert v.reason in ("no_answer", "mismatch", "parse_error", "timeout"), v
    r = reward(response, gold)
    assert r.value <= 0.0 and not r.correct, r
    _no_code_ran(sentinel)


def test_hostile_in_threads(sentinel: str) -> None:
    clear_caches()
    payloads = _payloads(sentinel)
    with ThreadPoolExecutor(max_workers=4) as ex:
        verdicts = list(ex.map(lambda p: grade(p[1], p[2], rules=EVAL_RULES), payloads))
    assert [v.correct for v in verdicts] == [False] * len(payloads)
    _no_code_ran(sentinel)


def test_hostile_in_worker_processes(sentinel: str) -> None:
    clear_caches()
    payloads = _payloads(sentinel)
    verdicts = grade_many([(p[1], p[2]) for p in payloads], workers=2, rules=EVAL_RULES)
    assert [v.correct for v in verdicts] == [False] * len(payloads)
    _no_code_ran(sentinel)


# -- time bounds: the verdict says "timeout", wherever it runs ------------------------------
_SLOW_GOLD = "x^{9}+9x^{8}+36x^{7}+84x^{6}+126x^{5}+126x^{4}+84x^{3}+36x^{2}+9x+1"


def test_timeout_in_main_thread() -> None:
    clear_caches()
    v = grade("\\boxed{(x+1)^{9}}", _SLOW_GOLD, timeout_s=1e-4)
    assert (v.correct, v.reason) == (False, "timeout")
    # the same comparison with time to finish is correct (and a timeout was not cached)
    v = grade("\\boxed{(x+1)^{9}}", _SLOW_GOLD, timeout_s=30)
    assert (v.correct, v.reason) == (True, "correct")


def test_timeout_in_thread_uses_sandbox() -> None:
    clear_caches()
    out = []
    t = threading.Thread(target=lambda: out.append(grade("\\boxed{(x+2)^{9}}", "(2+x)^{9}+1", timeout_s=1e-4)))
    t.start()
    t.join()
    assert (out[0].correct, out[0].reason) == (False, "timeout")


def test_symbolic_in_threads_matches_main_thread() -> None:
    cases = [
        ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}"),
        ("\\boxed{\\{3,1\\}}", "\\{1,3\\}"),
        ("\\boxed{x^2-1}", "(x-1)(x+1)"),
        ("\\boxed{x^2+1}", "(x-1)(x+1)"),
        ("\\boxed{(1,2]}", "(1,2]"),
    ]
    here = [(grade(r, g).correct, grade(r, g).reason) for r, g in cases]
    clear_caches()
    with ThreadPoolExecutor(max_workers=3) as ex:
        there = list(ex.map(lambda c: (lambda v: (v.correct, v.reason))(grade(*c)), cases))
    assert there == here == [(True, "correct")] * 3 + [(False, "mismatch"), (True, "correct")]


def test_deadline_restores_previous_alarm() -> None:
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        clear_caches()
        grade("\\boxed{3\\sqrt{2}}", "\\sqrt{18}")
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90.0 < remaining <= 100.0
        assert signal.getsignal(signal.SIGALRM) is not None and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
