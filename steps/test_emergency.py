"""Runbook "Emergency Rotation Procedure" and "Post-Incident Actions" (run with `pytest -m emergency`).

The scenarios share one incident world (the same database, .env, app and providers), in the runbook's order:
rotations, access review, notification, post-incident audit."""

import pytest
from pytest_bdd import scenarios

from staging.world import World

scenarios("emergency/compromised_credential.feature")
scenarios("emergency/access_review.feature")
scenarios("emergency/post_incident.feature")


@pytest.fixture
def world(incident_world: World) -> World:
    """Every emergency scenario acts on the one world of the incident."""
    return incident_world
