"""Place a plan's sessions on the clinic calendar without double-booking: pure slot search.

A session needs, for its whole length within opening hours: a free chair, a free nurse or
prescriber who is on the duty roster, and a prescriber on duty onsite (Spravato REMS: the
prescriber is onsite during administration and monitoring [V]; applied to every ketamine
session by analogy, ASRA-2018 asks for qualified supervision [M]). The onsite prescriber may
supervise several sessions at once; the staff member at the chair is booked for one.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

PRESCRIBER_ONSITE_SOURCE = (
    "Spravato REMS (REMS-FDA): prescriber onsite during administration and monitoring [V]"
)


@dataclass(frozen=True)
class Hours:
    """(design) clinic-editable: opening hours and the slot grid searched."""

    opens: dt.time = dt.time(8)
    closes: dt.time = dt.time(18)
    slot_min: int = 30

    @property
    def open_minutes(self) -> int:
        return (self.closes.hour * 60 + self.closes.minute) - (self.opens.hour * 60 + self.opens.minute)

    def label(self) -> str:
        return f"{self.opens:%H:%M}-{self.closes:%H:%M}"


DEFAULT_HOURS = Hours()


@dataclass(frozen=True)
class Busy:
    resource: str  # "chair:<id>" or "staff:<id>"
    starts_at: dt.datetime
    ends_at: dt.datetime


@dataclass(frozen=True)
class Duty:
    """One shift on the roster, as aware datetimes."""

    staff_id: int
    prescriber: bool
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
        self.why = why


def session_days(start: dt.date, sessions: int, interval_days: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i * interval_days) for i in range(sessions)]


def _free(busy: list[Busy], resource: str, start: dt.datetime, end: dt.datetime) -> bool:
    return not any(b.resource == resource and b.starts_at < end and start < b.ends_at for b in busy)


def local_dt(day: dt.date, at: dt.time, zone: str) -> dt.datetime:
    """A clinic-local wall time as a UTC instant: adding minutes to it then counts real
    minutes, also across a daylight-saving change (wall-clock arithmetic would not)."""
    return dt.datetime.combine(day, at, tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(dt.UTC)


def covers(d: Duty, start: dt.datetime, end: dt.datetime, long: bool) -> bool:
    """A shift covers a session that fits the day for its whole length; an inpatient session
    longer than the opening day (handed over to the ward) only at its start."""
    if long:
        return d.starts_at <= start < d.ends_at
    return d.starts_at <= start and end <= d.ends_at


def no_prescriber_message(day: dt.date) -> str:
    return (
        f"no prescriber is on the duty roster on {day.isoformat()} for the whole session; "
        f"a prescriber must be onsite during every session ({PRESCRIBER_ONSITE_SOURCE}). "
        "Add one to the duty roster or choose another day."
    )


def place(
    days: list[dt.date],
    *,
    preferred: dt.time,
    duration_min: int,
    zone: str,
    chair_ids: list[int],
    duty: list[Duty],
    busy: list[Busy],
    hours: Hours = DEFAULT_HOURS,
    exact: bool = False,
) -> list[Slot]:
    """For each day, the first time from ``preferred`` on (``exact``: only ``preferred``) with a
    free chair, a free on-duty nurse or prescriber and an on-duty prescriber onsite.

    Sessions longer than the opening day (inpatient) start at ``preferred`` and need a free
    bed/chair and staff for their whole length, and staff and a prescriber on duty at the start.
    ``duty`` is searched in order (the caller puts nurses first).
    """
    taken = list(busy)
    slots: list[Slot] = []
    if not chair_ids:
        raise NoSlot(days[0] if days else dt.date.today(), "the clinic has no chairs set up")
    long = duration_min > hours.open_minutes
    for day in days:
        opens, closes = local_dt(day, hours.opens, zone), local_dt(day, hours.closes, zone)
        start = local_dt(day, preferred, zone)
        if not long and (start < opens or (exact and start + dt.timedelta(minutes=duration_min) > closes)):
            if exact:
                raise NoSlot(day, f"{preferred:%H:%M} is outside the opening hours ({hours.label()})")
            start = opens
        found = None
        saw_prescriber = tried = False
        while found is None:
            end = start + dt.timedelta(minutes=duration_min)
            if end > closes and not long:
                break
            tried = True
            if any(d.prescriber and covers(d, start, end, long) for d in duty):
                saw_prescriber = True
                chair = next((c for c in chair_ids if _free(taken, f"chair:{c}", start, end)), None)
                staff = next(
                    (
                        d.staff_id
                        for d in duty
                        if covers(d, start, end, long) and _free(taken, f"staff:{d.staff_id}", start, end)
                    ),
                    None,
                )
                if chair is not None and staff is not None:
                    found = Slot(day, start, end, chair, staff)
                    break
            if long or exact:
                break
            start += dt.timedelta(minutes=hours.slot_min)
        if found is None:
            if not tried:
                raise NoSlot(
                    day,
                    f"a {duration_min}-minute session from {preferred:%H:%M} does not fit "
                    f"the opening hours ({hours.label()})",
                )
            if not saw_prescriber:
                raise NoSlot(day, no_prescriber_message(day))
            raise NoSlot(
                day,
                "no chair and on-duty nurse or prescriber free for the whole session "
                + (f"at {preferred:%H:%M}" if exact else f"within opening hours ({hours.label()})"),
            )
        slots.append(found)
        taken.append(Busy(f"chair:{found.chair_id}", found.starts_at, found.ends_at))
        taken.append(Busy(f"staff:{found.staff_id}", found.starts_at, found.ends_at))
    return slots
