"""The one clock: UTC, whole seconds. Tests and reports read time only through here."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def now_iso() -> str:
    """RFC 3339, e.g. ``2026-11-28T02:29:42+00:00``."""
    return now().isoformat()


def now_rfc3339z() -> str:
    """RFC 3339 with a ``Z``, as OCI's ``org.opencontainers.image.created`` is usually written."""
    return now().strftime("%Y-%m-%dT%H:%M:%SZ")


def today() -> dt.date:
    """Today in UTC (waiver expiry is judged on this day)."""
    return now().date()
