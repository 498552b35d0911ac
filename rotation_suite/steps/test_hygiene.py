"""Runbook "Best Practices"."""

from pytest_bdd import scenarios

scenarios("hygiene")
