"""rotation.troubleshooting.api_calls: the checks of "API calls failing after token rotation" against real files,
and the scenario failing at the step whose check is broken (negative controls, read from the run's evidence)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotation.core.config import default_config
from rotation.core.secret import Secret
from rotation.troubleshooting import api_calls
from tests.harness import SuiteRunner

TWILIO = default_config().credential("twilio")
FEATURE = "rotation_suite/steps/test_troubleshooting.py"


def test_loaded_before_last_change(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    mtime = env.stat().st_mtime
    assert api_calls.loaded_before_last_change(mtime - 10, env)
    assert not api_calls.loaded_before_last_change(mtime + 1, env)
    assert api_calls.loaded_before_last_change(None, env)


def test_unparsable_lines_by_number(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('A=1\nTWILIO_AUTH_TOKEN="unterminated\nB=2\n')
    assert api_calls.unparsable_lines(env) == [2]


def test_typos_name_the_problem_not_the_token() -> None:
    good = "0123456789abcdef" * 2
    assert api_calls.typos(TWILIO, Secret(good)) == []
    for bad, why in ((good + " ", "whitespace"), (f'"{good}"', "quotes"), (good[:-1], "characters"),
                     (good.upper(), "expected form"), (good[:16] + "\t" + good[17:], "non-printable")):
        problems = api_calls.typos(TWILIO, Secret(bad))
        assert any(why in p for p in problems), (why, problems)
        assert not [p for p in problems if bad.strip() in p]


@pytest.mark.parametrize(("sabotage", "step", "why"), [
    ("troubleshooting:reload-lost", "the system is healthy again", "not healthy again"),
    ("troubleshooting:token-typo", ".env has no typo", "wrapped in quotes"),
])
def test_the_scenario_fails_at_the_broken_check(suite: SuiteRunner, sabotage: str, step: str, why: str) -> None:
    run = suite.run(FEATURE, "-k", "never_reloaded", sabotage=sabotage, rows=20)
    failed = run.failed_step()
    assert failed.text.startswith(step), f"{sabotage}: the step that failed is {failed.step!r}"
    assert why in (failed.error or ""), f"{sabotage}: {failed.error}"
