"""The findings every procedure checks before its first change (rotation.core.preflight): each one holds on a good
setup and fails, naming its fix, when what it checks is broken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from rotation.core import preflight
from rotation.core.app_control import AppCommands
from rotation.core.database import connect
from staging.crm import apply_crm_schema
from staging.postgres import StagingServer, app_database


def test_the_signing_key_must_be_ed25519_and_sign(tmp_path: Path) -> None:
    good = tmp_path / "good.pem"
    good.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    assert preflight.signing_key(good, required=True).ok
    ecdsa = tmp_path / "ec.pem"
    ecdsa.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    found = preflight.signing_key(ecdsa, required=True)
    assert not found.ok and "not Ed25519" in found.found and "openssl genpkey -algorithm ed25519" in found.fix
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    assert "is not a PEM private key" in preflight.signing_key(garbage, required=True).found
    assert not preflight.signing_key(tmp_path / "missing.pem", required=True).ok
    assert not preflight.signing_key(None, required=True).ok and preflight.signing_key(None, required=False).ok


def test_the_env_file_is_checked_where_it_really_is(tmp_path: Path) -> None:
    target = tmp_path / "config" / "app.env"
    target.parent.mkdir()
    target.write_text("A=1\n")
    link = tmp_path / ".env"
    link.symlink_to(target)
    found = preflight.env_file(link)
    assert found.ok and f"a symlink to {target}" in found.found
    assert not preflight.env_file(tmp_path / "absent.env").ok


def test_the_reports_folder_needs_room(tmp_path: Path) -> None:
    assert preflight.reports_folder(tmp_path / "reports").ok
    found = preflight.reports_folder(tmp_path / "reports", room=1 << 62)
    assert not found.ok and "KiB free, less than" in found.found and "--reports-dir" in found.fix
    assert not list((tmp_path / "reports").iterdir()), "the probe file is removed"


def test_app_settings_name_what_is_missing() -> None:
    app = AppCommands(start="start", stop="", restart="r", reload="", health_url="http://127.0.0.1:1/health")
    found = preflight.app_settings(app)
    assert not found.ok and found.found == "stop not configured"


@pytest.fixture
def crm_dsn(pg: StagingServer) -> Iterator[str]:
    with app_database(pg.admin_dsn) as dsn:
        with psycopg.connect(dsn) as conn:
            apply_crm_schema(conn)
        yield dsn


def test_execute_on_pgcrypto_is_read_from_the_catalog_and_granted_as_named(pg: StagingServer, crm_dsn: str) -> None:
    with connect(crm_dsn) as conn:
        assert all(f.ok for f in preflight.database_privileges(conn))
    admin = make_conninfo(pg.admin_dsn, dbname=conninfo_to_dict(crm_dsn)["dbname"])
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("REVOKE EXECUTE ON FUNCTION hmac(text, text, text) FROM PUBLIC")
    with connect(crm_dsn) as conn:
        found = {f.check: f for f in preflight.database_privileges(conn)}
    role = conninfo_to_dict(crm_dsn)["user"]
    assert not found["pgcrypto"].ok and found["pgcrypto"].fix == f'GRANT EXECUTE ON FUNCTION hmac(text,text,text) ' \
                                                                 f'TO "{role}";'
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(found["pgcrypto"].fix)
    with connect(crm_dsn) as conn:
        assert all(f.ok for f in preflight.database_privileges(conn))
