"""Every scenario carries at least one control tag from the catalog: a missing or unknown one fails collection
with a message naming the scenario and what is wrong, and nothing is written."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rotation.evidence.controls import load_catalog
from tests.evidence.project import run, tagged_feature


@pytest.mark.parametrize(("tags", "message"), [
    ("", "no control tag"),
    ("@db_encryption_key", "no control tag"),
    ("@SOC2-CC9.9", "unknown control tag @SOC2-CC9.9"),
    ("@SOC2-CC6.1 @PCI-3.6.9", "unknown control tag @PCI-3.6.9"),
])
def test_a_badly_tagged_scenario_fails_collection(pytester: pytest.Pytester, project: Callable[..., Path],
                                                  tags: str, message: str) -> None:
    root = project(**{"tags.feature": tagged_feature(tags)})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = "\n".join(result.errlines)
    assert "every scenario needs at least one control tag" in errors
    assert f"Scenario 'Checked for control tags' (features/tags.feature:5): {message}" in errors
    assert not (root / "reports").exists()


def test_a_badly_tagged_scenario_fails_even_when_deselected(pytester: pytest.Pytester,
                                                            project: Callable[..., Path]) -> None:
    project(**{"tags.feature": tagged_feature("")})
    result = run(pytester, "-k", "nothing_matches")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_a_known_control_tag_is_accepted(pytester: pytest.Pytester, project: Callable[..., Path]) -> None:
    project(**{"tags.feature": tagged_feature("@PCI-8.6.3")})
    run(pytester).assert_outcomes(passed=1)


def test_the_control_markers_are_the_catalogs_registered_once() -> None:
    """The plugin registers a marker for each control of controls.yaml; pytest.ini lists none (one definition)."""
    catalog = load_catalog()
    project = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "pytest", "--markers"], cwd=project, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    marked = {line.removeprefix("@pytest.mark.").split(":")[0] for line in done.stdout.splitlines()
              if line.startswith("@pytest.mark.")}
    assert {m for m in marked if catalog.looks_like_control(m)} == set(catalog.controls)
    ini = (project / "pytest.ini").read_text()
    assert not [c for c in catalog.controls if c in ini], "pytest.ini repeats a control of controls.yaml"
    assert not catalog.controls["PCI-8.3.9"].applicable
    assert "not applicable" in catalog.controls["PCI-8.3.9"].applicability.lower()
