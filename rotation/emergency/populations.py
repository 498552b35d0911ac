"""The emergency procedure's population figures as an auditor re-runs them in psql: the statement that counted the
population, with the window (and the message statuses) written into it as literals. They are not secrets, and a
literal is what the auditor compares with the report.

Every window is half-open, `(start, end]`: a row stamped exactly at the start belongs to the window before (the
baseline the access review compares with), one stamped exactly at the end to this one. Both bounds are whole
milliseconds (`to_millisecond`, applied where the window is chosen), so the bounds printed in the evidence, to the
millisecond, are exactly the bounds the count used.

The query is count-only: it returns `total`, the rows in the window. How many of them the review (or the audit)
covered is the procedure's own count, which the figure compares with that total."""

from __future__ import annotations

import datetime as dt

from rotation.core.proof import PopulationQuery

WINDOW = "(start, end]"
PLACEHOLDERS = ("%(start)s", "%(end)s", "%(statuses)s")


def to_millisecond(moment: dt.datetime) -> dt.datetime:
    """The moment cut to whole milliseconds: the precision the evidence prints a window's bounds with."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso_ms(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def in_window(statement: str, start: dt.datetime, end: dt.datetime, *, subject: str,
              statuses: tuple[str, ...] = ()) -> PopulationQuery:
    """A count(*) over the window `(start, end]` (bound as %(start)s / %(end)s) as psql text returning `total`."""
    if to_millisecond(start) != start or to_millisecond(end) != end:
        raise ValueError(f"the window {iso_ms(start)} .. {iso_ms(end)} is finer than a millisecond: cut it with "
                         "to_millisecond where it is chosen, or the printed query would count another window")
    if "BETWEEN" in statement.upper() or "> %(start)s" not in statement or "<= %(end)s" not in statement:
        raise ValueError(f"a population window is written {WINDOW} (> start AND <= end): {statement}")
    text = statement.strip().replace("SELECT count(*)", "SELECT count(*) AS total", 1)
    values = {"%(start)s": f"{_literal(iso_ms(start))}::timestamptz",
              "%(end)s": f"{_literal(iso_ms(end))}::timestamptz",
              "%(statuses)s": "ARRAY[" + ", ".join(_literal(s) for s in statuses) + "]"}
    for placeholder in PLACEHOLDERS:
        text = text.replace(placeholder, values[placeholder])
    return PopulationQuery(subject=subject, sql=text + ";",
                           reads="{verified:,} of {total:,} reviewed (the query re-counts the {total:,})",
                           returns={"total": "total"})
