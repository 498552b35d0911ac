"""Markers that come from the deployment configuration, and the one hook for staging-only scenarios.

Credential tags (@twilio_token, ...) are registered from the credential registry, so the list of credential types
lives only in the configuration; procedure, change and control tags are registered from the controls catalog
(rotation/evidence/controls.yaml), so no list of them is repeated in pytest.ini. A scenario tagged @staging_only
(fault injection, seeded history, a stand-in's console) is skipped on live with its reason, and so counted as
not run."""

from __future__ import annotations

import pytest

from rotation.evidence.controls import load_catalog
from rotation_pytest.fixtures import config_of, target_of

STAGING_ONLY = "staging_only"


def pytest_configure(config: pytest.Config) -> None:
    catalog = load_catalog()
    for tag, title in catalog.procedures.items():
        config.addinivalue_line("markers", f"{tag}: runbook \"{title}\" (run with `pytest -m {tag}`)")
    for tag in catalog.changes:
        config.addinivalue_line("markers", f"{tag}: a change to production an operator runs live "
                                           "(`rotation db-key|provider rotate`)")
    for control in catalog.controls.values():
        config.addinivalue_line("markers", f"{control.id}: control {control.label} {control.title}")
    for credential in config_of(config).credentials:
        config.addinivalue_line("markers", f"{credential.type}: credential {credential.env} ({credential.label})")
    config.addinivalue_line("markers", f"{STAGING_ONLY}: the scenario breaks or seeds what it acts on, so it runs "
                                       "only against staging stand-ins")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if target_of(config) != "live":
        return
    skip = pytest.mark.skip(reason="staging only: this scenario breaks or seeds what it acts on; it is rehearsed "
                                   "against staging stand-ins, never run on live systems")
    for item in items:
        if item.get_closest_marker(STAGING_ONLY):
            item.add_marker(skip)
