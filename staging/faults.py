"""Faults a staging run can inject on purpose (`--inject-fault NAME`), so that the negative controls in tests/ can
show each check failing its scenario. Refused with --target live."""

from __future__ import annotations

import pytest

FAULTS: dict[str, str] = {
    "env-not-ignored": "the app repository's .gitignore does not list .env",
    "env-mode-0644": ".env is world-readable (mode 0644)",
    "weak-credential": "SMTP_PASSWORD is a short dictionary-style password",
    "shared-credential": "WHATSAPP_ACCESS_TOKEN holds the same value as DB_ENCRYPTION_KEY",
    "credential-in-tracked-file": "a tracked settings file holds TWILIO_AUTH_TOKEN",
    "credential-in-history": "TWILIO_AUTH_TOKEN was committed to the app repository and later deleted",
    "overdue-rotation": "twilio_token was last rotated 95 days ago",
    "key-in-server-log": "the runbook's SQL (keys as literals in a temp table) runs during the DB key rotation",
    "bad-backup": "the newest .env backup holds a wrong DB_ENCRYPTION_KEY",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("rotation").addoption(
        "--inject-fault", action="append", default=[], choices=sorted(FAULTS), metavar="FAULT",
        help="staging only: inject a fault so that its check must fail (repeatable): "
             + "; ".join(f"{k}: {v}" for k, v in FAULTS.items()))


@pytest.fixture(scope="session")
def faults(pytestconfig: pytest.Config) -> frozenset[str]:
    chosen = frozenset(pytestconfig.getoption("inject_fault"))
    if chosen and pytestconfig.getoption("target") != "staging":
        raise pytest.UsageError("--inject-fault is for staging runs only")
    return chosen
