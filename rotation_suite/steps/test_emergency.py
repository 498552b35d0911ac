"""Runbook "Emergency Rotation Procedure" and "Post-Incident Actions" (run with `pytest -m emergency`).

The scenarios share one incident world (the same database, .env, app and providers), in the runbook's order:
rotations, access review, notification, post-incident audit."""

import pytest
from pytest_bdd import scenarios

from rotation.core.deployment import Deployment

scenarios("emergency/compromised_credential.feature")
scenarios("emergency/compromised_db_key.feature")
scenarios("emergency/access_review.feature")
scenarios("emergency/post_incident.feature")


@pytest.fixture
def deployment(incident_deployment: Deployment) -> Deployment:
    """Every emergency scenario acts on the one deployment of the incident (the shared steps too)."""
    return incident_deployment
