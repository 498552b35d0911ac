"""Fixtures for the evidence plugin's tests: a fresh secret per test and a pytester project that uses it."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.evidence.project import FEATURE, make_project


@pytest.fixture
def secret() -> str:
    # Characters that URL-, JSON- and HTML-encoding change, so every encoded form differs from the raw one.
    return secrets.token_urlsafe(24) + "+/=&<\"%"


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, secret: str) -> Callable[..., Path]:
    def make(**features: str) -> Path:
        return make_project(pytester, monkeypatch, secret, features or {"keyring.feature": FEATURE})
    return make
