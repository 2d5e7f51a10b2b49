"""The pure slot search: opening hours and slot length, the duty roster, a prescriber onsite."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from ketacare.planning.scheduling import Busy, Duty, Hours, NoSlot, local_dt, place

ZONE = "America/New_York"
DAY = dt.date(2031, 3, 4)
NURSE, DOCTOR = 1, 2


def shift(staff: int, prescriber: bool, start: str = "08:00", end: str = "18:00", day: dt.date = DAY) -> Duty:
    return Duty(
        staff,
        prescriber,
        local_dt(day, dt.time.fromisoformat(start), ZONE),
        local_dt(day, dt.time.fromisoformat(end), ZONE),
    )


def book(duty: list[Duty], *, at: str = "09:00", minutes: int = 240, busy=(), **kw):  # type: ignore[no-untyped-def]
    return place(
        [DAY],
        preferred=dt.time.fromisoformat(at),
        duration_min=minutes,
        zone=ZONE,
        chair_ids=[10],
        duty=duty,
        busy=list(busy),
        **kw,
    )


def local(slot_time: dt.datetime) -> str:
    return slot_time.astimezone(zoneinfo.ZoneInfo(ZONE)).strftime("%H:%M")


def test_nurse_staffs_the_chair_while_the_prescriber_is_onsite() -> None:
    (slot,) = book([shift(NURSE, False), shift(DOCTOR, True)])
    assert slot.staff_id == NURSE and local(slot.starts_at) == "09:00"


def test_no_prescriber_on_duty_is_refused_with_the_reason() -> None:
    with pytest.raises(NoSlot, match="no prescriber is on the duty roster") as exc:
        book([shift(NURSE, False)])
    assert "onsite" in str(exc.value) and "REMS" in str(exc.value)
    with pytest.raises(NoSlot, match="no prescriber"):
        book([])


def test_prescriber_must_cover_the_whole_session() -> None:
    # The prescriber leaves at 12:00: a 4-hour session from 09:00 is not covered, nor any later.
    with pytest.raises(NoSlot, match="no prescriber"):
        book([shift(NURSE, False), shift(DOCTOR, True, "08:00", "12:00")])
    # The prescriber arrives at 11:00: the session moves to 11:00.
    (slot,) = book([shift(NURSE, False), shift(DOCTOR, True, "11:00", "18:00")])
    assert local(slot.starts_at) == "11:00"


def test_busy_nurse_falls_back_to_the_prescriber_then_later_slots() -> None:
    nurse_busy = Busy(f"staff:{NURSE}", local_dt(DAY, dt.time(9), ZONE), local_dt(DAY, dt.time(13), ZONE))
    (slot,) = book([shift(NURSE, False), shift(DOCTOR, True)], busy=[nurse_busy])
    assert slot.staff_id == DOCTOR and local(slot.starts_at) == "09:00"
    doctor_busy = Busy(f"staff:{DOCTOR}", local_dt(DAY, dt.time(9), ZONE), local_dt(DAY, dt.time(13), ZONE))
    (slot,) = book([shift(NURSE, False), shift(DOCTOR, True)], busy=[nurse_busy, doctor_busy])
    assert local(slot.starts_at) == "13:00"


def test_opening_hours_and_slot_length_come_from_the_clinic() -> None:
    hours = Hours(dt.time(7), dt.time(20), 15)
    chair_busy = Busy("chair:10", local_dt(DAY, dt.time(6), ZONE), local_dt(DAY, dt.time(7, 45), ZONE))
    (slot,) = book(
        [shift(NURSE, False, "06:00"), shift(DOCTOR, True, "06:00")],
        at="06:00",
        hours=hours,
        busy=[chair_busy],
    )
    assert local(slot.starts_at) == "07:45"  # opens at 07:00, 15-minute steps
    with pytest.raises(NoSlot, match="does not fit the opening hours"):
        book([shift(NURSE, False), shift(DOCTOR, True)], at="17:00")


def test_exact_time_for_a_reschedule() -> None:
    duty = [shift(NURSE, False), shift(DOCTOR, True)]
    (slot,) = book(duty, at="10:30", exact=True)
    assert local(slot.starts_at) == "10:30"
    with pytest.raises(NoSlot, match="outside the opening hours"):
        book(duty, at="07:00", exact=True)
    chair_busy = Busy("chair:10", local_dt(DAY, dt.time(10), ZONE), local_dt(DAY, dt.time(11), ZONE))
    with pytest.raises(NoSlot, match="at 10:30"):
        book(duty, at="10:30", exact=True, busy=[chair_busy])


def test_inpatient_session_needs_duty_at_its_start_only_and_lasts_real_time() -> None:
    # 2031-03-09 is a daylight-saving change in New York: the 5 days are still 120 real hours.
    (slot,) = book([shift(NURSE, False), shift(DOCTOR, True)], minutes=5 * 24 * 60)
    assert (slot.ends_at - slot.starts_at) == dt.timedelta(days=5)
    with pytest.raises(NoSlot, match="no prescriber"):
        book([shift(NURSE, False), shift(DOCTOR, True, "10:00")], minutes=5 * 24 * 60)
