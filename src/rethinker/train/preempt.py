"""Graceful preemption: what a cluster sends before it kills a job (SIGTERM from SLURM,
Kubernetes and spot instances; SIGUSR1 from SLURM's ``--signal=USR1@SECONDS``; SIGINT
from Ctrl-C) asks the trainer to stop at the next safe point with a checkpoint.

The first signal sets a flag: the rollout engine stops generating (the step in progress
is then abandoned and its checkpoint is the one before it, taken from the step's starting
state), or, when the signal comes after the rollout, the step finishes and is saved. A
second signal ends the process at once. Under ``torchrun`` the ranks agree on the stop
(one all-reduce of the flag at each safe point), so every rank saves the same step.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: the exit status of a run stopped by a signal after writing its checkpoint (EX_TEMPFAIL:
#: "try again"; a scheduler requeues it with the same ``--resume`` command)
EXIT_PREEMPTED = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Preempted(Exception):
    """Raised out of the loop after the stop's checkpoint was written."""

    def __init__(self, signum: int, step: int, checkpoint: str | None):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        where = f"checkpoint-{step} written" if checkpoint else "no step finished, nothing to save"
        super().__init__(f"stopped by {name} after step {step}: {where}")


@dataclass
class StopFlag:
    """The stop request of this process: set by the first signal, read by the loop and by
    the rollout engine (``requested``)."""

    signum: int | None = None
    _previous: dict[int, Any] = field(default_factory=dict)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> StopFlag:
        """Handle the stop signals (main thread only; elsewhere nothing is installed)."""
        try:
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread: leave the default handlers
            self._previous.clear()
        return self

    def uninstall(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # the second signal: stop at once
            print(f"received {signal.Signals(signum).name} again: exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.signum = signum
        print(
            f"received {signal.Signals(signum).name}: stopping at the next safe point with a checkpoint "
            "(send it again to exit at once)",
            file=sys.stderr,
            flush=True,
        )

    def agreed(self, ctx) -> int | None:
        """The signal every rank stops for, or None (a collective under torchrun)."""
        signum = int(ctx.max_float(float(self.signum or 0)))
        if signum and self.signum is None:
            self.signum = signum  # another rank was signalled: stop with it
        return signum or None


@contextmanager
def cut_short(engine, flag: StopFlag) -> Iterator[None]:
    """Let a stop signal cut ``engine``'s generation short for the duration (the training
    rollout only: an evaluation always runs whole, since its numbers are logged)."""
    engine.stop_requested = lambda: flag.requested
    try:
        yield
    finally:
        engine.stop_requested = None
