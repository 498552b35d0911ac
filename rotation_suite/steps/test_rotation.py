"""Runbook "Rotation Procedures" (sections 1-4)."""

from pytest_bdd import scenarios

scenarios("rotation")
