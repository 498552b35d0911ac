"""Progress of a long step for the operator: how much is done of how much, the rate, and when it should end.

The library only counts: a long piece of work (staging a table, re-encrypting it, the sweep, a verification, asking a
provider until it refuses a revoked credential) takes a `ProgressCallback` and calls it with a `Progress` snapshot as
it goes, and once more, `final`, when it ends. Where the lines go and how often is decided at the edge:

    Paced(sink)         a Reporter that turns the snapshots of each task into lines for `sink`: a line when a tenth
                        of the total more is done (not more than one a second), else at least every `every_s`
                        seconds, and always the final line (total, time and rate)
    install(reporter)   the reporter of this process (the pytest plugin installs one that writes on the operator's
                        terminal past pytest's capture, and puts the one before back); without one, `task()` is
                        silent
    task(what, unit)    the callback for one task, from the installed reporter
    Polls(callback,...) the progress of a wait that asks again and again (ETA: when the wait runs out at the latest)

A line carries counts, a table or provider name and times only: never a value, a key or a fingerprint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Progress:
    """`done` of `total` units after `elapsed_s` seconds, `since` of them done before (by a run this one resumes);
    `final` on the last snapshot of a task."""

    done: int
    total: int
    elapsed_s: float
    final: bool = False
    since: int = 0

    @property
    def rate(self) -> float:
        """Units per second, observed over this run's work."""
        return (self.done - self.since) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the observed rate; None before any unit is done."""
        rate = self.rate
        return max(0.0, self.total - self.done) / rate if rate > 0 else None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 1.0

    def line(self, unit: str = "rows") -> str:
        """`1,200/4,000 rows (30%), 410 rows/s, ETA 7s`; the final one `4,000 rows in 9.8s, 408 rows/s`."""
        if self.final:
            resumed = f" ({self.since:,} done before)" if self.since else ""
            return f"{self.done:,} {unit}{resumed} in {duration(self.elapsed_s)}, {rate(self.rate)} {unit}/s"
        if self.eta_s is None:  # nothing done yet in this run: no rate to tell an ETA from
            return (f"{self.done:,}/{self.total:,} {unit} ({int(100 * self.fraction)}%), "
                    f"{duration(self.elapsed_s)} so far, no rate yet")
        eta = duration(self.eta_s)
        return (f"{self.done:,}/{self.total:,} {unit} ({int(100 * self.fraction)}%), {rate(self.rate)} {unit}/s, "
                f"ETA {eta}")


ProgressCallback = Callable[[Progress], None]
BEAT_S = 15.0  # how often work counted in a few large parts says it is still going (see Meter)


def rate(per_s: float) -> str:
    """1,234 / 12 / 0.4 / 0.05: whole numbers once there are ten or more."""
    return f"{per_s:,.0f}" if per_s >= 10 else f"{per_s:.1f}" if per_s >= 0.1 else f"{per_s:.2f}"


def duration(seconds: float) -> str:
    """0.4s, 37s, 4m05s, 1h02m."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Reporter(Protocol):
    def task(self, what: str, unit: str = "rows") -> ProgressCallback: ...


class Silent:
    """No lines (no reporter installed, or the operator asked for none)."""

    def task(self, what: str, unit: str = "rows") -> ProgressCallback:
        return _nothing


def _nothing(progress: Progress) -> None:
    return None


