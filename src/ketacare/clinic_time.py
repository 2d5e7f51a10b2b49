"""Clinic time, once: a clinic's zone and the day it sees.

Times are stored in UTC; a *date* a person reads or types (today's consent, a plan's start, a
prescription's day, a roster's day) is the clinic's date, never the server's. A server in UTC is
already on tomorrow for the last hours of every American evening.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from sqlalchemy.orm import Session

from ketacare.auth import queries as auth_queries
from ketacare.db import utcnow
from ketacare.errors import NotFound

# The latest local date anywhere on Earth is UTC+14 (Line Islands): a date later than "today"
# there is in the future for every clinic. Used where no clinic is known (a date of birth).
_LATEST_ZONE = dt.timezone(dt.timedelta(hours=14))


def zone_name(db: Session, clinic_id: int) -> str:
    name = auth_queries.clinic_time_zone(db, clinic_id)
    if name is None:
        raise NotFound("No such clinic.")
    return name


def zone(db: Session, clinic_id: int) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(zone_name(db, clinic_id))


def today_in(zone_or_name: str | dt.tzinfo, now: dt.datetime | None = None) -> dt.date:
    tz = zoneinfo.ZoneInfo(zone_or_name) if isinstance(zone_or_name, str) else zone_or_name
    return (now or utcnow()).astimezone(tz).date()


def today(db: Session, clinic_id: int, now: dt.datetime | None = None) -> dt.date:
    """Today in the clinic's time zone."""
    return today_in(zone(db, clinic_id), now)


def latest_today() -> dt.date:
    """The latest date that is today somewhere: later dates are in the future for everyone."""
    return utcnow().astimezone(_LATEST_ZONE).date()


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time: aware UTC (a naive one, as SQLite may hand back, is UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def clock(zone_or_name: str | dt.tzinfo, default_fmt: str = "%Y-%m-%d %H:%M") -> dict[str, Any]:
    """What a page needs to show stored times as clinic time: ``clinic_time(value, fmt)`` (an
    empty string for no time) and ``clinic_zone``, the zone's name."""
    tz = zoneinfo.ZoneInfo(zone_or_name) if isinstance(zone_or_name, str) else zone_or_name

    def clinic_time(value: dt.datetime | None, fmt: str = default_fmt) -> str:
        return "" if value is None else as_utc(value).astimezone(tz).strftime(fmt)

    return {"clinic_time": clinic_time, "clinic_zone": str(zone_or_name)}
