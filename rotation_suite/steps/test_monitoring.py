"""Runbook "Automated Rotation Monitoring"."""

from pytest_bdd import scenarios

scenarios("monitoring")