class Meter:
    """Counts one task's units from any thread and hands a snapshot to the callback at each step, `final` at the end.

    Used as a context manager with `beat_s`, it also repeats the current snapshot every `beat_s` seconds while the
    block runs: work counted in a few large parts (a slice of a table per connection) still shows it is alive."""

    def __init__(self, total: int, on_progress: ProgressCallback | None, *, done: int = 0,
                 beat_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.done, self.since = total, done, done
        self._on_progress = on_progress
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._beat_s = beat_s
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> Meter:
        if self._on_progress and self._beat_s:
            self._beat = threading.Thread(target=self._beating, args=(self._beat_s,), daemon=True,
                                          name="progress-beat")
            self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._quiet()

    def _beating(self, every: float) -> None:
        while not self._stop.wait(every):
            self.add(0)

    def _quiet(self) -> None:
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join()

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            snapshot = Progress(self.done, max(self.total, self.done), self._clock() - self._started, since=self.since)
        if self._on_progress:
            self._on_progress(snapshot)

    def finish(self, done: int | None = None) -> None:
        """The final snapshot; `done`: the exact count, where the steps were weighed by estimate."""
        self._quiet()
        if done is not None:
            self.done = done
        if self._on_progress:
            self._on_progress(Progress(self.done, max(self.total, self.done), self._clock() - self._started,
                                       final=True, since=self.since))


@dataclass
class Polls:
    """Asking again and again until a final answer or the wait runs out (a provider's refusal of a revoked
    credential, a message's final status): asks done of the most the wait allows, so the ETA is when the wait runs out
    at the latest. The first ask comes at 0 s, so the rate counts the asks after it."""

    on_progress: ProgressCallback
    timeout_s: float
    interval_s: float
    asks: int = 0

    @property
    def most(self) -> int:
        return 1 + int(self.timeout_s // self.interval_s) if self.interval_s > 0 else 1

    def asked(self, elapsed_s: float, *, last: bool) -> None:
        """One more ask, `elapsed_s` after the first; `last`: the answer ends the wait (a lone ask says nothing)."""
        self.asks += 1
        if not last:
            self.on_progress(Progress(self.asks, max(self.most, self.asks + 1), elapsed_s, since=1))
        elif self.asks > 1:
            self.on_progress(Progress(self.asks, self.asks, elapsed_s, final=True))


@dataclass
class _Paced:
    what: str
    unit: str
    sink: Callable[[str], None]
    every_s: float
    min_gap_s: float
    clock: Callable[[], float]

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._last = self.clock()
        self._tenths = 0
        self._ended = False
        self._said = False

    def __call__(self, progress: Progress) -> None:
        with self._lock:  # the engines report from their worker threads
            if self._ended:
                return
            now = self.clock()
            tenths = int(progress.fraction * 10)
            due = (progress.final or now - self._last >= self.every_s
                   or (tenths > self._tenths and now - self._last >= self.min_gap_s))
            if not due or (not progress.final and progress.fraction >= 0.99):
                return  # as good as done: the final line follows
            if progress.final and not self._said and progress.elapsed_s < self.min_gap_s:
                self._ended = True
                return  # a task over in a moment: no line at all
            self._last, self._tenths, self._ended, self._said = now, tenths, progress.final, True
            try:
                self.sink(f"{self.what}: {progress.line(self.unit)}")
            except Exception:  # noqa: BLE001  (a terminal gone away must not stop the work it reports on)
                self._ended = True


@dataclass(frozen=True)
class Paced:
    """Lines for `sink`, a few per task: one when another tenth is done (at most one a second), else one at least
    every `every_s` seconds while it runs, and the final one (total, time, rate; none for a task over within a
    second that said nothing before)."""

    sink: Callable[[str], None]
    every_s: float = 5.0
    min_gap_s: float = 1.0
    clock: Callable[[], float] = time.monotonic

    def task(self, what: str, unit: str = "rows") -> ProgressCallback:
        return _Paced(what, unit, self.sink, self.every_s, self.min_gap_s, self.clock)


_installed: Reporter = Silent()


def install(reporter: Reporter) -> Reporter:
    """Make `reporter` this process's; returns the one it replaces (to put back)."""
    global _installed
    before, _installed = _installed, reporter
    return before


@contextmanager
def installed(reporter: Reporter) -> Iterator[None]:
    before = install(reporter)
    try:
        yield
    finally:
        install(before)


def task(what: str, unit: str = "rows") -> ProgressCallback:
    """The installed reporter's callback for one task (`what`: e.g. "staging clients"; counts and names only)."""
    return _installed.task(what, unit)
