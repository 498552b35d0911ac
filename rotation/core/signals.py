"""SIGINT (Ctrl-C) and SIGTERM (systemd, kill) as a request to stop at the next safe point, never mid-write.

`install()` (the pytest plugin does it for the main process) turns both into `Interrupted`, a KeyboardInterrupt, so
the run stops the way pytest stops on Ctrl-C: the step is cut short, fixture teardowns run (the DB key rotation puts
itself in a safe state there) and the run folder is written. A transaction in flight is rolled back by the
connection's context manager (psycopg cancels the query on KeyboardInterrupt). Writes that must not be cut in half
run inside `deferred()`: a signal that arrives there is held and raised when the block ends, so .env and the
rotation state are never left half-changed. `shielded()` holds a signal and drops it: for the work that puts the run
in its safe state, which must finish whatever the operator presses.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The operator (or the system) asked the run to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} received: the run stopped at a safe point")
        self.signum = signum


_held: list[int] = []      # signals received inside deferred()/shielded() blocks
_depth = [0]               # nesting of those blocks
_previous: dict[int, object] = {}


def _handler(signum: int, frame: FrameType | None) -> None:
    if _depth[0]:
        _held.append(signum)
        return
    raise Interrupted(signum)


def install() -> bool:
    """Handle SIGINT and SIGTERM as above (main thread only; returns whether it did)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for signum in HANDLED:
        _previous.setdefault(signum, signal.getsignal(signum))
        signal.signal(signum, _handler)
    return True


def uninstall() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_previous.items()):
        signal.signal(signum, previous)  # type: ignore[arg-type]
        del _previous[signum]


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Finish this block before reacting to a signal; one that came meanwhile is raised when it ends."""
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
    if not _depth[0] and _held:
        signum = _held[0]
        _held.clear()
        raise Interrupted(signum)


@contextlib.contextmanager
def shielded() -> Iterator[list[int]]:
    """Finish this block whatever arrives; yields the list of signals held (and dropped) meanwhile."""
    _depth[0] += 1
    seen: list[int] = []
    try:
        yield seen
    finally:
        _depth[0] -= 1
        seen.extend(_held)
        if not _depth[0]:
            _held.clear()
