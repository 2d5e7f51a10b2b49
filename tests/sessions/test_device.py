"""Device feeds: the REST batch with a scoped token, and the service every wire format uses
(duplicates by control id, unknown patient, no session in progress, implausible values)."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.auth import service as auth
from ketacare.sessions import monitoring
from ketacare.sessions.device import DeviceBatch, DeviceObservation, DeviceRejected
from ketacare.sessions.models import Alarm, DeviceMessage, VitalSign
from tests.helpers import count, is_problem
from tests.sessions.conftest import running


def _token(db, world, scopes: list[str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    actor = auth.principal_for(world.users["admin"], None, "127.0.0.1")
    _, secret = auth.create_api_token(db, actor, f"Monitor {'-'.join(scopes)}", scopes)
    db.commit()
    return {"Authorization": f"Bearer {secret}"}


def _body(record_number: str, sbp: float = 128, batch_id: str | None = "b-1") -> dict[str, object]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return {
        "device_id": "MON-3",
        "record_number": record_number,
        "batch_id": batch_id,
        "observations": [
            {"kind": "sbp", "value": sbp, "observed_at": now},
            {"kind": "hr", "value": 76, "observed_at": now},
        ],
    }


def test_rest_batch_with_a_device_token(as_role, browser, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    sid = running(as_role("nurse"), world, booked)
    client = browser().client
    headers = _token(db, world, ["device:vitals"])
    before = count(db, VitalSign)
    r = client.post(
        "/api/v1/devices/vitals", json=_body(world.patient_a.record_number, sbp=190), headers=headers
    )
    assert r.status_code == 201, r.text
    assert r.json()["session_id"] == sid and r.json()["stored"] == 2 and r.json()["alarms_raised"]
    assert count(db, VitalSign) == before + 2
    again = client.post(
        "/api/v1/devices/vitals", json=_body(world.patient_a.record_number, sbp=190), headers=headers
    )
    assert again.status_code == 201 and again.json()["duplicate"] and count(db, VitalSign) == before + 2
    # implausible: refused whole, nothing stored
    bad = client.post(
        "/api/v1/devices/vitals",
        json=_body(world.patient_a.record_number, sbp=999, batch_id="b-2"),
        headers=headers,
    )
    assert is_problem(bad, 422) and "plausible" in bad.text and count(db, VitalSign) == before + 2
    assert count(db, DeviceMessage) == 1
    # another clinic's patient is unknown to this token
    other = client.post(
        "/api/v1/devices/vitals",
        json=_body(world.other_patient.record_number, batch_id="b-3"),
        headers=headers,
    )
    assert is_problem(other, 404)
    # a token without the scope, and a nurse's login, cannot post device batches
    reader = _token(db, world, ["patient:read"])
    assert is_problem(client.post("/api/v1/devices/vitals", json=_body("X"), headers=reader), 403)
    nurse = as_role("nurse")
    assert is_problem(nurse.api("POST", "/api/v1/devices/vitals", json=_body("X")), 403)


def _batch(world, control_id: str, **obs: float) -> DeviceBatch:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    return DeviceBatch(
        clinic_slug=world.clinic.slug,
        record_number=world.patient_a.record_number,
        device_id="HL7-MON",
        source="hl7",
        control_id=control_id,
        observations=tuple(DeviceObservation(k, v, now) for k, v in obs.items()),
    )


def test_ingest_rules(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DeviceRejected) as no_session:
        monitoring.ingest_device_batch(db, _batch(world, "c0", sbp=120))
    assert no_session.value.code == "no_active_session"
    sid = running(as_role("nurse"), world, booked)
    first = monitoring.ingest_device_batch(db, _batch(world, "c1", sbp=120, spo2=97))
    assert first.session_id == sid and first.stored == 2 and not first.duplicate
    dup = monitoring.ingest_device_batch(db, _batch(world, "c1", sbp=120, spo2=97))
    assert dup.duplicate and dup.stored == 0
    with pytest.raises(DeviceRejected) as implausible:
        monitoring.ingest_device_batch(db, _batch(world, "c2", spo2=130))
    assert implausible.value.code == "implausible"
    unknown = DeviceBatch(
        world.clinic.slug,
        "NOPE-1",
        "HL7-MON",
        "hl7",
        "c3",
        (DeviceObservation("hr", 70, dt.datetime.now(dt.UTC)),),
    )
    with pytest.raises(DeviceRejected) as who:
        monitoring.ingest_device_batch(db, unknown)
    assert who.value.code == "unknown_patient"
    nowhere = DeviceBatch("no-such-clinic", "X", "HL7-MON", "hl7", "c4", ())
    with pytest.raises(DeviceRejected) as clinic:
        monitoring.ingest_device_batch(db, nowhere)
    assert clinic.value.code == "unknown_clinic"


def test_alarm_is_raised_once_while_open_and_escalates(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    sid = running(as_role("nurse"), world, booked)
    a = monitoring.ingest_device_batch(db, _batch(world, "h1", sbp=185))
    b = monitoring.ingest_device_batch(db, _batch(world, "h2", sbp=190))
    assert a.alarms_raised and not b.alarms_raised  # still open: no second alarm
    db.commit()
    alarm = db.get(Alarm, a.alarms_raised[0])
    assert alarm is not None and alarm.status == "raised"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert monitoring.sweep_escalations(db, world.clinic.id, later) >= 1
    assert monitoring.sweep_escalations(db, world.clinic.id, later) == 0  # idempotent
    db.commit()
    notices = as_role("prescriber").api("GET", "/api/v1/notices").json()
    assert any(n["kind"] == "escalation" and n["session_id"] == sid for n in notices)
