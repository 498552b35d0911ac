"""Runbook "Troubleshooting"."""

from pytest_bdd import scenarios

scenarios("troubleshooting")
