"""Revocation, recorded as it happened: who revoked (this run through an API, the operator at a console only a person
can use), when, and the provider's definitive answer that proves it ("revoked by the operator at T; refused at T2 with
535 5.7.8"). The scheduled provider rotation uses it for the SMTP password; the emergency procedure can use it for
any credential that only a person can revoke.

    operator_terminal()            the operator's terminal, opened directly at /dev/tty: pytest replaces sys.stdin,
                                   so `sys.stdin.isatty()` is always false under it; None without a controlling
                                   terminal (cron, CI, a detached session)
    ask_operator(...)              asks at that terminal and waits for the operator's word (Enter: done; "skip": not
                                   done); without a terminal it logs the instruction and returns at once
    by_this_run(source)            the act when the tool itself revoked (an API call)
    confirm_refused(check, wait)   asks the provider until a definitive refusal or until `wait` is used up; an
                                   ACCEPTED or UNDECIDED answer never counts as revoked
    Revocation                     the act and the provider's last answer, as evidence; `proven` only on REFUSED

Nothing here claims a revocation: only a REFUSED answer makes `Revocation.proven` true, and the evidence names who was
asked and what they said separately from what the provider answered.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rotation.core import progress
from rotation.core.progress import ProgressCallback
from rotation.providers.base import CheckResult, CredentialCheck, ProviderError

log = logging.getLogger("rotation.providers.revocation")
TTY = "/dev/tty"
SKIP_WORDS = ("skip", "no", "n", "stop")


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Terminal(Protocol):
    def ask(self, text: str) -> str: ...  # show `text`, return the line the operator typed ("" at end of input)


@dataclass(frozen=True)
class DevTty:
    """The controlling terminal, opened for each question (reads and writes bypass pytest's capture)."""

    path: str = TTY

    def ask(self, text: str) -> str:
        # unbuffered bytes: a terminal is not seekable, which a text-mode "r+" file requires
        with open(self.path, "rb+", buffering=0) as tty:
            tty.write(text.encode())
            line = bytearray()
            while not line.endswith(b"\n") and (byte := tty.read(1)):
                line += byte
            return line.decode(errors="replace")


def operator_terminal(path: str = TTY) -> Terminal | None:
    """The operator's terminal, or None when this process has none (opening /dev/tty fails with ENXIO)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    os.close(fd)
    return DevTty(path)


@dataclass(frozen=True)
class RevocationAct:
    """Who was to revoke, how they were asked, and what they said; nothing here says the provider agreed."""

    by: str                       # "the operator", "this run", "the staging console (playing the operator)"
    how: str                      # "asked at the operator's terminal", "POST .../Promote", ...
    asked_at: str
    done_at: str | None = None    # when the actor says it was done; None: nobody said so
    declined: bool = False        # the operator said it was not done

    def as_evidence(self) -> dict[str, object]:
        said = ("the operator said it was not done" if self.declined else
                f"done at {self.done_at}" if self.done_at else "nobody confirmed doing it")
        return {"by": self.by, "how": self.how, "asked at": self.asked_at, "said": said}


def by_this_run(source: str) -> RevocationAct:
    at = now()
    return RevocationAct("this run", source, at, at)


def ask_operator(instruction: str, terminal: Terminal | None) -> RevocationAct:
    """Ask the operator to do what only a person can (`instruction` names the credential by fingerprint, never by
    value). At a terminal: wait for Enter (done) or "skip" (not done). Without one: log the instruction; the caller
    then asks the provider, up to --revoke-wait, whether the credential is refused."""
    asked_at = now()
    if terminal is None:
        log.warning("%s (no terminal: this run asks the provider until it refuses it, up to --revoke-wait)",
                    instruction)
        return RevocationAct("the operator", "no terminal: the instruction was logged and the provider asked until "
                                             "--revoke-wait ran out", asked_at)
    try:
        typed = terminal.ask(f"\n{instruction}\nPress Enter once it is revoked (type 'skip' to stop here): ")
    except OSError as exc:  # the terminal went away mid-question
        log.warning("%s (the terminal failed: %s)", instruction, type(exc).__name__)
        return RevocationAct("the operator", "the terminal failed before an answer", asked_at)
    declined = typed.strip().lower() in SKIP_WORDS or typed == ""  # "" only at end of input: no answer
    return RevocationAct("the operator", "asked at the operator's terminal", asked_at,
                         None if declined else now(), declined=declined)


@dataclass(frozen=True)
class Revocation:
    """The act and the provider's last answer about the revoked credential."""

    act: RevocationAct
    answer: CheckResult
    answered_at: str
    checks: int
    waited_s: float

    @property
    def proven(self) -> bool:
        return self.answer.answer is CredentialCheck.REFUSED

    @property
    def reply(self) -> str:
        return f"{self.answer.status} {self.answer.code or ''}".strip()

    def sentence(self) -> str:
        if self.proven:
            when = f" at {self.act.done_at}" if self.act.done_at else ""
            return f"revoked by {self.act.by}{when}; refused at {self.answered_at} with {self.reply}"
        state = ("still accepted" if self.answer.answer is CredentialCheck.ACCEPTED else
                 "no definitive answer (undecided)")
        return (f"not revoked: {state} at {self.answered_at} ({self.reply}: {self.answer.detail}) after "
                f"{self.checks} check(s) over {self.waited_s:.0f}s")

    def as_evidence(self) -> dict[str, object]:
        return {"revocation": self.sentence(), "revoked": self.proven, "asked": self.act.as_evidence(),
                "provider's answer": self.answer.as_evidence(), "answered at": self.answered_at,
                "checks": self.checks}


@dataclass(frozen=True)
class Wait:
    """How long to keep asking the provider whether a revoked credential is refused, and how often."""

    timeout_s: float = 300.0
    interval_s: float = 10.0


@dataclass(frozen=True)
class Clock:
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic


def undecided(provider: str, fingerprint: str, error: ProviderError) -> CheckResult:
    """A check that ended in an error (unreachable, timed out, an unexpected answer): it proves nothing."""
    return CheckResult(provider, False, error.status or "error", error.code, str(error), fingerprint,
                       CredentialCheck.UNDECIDED)


def confirm_refused(check: Callable[[], CheckResult], act: RevocationAct, wait: Wait,
                    clock: Clock | None = None, on_progress: ProgressCallback | None = None) -> Revocation:
    """Ask the provider until it refuses the credential definitively, or until `wait` is used up (at least once).
    An operator who declined gets one check and no wait. `on_progress` (default: the installed progress reporter,
    rotation.core.progress) hears of each check, of the most `wait` allows (its ETA: when the wait runs out at the
    latest)."""
    clock = clock or Clock()
    started = clock.monotonic()
    checks: progress.Polls | None = None
    while True:
        answer = check()
        waited = clock.monotonic() - started
        what = f"waiting for {answer.provider} to refuse the revoked credential"
        checks = checks or progress.Polls(on_progress or progress.task(what, "checks"), wait.timeout_s,
                                          wait.interval_s)
        last = answer.answer is CredentialCheck.REFUSED or act.declined or waited + wait.interval_s > wait.timeout_s
        checks.asked(waited, last=last)
        if last:
            return Revocation(act, answer, now(), checks.asks, waited)
        clock.sleep(wait.interval_s)
