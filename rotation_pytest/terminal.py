"""The terminal output is scanned too: everything pytest's terminal writer prints (progress, failure sections with
their tracebacks and captured output, the short summary) passes through a filter that replaces any registered secret,
whole or a fragment of 12 or more characters, before it reaches the screen or a CI log. A replacement is a leak
that was stopped: the run fails and says so at its very end (after the short summary, which can carry one too).

Every secret the run touches is known to that filter, the evidence's redaction and the self-scan from the start
(`register_run_secrets`, at configure): the DSN's password (URL, key=value, PGPASSWORD, ROTATION_DSN), and every
secret of the app's .env (DB key, provider secrets, DATABASE_URL's password), not only the ones a step rotates.

Tracebacks carry no locals or arguments (`quiet_tracebacks`, once scenarios are collected): pytest's long style
prints every frame's arguments, and a library frame's (psycopg's `conninfo = '... password=...'`) is out of our
reach; the short style shows the code and the error only, in the terminal, junit.xml and cucumber.json alike.

Called from the evidence plugin (rotation_pytest.evidence): `register_run_secrets` at configure, `guard` at session
start, `quiet_tracebacks` after collection, `report` at unconfigure."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import pytest

from rotation.evidence.leaks import Leak, SecretScanner, run_secrets
from rotation_pytest.bdd import wrap_terminal_file

Secrets = Callable[[], tuple[str, ...]]


class RedactingStream:
    """A text stream in front of the terminal: whole lines are scanned and redacted; a partial line waits for its end
    (or a flush), so that a secret split over two writes is still seen whole."""

    def __init__(self, inner: TextIO, secrets: Secrets) -> None:
        self._inner, self._secrets, self._pending = inner, secrets, ""
        self._scanner = SecretScanner()
        self.leaks: list[Leak] = []

    def write(self, text: str) -> int:
        self._pending += text
        done, newline, rest = self._pending.rpartition("\n")
        if newline:
            self._pending = rest
            self._emit(done + newline)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            text, self._pending = self._pending, ""
            self._emit(text)
        self._inner.flush()

    def _emit(self, text: str) -> None:
        clean, found = self._scanner.redact(text, self._secrets())
        self.leaks += found
        self._inner.write(clean)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...: the terminal's own
        return getattr(self._inner, name)


@dataclass
class TerminalGuard:
    stream: RedactingStream | None = None
    session: pytest.Session | None = None
    leaks: list[Leak] = field(default_factory=list)


GUARD = pytest.StashKey[TerminalGuard]()


def guard(session: pytest.Session, secrets: Secrets) -> None:
    """Put the filter in front of the terminal writer (once per session)."""
    config = session.config
    if GUARD in config.stash:
        return
    state = config.stash[GUARD] = TerminalGuard(session=session)

    def wrap(inner: TextIO) -> TextIO:
        state.stream = RedactingStream(inner, secrets)
        return state.stream  # type: ignore[return-value]

    wrap_terminal_file(config, wrap)


def report(config: pytest.Config) -> None:
    """At the very end: a registered secret that reached the terminal writer fails the run (it was redacted)."""
    state = config.stash.get(GUARD, None)
    if state is None or state.stream is None:
        return
    state.stream.flush()
    if not state.stream.leaks:
        return
    seen = sorted({leak.message() for leak in state.stream.leaks})
    out = getattr(state.stream, "_inner", sys.stdout)
    for message in seen:
        out.write(f"SECRET LEAK: {message}: redacted before display; the run fails\n")
    out.flush()
    if state.session is not None and state.session.exitstatus == pytest.ExitCode.OK:
        state.session.exitstatus = pytest.ExitCode.TESTS_FAILED


def register_run_secrets(config: pytest.Config, register: Callable[[str], None], names: list[str]) -> int:
    """Register the session's database password(s) and every secret of the app's .env before anything runs;
    `names` are the .env settings the configuration rotates. Returns how many."""
    found = run_secrets(dsns=[config.getoption("dsn", None)], env_files=[config.getoption("env_file", None)],
                        environ=os.environ, names=names)
    for secret in found:
        register(secret)
    return len(found)


LOCALS_FREE_STYLES = ("short", "line", "native", "no")


def quiet_tracebacks(config: pytest.Config) -> None:
    """No frame's arguments or locals in any failure report of a run of scenarios: long (and auto) become short,
    --showlocals is off."""
    if getattr(config.option, "tbstyle", "auto") not in LOCALS_FREE_STYLES:
        config.option.tbstyle = "short"
    config.option.showlocals = False
