"""DbKeyRotation's guards, called directly on a staging world: .env never gets the new key while the app still runs;
--abandon-pending starts over only while the pending key is in neither .env nor any value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rotation.core import envfile, prerequisites, state
from rotation.core.config import default_config
from rotation.core.deployment import Deployment
from rotation.core.proof import CheckFailed, NoEvidence
from rotation.db_key.procedure import DbKeyRotation
from staging.postgres import StagingServer
from staging.world import staging_world

EVIDENCE = NoEvidence()


@pytest.fixture
def world(pg: StagingServer, tmp_path: Path) -> Iterator[Deployment]:
    with staging_world(pg.admin_dsn, tmp_path / "app", default_config(), rows=20, operator="test") as deployment:
        prerequisites.back_up(deployment, EVIDENCE)
        yield deployment


def rotation(world: Deployment, *, abandon: bool = False) -> DbKeyRotation:
    return DbKeyRotation(world, reason="test", workers=1, abandon_pending=abandon)


def test_env_keeps_the_old_key_while_the_app_runs(world: Deployment) -> None:
    r = rotation(world)
    r.generate_key(EVIDENCE)
    with pytest.raises(CheckFailed, match="still answers healthy") as refused:
        r.write_env(EVIDENCE)
    assert envfile.get_secret(world.env_file, "DB_ENCRYPTION_KEY") == r.old_key
    assert r.new_key.reveal() not in str(refused.value)
    prerequisites.stop_app(world, EVIDENCE)
    r.write_env(EVIDENCE)
    assert envfile.get_secret(world.env_file, "DB_ENCRYPTION_KEY") == r.new_key


def test_a_rerun_takes_up_the_pending_key_and_its_rotation(world: Deployment) -> None:
    first = rotation(world)
    first.generate_key(EVIDENCE)
    again = rotation(world)
    again.generate_key(EVIDENCE)
    assert (again.new_key, again.old_key, again.rotation_id) == (first.new_key, first.old_key, first.rotation_id)


def test_abandon_pending_starts_over_while_the_key_reached_nothing(world: Deployment) -> None:
    first = rotation(world)
    first.generate_key(EVIDENCE)
    second = rotation(world, abandon=True)
    second.generate_key(EVIDENCE)
    assert second.new_key != first.new_key and second.rotation_id != first.rotation_id
    assert second.old_key == first.old_key


def test_abandon_pending_is_refused_once_the_key_is_in_env(world: Deployment) -> None:
    first = rotation(world)
    first.generate_key(EVIDENCE)
    prerequisites.stop_app(world, EVIDENCE)
    first.write_env(EVIDENCE)
    with pytest.raises(CheckFailed, match="already holds the pending key"):
        rotation(world, abandon=True).generate_key(EVIDENCE)
    current = state.load(world.env_file, "db_encryption_key")
    assert current is not None and current.rotation_id == first.rotation_id and current.step == "set"


def test_abandon_pending_is_refused_once_a_value_is_under_the_key(world: Deployment) -> None:
    first = rotation(world)
    first.generate_key(EVIDENCE)
    prerequisites.stop_app(world, EVIDENCE)
    first.write_env(EVIDENCE)
    first.reencrypt(EVIDENCE)
    envfile.set_value(world.env_file, "DB_ENCRYPTION_KEY", first.old_key)  # someone put the old key back by hand
    with pytest.raises(CheckFailed, match="values are already under the pending key"):
        rotation(world, abandon=True).generate_key(EVIDENCE)
