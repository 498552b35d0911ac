"""The runbook's executable suite, shipped inside the package so an installed `rotation` runs the very features an
auditor reads: `features/` (the procedures in Gherkin) and `steps/` (thin step definitions calling the library).

`plugins` names the pytest plugins the suite runs with; `pytest.ini` beside it is the suite's pytest configuration,
the one `rotation` runs with from a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

SUITE = Path(__file__).resolve().parent
FEATURES = SUITE / "features"
STEPS = SUITE / "steps"
PYTEST_INI = SUITE / "pytest.ini"
