"""A pytest plugin for the DSN-leak test's negative control (`PYTEST_ADDOPTS="-p tests.leak_sabotage"`): it undoes
the masking at the source, so that the test can show its scan finds a DSN password once nothing hides it. It
patches the suite's own code on purpose: what it switches off is that code.

- the recorded command line keeps DSN passwords (`strip_url_passwords` becomes the identity);
- the session registers no DSN or .env secret (`run_secrets` finds none);
- failure reports print every frame's arguments and locals again (--tb=long --showlocals, after the plugin's own
  collection hook set them quiet).
"""

from __future__ import annotations

import pytest

import rotation_pytest.evidence
import rotation_pytest.terminal

rotation_pytest.evidence.strip_url_passwords = lambda text: text  # type: ignore[assignment]
rotation_pytest.terminal.run_secrets = lambda **_: []  # type: ignore[assignment]


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.option.tbstyle = "long"
    session.config.option.showlocals = True
