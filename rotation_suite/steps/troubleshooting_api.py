"""Steps of the runbook's Troubleshooting, "API calls failing after token rotation". The checks are
rotation.troubleshooting.api_calls; the trouble itself (a token rotated behind the app's back) is staging's, offered
by the plugin (rotation_pytest.troubles)."""

from __future__ import annotations

import pytest
from pytest_bdd import given, then, when

from rotation.core.config import Credential
from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence
from rotation.providers.base import Provider
from rotation.troubleshooting.api_calls import ApiCallDiagnosis
from rotation_pytest.troubles import StagingTrouble


@pytest.fixture
def api_calls(deployment: Deployment, scenario_credential: Credential | None,
              provider_adapter: Provider) -> ApiCallDiagnosis:
    return ApiCallDiagnosis(deployment, scenario_credential, provider_adapter)


@given("the Twilio auth token was rotated at Twilio and in .env, but the application was not reloaded")
def rotated_without_reload(staging_trouble: StagingTrouble, provider_adapter: Provider, evidence: Evidence) -> None:
    staging_trouble.token_rotated_without_reload(provider_adapter, evidence)


@then("the application's Twilio API calls fail")
def calls_fail(api_calls: ApiCallDiagnosis, evidence: Evidence) -> None:
    api_calls.calls_fail(evidence)


@when("the Twilio auth token in .env is checked with Twilio")
def token_checked(api_calls: ApiCallDiagnosis, evidence: Evidence) -> None:
    api_calls.check_env_credential(evidence)


@then("Twilio accepts the Twilio auth token in .env")
def token_accepted(api_calls: ApiCallDiagnosis, evidence: Evidence) -> None:
    api_calls.env_credential_accepted(evidence)


@then(".env has no typo: it parses and the Twilio auth token has the form Twilio issues")
def no_typo(api_calls: ApiCallDiagnosis, evidence: Evidence) -> None:
    api_calls.no_typo(evidence)


@then("the application runs on a configuration loaded before .env last changed, with another Twilio auth token")
def app_stale(api_calls: ApiCallDiagnosis, evidence: Evidence) -> None:
    api_calls.app_config_stale(evidence)


@then("the application uses the Twilio auth token in .env")
def app_uses_env_token(api_calls: ApiCallDiagnosis, evidence: Evidence) -> None:
    api_calls.app_uses_env_credential(evidence)
