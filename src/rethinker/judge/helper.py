"""A judge helper process (``python -m rethinker.judge.sandbox``) and a pool of them.

Requests and answers are JSON lines over pipes. A helper that misses its deadline is
killed and started again on the next request, so nothing it runs can stall the caller.
Helpers are plain subprocesses, not ``multiprocessing`` children: they never re-import
the caller's ``__main__`` (scripts need no ``if __name__ == "__main__"`` guard) and are
safe to start from a process that holds CUDA or many threads.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


class HelperProcess:
    """One helper; ``request`` is serialized by a lock (one request at a time)."""

    #: Seconds allowed for a helper to import sympy/math-verify and warm up.
    STARTUP_S = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self.restarts = 0

    def _start(self) -> None:
        src_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = src_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rethinker.judge.sandbox"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._buf = b""
        if self._readline(time.monotonic() + self.STARTUP_S) != b"ready":
            self._kill()
            raise RuntimeError("a judge helper process did not start")

    def _readline(self, until: float) -> bytes | None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = until - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None  # the helper died
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.strip()

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
            self.restarts += 1

    def request(self, payload: dict[str, Any], timeout_s: float) -> Any | None:
        """Send ``payload``; its answer, or None (and the helper killed) when none came
        within ``timeout_s`` seconds or the helper died."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps(payload).encode() + b"\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()
                return None
            line = self._readline(time.monotonic() + timeout_s)
            if line is None:
                self._kill()
                return None
            try:
                return json.loads(line)
            except ValueError:
                self._kill()
                return None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        with self._lock:
            if self._proc is not None:
                try:
                    self._proc.stdin.close()  # type: ignore[union-attr]
                    self._proc.wait(timeout=2)
                except Exception:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None


_REGISTRY: dict[str, list[HelperProcess]] = {}
_REGISTRY_LOCK = threading.Lock()


def helpers(name: str, count: int) -> list[HelperProcess]:
    """``count`` persistent helpers registered under ``name`` (created on first use,
    closed at interpreter exit)."""
    with _REGISTRY_LOCK:
        pool = _REGISTRY.setdefault(name, [])
        while len(pool) < count:
            h = HelperProcess()
            atexit.register(h.close)
            pool.append(h)
        return pool[:count]


def running_helpers() -> list[HelperProcess]:
    """The helpers whose process is alive."""
    with _REGISTRY_LOCK:
        return [h for pool in _REGISTRY.values() for h in pool if h.running]


def close_all() -> None:
    """Stop every helper process this module started."""
    with _REGISTRY_LOCK:
        for pool in _REGISTRY.values():
            for h in pool:
                h.close()
        _REGISTRY.clear()
