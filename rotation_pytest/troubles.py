"""The troubles the Troubleshooting scenarios start from, made for real by staging: a .env line left unparsable, a
token rotated behind the app's back, a database key rotation killed part-way. Every one of these scenarios is tagged
@staging_only (rotation_pytest.markers), so on live none of these fixtures is ever requested; the steps name the
trouble in the runbook's words and never the stand-in that makes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pytest

from rotation.core.deployment import Deployment
from rotation.core.proof import Evidence
from rotation.providers.base import Provider
from staging.env_trouble import leave_unparsable
from staging.interrupted_rotation import InterruptedDbKeyRotation
from staging.provider_standins import rotate_behind_the_apps_back


@dataclass(frozen=True)
class StagingTrouble:
    """What a troubleshooting scenario breaks on purpose in its staging world."""

    deployment: Deployment

    def env_line_unparsable(self, credential: str, evidence: Evidence) -> int:
        """The credential's line in .env rewritten with an unterminated quote; returns its line number."""
        return leave_unparsable(self.deployment.env_file, self.deployment.config.credential(credential), evidence)

    def token_rotated_without_reload(self, provider: Provider, evidence: Evidence) -> None:
        """The token rotated at the provider and in .env, the old one retired, the app not reloaded."""
        rotate_behind_the_apps_back(self.deployment, provider, evidence)


class InterruptedRotation(Protocol):
    """A database key rotation killed part-way (staging.interrupted_rotation), as the steps use it."""

    @property
    def broken(self) -> list[tuple[str, str, str]]: ...  # (table, row id, column) of each value no key opens

    def run(self, evidence: Evidence) -> None: ...

    def break_unreached_value(self, evidence: Evidence) -> None: ...


@pytest.fixture
def staging_trouble(deployment: Deployment) -> StagingTrouble:
    return StagingTrouble(deployment)


@pytest.fixture
def interrupted_rotation(deployment: Deployment) -> InterruptedRotation:
    return InterruptedDbKeyRotation(deployment)
