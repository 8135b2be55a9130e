"""The judge's helper process: ``python -m rethinker.judge.sandbox``.

Reads one JSON request per line from stdin (``{"g": gold, "p": pred, "t": timeout}``),
answers one JSON line (``{"r": verdict}``) on stdout. It runs each comparison in its own
main thread under an interval timer, so math-verify is time-bounded even when the caller
grades from a worker thread; the caller kills it if it ever stops answering.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from .symbolic import PARSE_ERROR, compare_here, warm_up

    warm_up()
    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for raw in sys.stdin.buffer:
        try:
            req = json.loads(raw)
            result = compare_here(str(req["g"]), str(req["p"]), req.get("t"))
        except Exception:
            result = PARSE_ERROR
        out.write(json.dumps({"r": result}).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    main()
