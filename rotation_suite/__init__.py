"""The runbook's executable suite, shipped inside the package so an installed `rotation` runs the very features an
auditor reads: `features/` (the procedures in Gherkin) and `steps/` (thin step definitions calling the library).

`plugins` names the pytest plugins the suite runs with; `suite.ini` beside it is the suite's pytest configuration,
the one `rotation` runs with from a checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

SUITE = Path(__file__).resolve().parent
FEATURES = SUITE / "features"
STEPS = SUITE / "steps"
# Not pytest.ini: pytest must not pick it up for `pytest rotation_suite/...` in a checkout.
PYTEST_INI = SUITE / "suite.ini"
