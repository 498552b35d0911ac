"""Steps of the runbook's Troubleshooting "Application Won't Start After Rotation". The syntax check and the restore
live in rotation.troubleshooting.env_syntax; staging breaks .env for real (rotation_pytest.troubles). The other two
troubleshooting procedures have their own steps modules (troubleshooting_decryption, troubleshooting_api)."""

from __future__ import annotations

from pytest_bdd import given, parsers, then, when

from rotation.core import prerequisites
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence
from rotation.troubleshooting import env_syntax
from rotation_pytest.troubles import StagingTrouble


@given(parsers.parse("a rotation of the {credential} left its line in .env unparsable"), target_fixture="broken_line")
def unparsable_line(staging_trouble: StagingTrouble, credential: str, evidence: Evidence) -> int:
    return staging_trouble.env_line_unparsable(credential, evidence)


@given("the application won't start")
def wont_start(deployment: Deployment, evidence: Evidence) -> None:
    prerequisites.restart_app(deployment, evidence)
    env_syntax.require_not_started(deployment, evidence)


@when("the .env syntax is verified", target_fixture="syntax")
def syntax_verified(deployment: Deployment, evidence: Evidence) -> env_syntax.SyntaxReport:
    return env_syntax.verify_syntax(deployment.env_file, evidence)


@then("the check names that line, and no other")
def names_that_line(syntax: env_syntax.SyntaxReport, broken_line: int) -> None:
    env_syntax.require_names_line(syntax, broken_line)


@when(".env is restored from the newest backup")
def restored(deployment: Deployment, evidence: Evidence) -> None:
    env_syntax.restore(deployment, evidence)


@then("the .env syntax check passes")
def syntax_passes(deployment: Deployment, evidence: Evidence) -> None:
    env_syntax.require_parses(deployment.env_file, evidence)
