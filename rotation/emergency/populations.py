"""The emergency procedure's population figures as an auditor re-runs them in psql: the statement that counted the
population, with the window (and the message statuses) as psql variables instead of bound parameters.

    psql "$DATABASE_URL" -v window_start='2026-03-01T10:00:00Z' -v window_end='2026-03-02T10:00:00Z' -f count.sql

The query returns `total`: the rows in the window, which the review (or the audit) must have covered in full."""

from __future__ import annotations

import datetime as dt

from rotation.core.proof import PopulationQuery

PLACEHOLDERS = {"%(start)s": ":'window_start'", "%(end)s": ":'window_end'", "%(statuses)s": ":'sent_statuses'"}


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def in_window(statement: str, start: dt.datetime, end: dt.datetime, *, subject: str,
              statuses: tuple[str, ...] = ()) -> PopulationQuery:
    """A count(*) over the window (bound as %(start)s / %(end)s) as psql text returning `total`."""
    text = statement.strip().replace("SELECT count(*)", "SELECT count(*) AS total", 1)
    for placeholder, variable in PLACEHOLDERS.items():
        text = text.replace(placeholder, variable)
    variables = {"window_start": _iso(start), "window_end": _iso(end)}
    if statuses:
        variables["sent_statuses"] = "{" + ",".join(statuses) + "}"
    return PopulationQuery(subject=subject, sql=text + ";", variables=variables,
                           reads="{verified:,} of {total:,} reviewed")
