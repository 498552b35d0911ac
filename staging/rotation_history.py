"""Staging rotation history: rows in the rotation log as past rotations left them, written only through
`rotation.core.rotation_log.log_rotation` (backdated with `at=`), so a seeded row is exactly what a real rotation
writes. Ages are the features' words: '1 day', '82 days', '82 days 23:59:59' or 'never' (no row at all)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Sequence

from rotation.core.config import Credential
from rotation.core.database import connect
from rotation.core.deployment import Deployment
from rotation.core.keys import generate_key
from rotation.core.rotation_log import RotationRecord, log_rotation

AGE = re.compile(r"(?P<days>\d+) days?(?: (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d))?")
ROTATED_BY = "staging-history"
FORGET = "DELETE FROM security_credential_rotations WHERE credential_type = ANY(%s)"


def parse_age(text: str) -> dt.timedelta | None:
    """'82 days', '1 day', '82 days 23:59:59', or 'never' (None)."""
    if text.strip() == "never":
        return None
    m = AGE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not an age: {text!r} (expected 'N days', 'N days HH:MM:SS' or 'never')")
    return dt.timedelta(days=int(m["days"]), hours=int(m["h"] or 0), minutes=int(m["m"] or 0),
                        seconds=int(m["s"] or 0))


def rotated(dsn: str, credential: Credential, at: dt.datetime, *, logged_as: str | None = None) -> RotationRecord:
    """One past rotation of `credential` at `at`. `logged_as` writes another credential_type, as the app's own trigger
    does (credential_type = its service name, e.g. 'twilio')."""
    as_logged = dataclasses.replace(credential, type=logged_as) if logged_as else credential
    with connect(dsn) as conn:
        return log_rotation(conn, as_logged, rotated_by=ROTATED_BY, previous=generate_key(),
                            reason="staging history", at=at)


def rotated_ago(deployment: Deployment, label: str, age: str, *, now: dt.datetime,
                logged_as: str | None = None) -> Credential:
    """The credential named `label` was last rotated `age` before `now` ('never': no row). Returns the credential."""
    credential = deployment.config.credential(label)
    ago = parse_age(age)
    if ago is not None:
        rotated(deployment.dsn, credential, now - ago, logged_as=logged_as)
    return credential


def app_logged(deployment: Deployment, label: str, age: str, *, now: dt.datetime) -> Credential:
    """The app's own trigger logged a rotation of this credential. It writes the row's credential_type as the
    service_name of security_api_credentials ('twilio', 'whatsapp', 'smtp': our provider names), whatever our
    configuration says; the configuration's log_aliases are how monitoring recognises those rows."""
    credential = deployment.config.credential(label)
    if credential.provider == "database":
        raise ValueError(f"the app logs no rotation of the {credential.label}: only its provider credentials")
    return rotated_ago(deployment, label, age, now=now, logged_as=credential.provider)


def others_rotated_ago(deployment: Deployment, age: str, *, now: dt.datetime,
                       except_for: Iterable[Credential] = ()) -> list[Credential]:
    """Every credential of the registry but `except_for` was rotated `age` before `now`."""
    skipped = {c.type for c in except_for}
    return [rotated_ago(deployment, c.type, age, now=now) for c in deployment.config.credentials
            if c.type not in skipped]


def table_rotated(deployment: Deployment, rows: Sequence[Sequence[str]], *, now: dt.datetime) -> list[Credential]:
    """A feature's table | credential | rotated |: each named credential rotated that long ago; the rest never."""
    header, *body = rows
    records = [dict(zip(header, row, strict=True)) for row in body]
    return [rotated_ago(deployment, r["credential"], r["rotated"], now=now) for r in records]


def forget(dsn: str, credential: Credential) -> None:
    """Remove every logged rotation of the credential (under its type and its aliases): a staging sabotage only."""
    with connect(dsn) as conn:
        conn.execute(FORGET, (list(credential.log_names),))
        conn.commit()
