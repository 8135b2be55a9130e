"""The judge's helper process: ``python -m rethinker.judge.sandbox``.

Reads one JSON request per line from stdin and answers one JSON line on stdout:

- ``{"op": "compare", "g": gold, "p": pred, "t": timeout, "n": precision}`` -> ``{"r": outcome}``: one
  symbolic comparison (for callers outside the main thread);
- ``{"op": "grade", "items": [...], "options": {...}}`` -> ``{"verdicts": [...]}``: a
  chunk of ``grade_many``.

Everything runs in this process's main thread, so each comparison has a preemptive
deadline; the caller kills the process if it ever stops answering.
"""

from __future__ import annotations

import json
import sys

from .grade import clear_caches, grade
from .symbolic import PARSE_ERROR, compare_here, warm_up


def _serve(req: dict) -> dict:
    op = req.get("op")
    if op == "compare":
        try:
            return {"r": compare_here(str(req["g"]), str(req["p"]), req.get("t"), req.get("n"))}
        except Exception:
            return {"r": PARSE_ERROR}
    if op == "clear":
        clear_caches(helpers=False)
        return {"ok": True}
    if op == "grade":
        options = dict(req.get("options") or {})
        options["rules"] = tuple(options.get("rules") or ("box",))
        return {"verdicts": [dict(vars(grade(**item, **options))) for item in req["items"]]}
    return {"error": f"unknown op {op!r}"}


def main() -> None:
    warm_up()
    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for raw in sys.stdin.buffer:
        try:
            answer = _serve(json.loads(raw))
        except Exception as exc:  # a malformed request: answer, do not die
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
