"""Stopping a training run at a safe point when asked to by a signal.

A process that trains calls :func:`stop_on_signals`; SIGTERM, SIGINT or SIGHUP then only *request* a stop,
and the trainer honours it at its next :func:`check` (before a batch, never while an epoch's record and
checkpoint are written), raising :class:`RunInterrupted`. The last per-epoch checkpoint stays valid, so
running the same command again resumes from it. Without :func:`stop_on_signals` nothing changes.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

#: The signals a run stops on: ``kill``/``timeout``/end of an allocation, Ctrl-C, a closed terminal.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_requested: int | None = None


class RunInterrupted(BaseException):
    """A stop requested by a signal, raised at a safe point (a ``BaseException``, as ``KeyboardInterrupt``)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


def request_stop(signum: int = signal.SIGTERM) -> None:
    global _requested
    if _requested is None:
        _requested = signum


def stop_requested() -> int | None:
    """The signal that asked for a stop, or None."""
    return _requested


def check() -> None:
    """Raise :class:`RunInterrupted` if a stop was requested (cheap: called before every batch)."""
    if _requested is not None:
        raise RunInterrupted(_requested)


@contextmanager
def stop_on_signals(signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Within the block, ``signals`` request a stop instead of killing the process (main thread only)."""
    global _requested

    def handler(signum: int, frame: FrameType | None) -> None:
        request_stop(signum)

    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        _requested = None
