"""How procedures prove what they did: the evidence they record and the checks that fail.

Procedures record through the `Evidence` protocol (the pytest plugin's recorder implements it; `NoEvidence` for
library callers that keep none). A check that does not hold raises `CheckFailed` with a message saying what was
expected and what was found, by fingerprint and count, never a secret. Steps never `assert` on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from rotation.core.errors import RotationError
from rotation.core.secret import Secret


@dataclass(frozen=True)
class PopulationQuery:
    """How an auditor gets a population figure again: psql text of standard PostgreSQL and pgcrypto that ends in one
    read-only SELECT. `returns` maps the figure's parts to the SELECT's columns ({"verified": "opened", "total":
    "total"}); a count-only query returns only {"total": ...} and says so. `setup` is text to run first in the same
    psql session (functions shared by several queries; the report prints each setup once). A key never appears in
    the text: the query loads it with psql's `\\copy` from a file (`key_files`: file name -> which key, by
    fingerprint), so it travels as COPY data, not in a statement the server may log, and refuses a key whose
    fingerprint is not the one given as a psql variable. `variables` are psql variables (`-v name=value`), never
    secrets: fingerprints. `census` holds counts that need no key (rows, columns, non_null, nulls), taken when the
    figure was recorded, so the report can reconcile rows x columns = non-NULL + NULL. `reads` phrases the figure for
    the summary ("opens with the new key: {verified:,} of {total:,}"; `{missing}` is total - verified). `note` says
    what the query cannot re-perform."""

    subject: str
    sql: str
    variables: Mapping[str, str] = field(default_factory=dict)
    census: Mapping[str, int] = field(default_factory=dict)
    reads: str = "{verified:,} of {total:,}"
    note: str | None = None
    returns: Mapping[str, str] = field(default_factory=lambda: {"verified": "verified", "total": "total"})
    setup: str = ""
    key_files: Mapping[str, str] = field(default_factory=dict)


class Evidence(Protocol):
    def record(self, name: str, value: object, *, source: str | None = None) -> None: ...

    def population(self, label: str, verified: int, total: int, *, source: str | None = None,
                   query: PopulationQuery | None = None) -> None: ...

    def register_secret(self, secret: Secret | str) -> None: ...

    def attach(self, name: str, text: str) -> None: ...


class NoEvidence:
    """For callers of the library that keep no evidence."""

    def record(self, name: str, value: object, *, source: str | None = None) -> None:
        return None

    def population(self, label: str, verified: int, total: int, *, source: str | None = None,
                   query: PopulationQuery | None = None) -> None:
        return None

    def register_secret(self, secret: Secret | str) -> None:
        return None

    def attach(self, name: str, text: str) -> None:
        return None


class CheckFailed(RotationError):
    """A check of the procedure did not hold. The message never contains a secret."""


class NotApplicable(RotationError):
    """The check does not apply to this deployment (no git repository, no server-log access). The pytest plugin
    records the scenario as skipped with this reason, so the verdict counts it as not run: never a pass, never an
    error."""


# An evidence item whose name starts with this records an exception the run goes on with (values deliberately left
# as they were, ...): the verdict can then be INCOMPLETE at best, never PASSED, and its reasons name each one.
EXCEPTION_PREFIX = "exception: "


def record_exception(evidence: Evidence, name: str, lines: list[str], detail: object, *, source: str) -> None:
    """Record an exception to the procedure's claim (`lines`: what is not covered, each naming table, column, count
    and ids): the run's verdict says INCOMPLETE, naming them."""
    evidence.record(EXCEPTION_PREFIX + name, {"not covered": lines, "detail": detail}, source=source)


def require(condition: bool, message: str) -> None:
    """Raise CheckFailed(message) unless the condition holds."""
    if not condition:
        raise CheckFailed(message)
