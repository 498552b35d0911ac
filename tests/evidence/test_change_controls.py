"""Issue 23 item 3: every scheduled procedure is a change to production and carries the same change-management
controls (SOC 2 CC8.1) as every other: the database key rotation like the provider rotations. The rule lives in the
catalog (controls.yaml `changes`), so a scheduled scenario without them fails collection; this test holds the
project's own features to it and shows the rule fails a feature that breaks it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_bdd.feature import get_feature

from rotation.core.config import default_config
from rotation.evidence.controls import load_catalog
from tests.evidence.project import run, tagged_feature
from tests.harness import PROJECT


def scheduled_scenarios() -> dict[str, set[str]]:
    """Every @scheduled scenario of the project's features, with its tags (the feature's included)."""
    found = {}
    features = PROJECT / "rotation_suite" / "features"
    for path in sorted(features.rglob("*.feature")):
        feature = get_feature(str(features), str(path.relative_to(features)))
        for template in feature.scenarios.values():
            tags = set(template.tags) | set(feature.tags)
            if "scheduled" in tags:
                found[f"{path.name}: {template.name}"] = tags
    return found


def test_every_scheduled_procedure_carries_the_change_management_controls() -> None:
    catalog = load_catalog()
    assert catalog.change_management == ("SOC2-CC8.1",)
    scheduled = scheduled_scenarios()
    # every credential of the registry has its scheduled rotation: the set must not shrink unnoticed
    assert {t for tags in scheduled.values() for t in tags} >= set(default_config().types)
    missing = {name: sorted(set(catalog.change_management) - tags) for name, tags in scheduled.items()
               if not set(catalog.change_management) <= tags}
    assert not missing, f"scheduled procedures without the change-management controls: {missing}"
    assert all(not catalog.problems(tags) for tags in scheduled.values())


def test_the_rule_names_a_scheduled_scenario_without_cc8_1() -> None:
    catalog = load_catalog()
    problems = catalog.problems({"rotation", "scheduled", "db_encryption_key", "SOC2-CC6.1", "PCI-3.7.4"})
    assert problems == ["a @scheduled procedure is a change to production: it needs @SOC2-CC8.1 (change "
                        "management), like every other"]
    assert catalog.problems({"rotation", "db_encryption_key", "SOC2-CC6.1"}) == []  # not scheduled: not a change


def test_a_scheduled_scenario_without_cc8_1_fails_collection(pytester: pytest.Pytester,
                                                             project: Callable[..., Path]) -> None:
    root = project(**{"tags.feature": tagged_feature("@scheduled @SOC2-CC6.1")})
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ("Scenario 'Checked for control tags' (features/tags.feature:5): a @scheduled procedure is a change to "
            "production: it needs @SOC2-CC8.1") in "\n".join(result.errlines)
    assert not (root / "reports").exists()


def test_a_scheduled_scenario_with_cc8_1_is_collected(pytester: pytest.Pytester, project: Callable[..., Path]) -> None:
    project(**{"tags.feature": tagged_feature("@scheduled @SOC2-CC6.1 @SOC2-CC8.1")})
    run(pytester).assert_outcomes(passed=1)
