"""Place a plan's sessions on the clinic calendar without double-booking: pure slot search."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

# (design) clinic-editable defaults: opening hours and the slot grid searched.
OPEN_HOUR, CLOSE_HOUR = 8, 18
SLOT_STEP_MIN = 30


@dataclass(frozen=True)
class Busy:
    resource: str  # "chair:<id>" or "staff:<id>"
    starts_at: dt.datetime
    ends_at: dt.datetime


@dataclass(frozen=True)
class Slot:
    day: dt.date
    starts_at: dt.datetime
    ends_at: dt.datetime
    chair_id: int
    staff_id: int


class NoSlot(ValueError):
    def __init__(self, day: dt.date, why: str) -> None:
        super().__init__(f"{day.isoformat()}: {why}")
        self.day = day


def session_days(start: dt.date, sessions: int, interval_days: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i * interval_days) for i in range(sessions)]


def _free(busy: list[Busy], resource: str, start: dt.datetime, end: dt.datetime) -> bool:
    return not any(b.resource == resource and b.starts_at < end and start < b.ends_at for b in busy)


def place(
    days: list[dt.date],
    *,
    preferred: dt.time,
    duration_min: int,
    zone: str,
    chair_ids: list[int],
    staff_ids: list[int],
    busy: list[Busy],
) -> list[Slot]:
    """For each day, the first time from ``preferred`` on with a free chair and free staff.

    Sessions longer than the opening day (inpatient) start at ``preferred`` and only need a
    free bed/chair and staff for their whole length.
    """
    tz = zoneinfo.ZoneInfo(zone)
    taken = list(busy)
    slots: list[Slot] = []
    if not chair_ids:
        raise NoSlot(days[0] if days else dt.date.today(), "the clinic has no chairs set up")
    if not staff_ids:
        raise NoSlot(days[0] if days else dt.date.today(), "the clinic has no nurse or prescriber")
    for day in days:
        start = dt.datetime.combine(day, preferred, tzinfo=tz)
        close = dt.datetime.combine(day, dt.time(CLOSE_HOUR), tzinfo=tz)
        found = None
        while found is None:
            end = start + dt.timedelta(minutes=duration_min)
            if end > close and duration_min <= (CLOSE_HOUR - OPEN_HOUR) * 60:
                break
            chair = next((c for c in chair_ids if _free(taken, f"chair:{c}", start, end)), None)
            staff = next((s for s in staff_ids if _free(taken, f"staff:{s}", start, end)), None)
            if chair is not None and staff is not None:
                found = Slot(day, start.astimezone(dt.UTC), end.astimezone(dt.UTC), chair, staff)
            elif duration_min > (CLOSE_HOUR - OPEN_HOUR) * 60:
                break
            start += dt.timedelta(minutes=SLOT_STEP_MIN)
        if found is None:
            raise NoSlot(day, "no chair and staff free for the whole session within opening hours")
        slots.append(found)
        taken.append(Busy(f"chair:{found.chair_id}", found.starts_at, found.ends_at))
        taken.append(Busy(f"staff:{found.staff_id}", found.starts_at, found.ends_at))
    return slots
