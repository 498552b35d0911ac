"""The one clock: every timestamp the library records or compares is timezone-aware UTC from here."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
