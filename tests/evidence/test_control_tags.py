"""Every scenario carries at least one control tag from the catalog: a missing or unknown one fails collection
with a message naming the scenario and what is wrong, and nothing is written."""

from __future__ import annotations

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


def test_the_catalog_covers_every_control_tag_pytest_ini_registers() -> None:
    catalog = load_catalog()
    ini = (Path(__file__).resolve().parents[2] / "pytest.ini").read_text()
    registered = {line.split(":")[0].strip() for line in ini.splitlines() if catalog.looks_like_control(
        line.split(":")[0].strip())}
    assert registered == set(catalog.controls)
    assert not catalog.controls["PCI-8.3.9"].applicable
    assert "not applicable" in catalog.controls["PCI-8.3.9"].applicability.lower()
