"""The Spravato REMS Patient Monitoring Form: only for esketamine sessions, prefilled from the
record, bad answers refused with nothing saved, saved answers printable and exported as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zoneinfo

import pytest

from ketacare.sessions import rems
from ketacare.sessions.models import RemsForm, TreatmentSession
from tests.helpers import audit_entries, clinic_today, count, is_problem
from tests.sessions.conftest import book, prechecked, running


def _at(t: dt.datetime) -> str:
    return t.isoformat()


def esketamine_session(as_role, world, db, *, discharge: bool = True) -> tuple[int, dt.datetime]:  # type: ignore[no-untyped-def]
    """Two 28-mg devices 150 minutes ago, readings at 38 and 45 minutes, sedation and
    dissociation scores, then recovery and discharge. Returns the session id and the first device."""
    booked = book(
        as_role,
        world,
        db,
        protocol_key="esketamine_rems",
        dose=56,
        dose_unit="mg",
        titration_start=None,
        sessions=2,
        premedication=[],
    )
    nurse = as_role("nurse")
    added = nurse.api(
        "POST",
        f"/api/v1/patients/{world.patient_a.id}/medications",
        json={"name": "Lorazepam", "drug_class": "benzodiazepine"},
    )
    assert added.status_code == 201, added.text
    sid = prechecked(nurse, world, booked)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=150)
    for minutes in (0, 5):
        r = nurse.api(
            "POST",
            f"/api/v1/sessions/{sid}/administrations",
            json={
                "kind": "dose",
                "drug": "esketamine",
                "dose_mg": 28,
                "lot": "ESK-7",
                "given_at": _at(t0 + dt.timedelta(minutes=minutes)),
            },
        )
        assert r.status_code == 201, r.text
    readings = [
        {"kind": "sbp", "value": 150, "observed_at": _at(t0 + dt.timedelta(minutes=38))},
        {"kind": "dbp", "value": 92, "observed_at": _at(t0 + dt.timedelta(minutes=38))},
        {"kind": "sbp", "value": 140, "observed_at": _at(t0 + dt.timedelta(minutes=45))},
        {"kind": "dbp", "value": 88, "observed_at": _at(t0 + dt.timedelta(minutes=45))},
        {"kind": "spo2", "value": 97, "observed_at": _at(t0 + dt.timedelta(minutes=45))},
    ]
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/vitals", json={"readings": readings}).status_code == 201
    for body in (
        {"scale": "moaas", "items": [4], "observed_at": _at(t0 + dt.timedelta(minutes=30))},
        {"scale": "cadss6", "items": [1, 0, 0, 0, 0, 0], "observed_at": _at(t0 + dt.timedelta(minutes=20))},
    ):
        assert nurse.api("POST", f"/api/v1/sessions/{sid}/scores", json=body).status_code == 201
    if not discharge:
        return sid, t0
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/end-dosing", json={}).status_code == 200
    nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/vitals",
        json={
            "readings": [
                {"kind": "sbp", "value": 126},
                {"kind": "dbp", "value": 79},
                {"kind": "hr", "value": 73},
                {"kind": "spo2", "value": 98},
            ]
        },
    )
    nurse.api(
        "POST", f"/api/v1/sessions/{sid}/scores", json={"scale": "moaas", "items": [5], "phase": "after"}
    )
    checks = nurse.api(
        "POST",
        f"/api/v1/sessions/{sid}/discharge-checks",
        json={"alert_and_oriented": True, "escort_present": True, "instructions_given": True},
    )
    assert checks.json()["status"] == "ready_for_discharge", checks.json()["discharge_checklist"]
    assert nurse.api("POST", f"/api/v1/sessions/{sid}/discharge", json={}).status_code == 200
    return sid, t0


def answers(suggested: dict[str, object], **changes: object) -> dict[str, object]:
    """The suggestions, with what only the nurse knows filled in."""
    body = {k: v for k, v in suggested.items() if v is not None}
    body.update(enrolled=True, ready_to_leave_min=100, hcp_phone="555-0111", hcp_email="nurse@clinic.example")
    body.update(setting_address="1 Main St, Springfield, IL 62701")
    body.update(changes)
    return body


def test_form_is_prefilled_from_the_record(as_role, world, db, chairs) -> None:  # type: ignore[no-untyped-def]
    sid, t0 = esketamine_session(as_role, world, db)
    got = as_role("nurse").api("GET", f"/api/v1/sessions/{sid}/rems")
    assert got.status_code == 200, got.text
    body = got.json()
    a = body["answers"]
    assert body["status"] == "draft" and body["min_monitoring_min"] == 120
    assert a["patient_name"] == "Ada Lovelace" and a["date_of_birth"] == "1980-05-17" and a["sex"] == "female"
    assert a["first_treatment"] is True and a["enrolled"] is None
    assert a["benzodiazepines"] is True and a["opioids"] is False and a["concomitant_details"] == "Lorazepam"
    assert a["dose"] == "56" and a["dose_other_mg"] is None and a["lot"] == "ESK-7"
    assert a["setting_name"] == "Test Pain Clinic"
    assert a["treatment_date"] == t0.astimezone(zoneinfo.ZoneInfo(world.clinic.time_zone)).date().isoformat()
    assert 148 <= a["total_monitoring_min"] <= 152
    # before dosing: the pre-check baseline; at ~40 min: the 38-minute reading, not the 45-minute one
    assert (a["bp_before_dosing_sbp"], a["bp_before_dosing_dbp"]) == (124, 78)
    assert (a["bp_40_min_sbp"], a["bp_40_min_dbp"]) == (150, 92)
    assert (a["bp_before_discharge_sbp"], a["bp_before_discharge_dbp"]) == (126, 79)
    assert a["vitals_ok_before_dosing"] is True and a["vitals_ok_before_discharge"] is True
    assert a["sedation"] is True and a["dissociation"] is True and a["respiratory_depression"] is False
    assert "MOAA/S" in a["event_details"] and "CADSS-6 1" in a["event_details"]
    assert "38 min after" in body["hints"]["bp_40_min_sbp"]
    assert audit_entries(db, "session.rems.read", resource_id=str(sid))


def test_bad_answers_are_refused_and_nothing_is_saved(as_role, world, db, chairs) -> None:  # type: ignore[no-untyped-def]
    sid, _ = esketamine_session(as_role, world, db)
    nurse = as_role("nurse")
    suggested = nurse.api("GET", f"/api/v1/sessions/{sid}/rems").json()["answers"]

    short = nurse.api("PUT", f"/api/v1/sessions/{sid}/rems", json=answers(suggested, total_monitoring_min=90))
    assert is_problem(short, 422)
    fields = {e["field"]: e["message"] for e in short.json()["errors"]}
    assert "120" in fields["total_monitoring_min"]

    for bad in (
        answers(suggested, dose="70"),
        answers(suggested, dose="other"),
        answers(suggested, bp_40_min_sbp=80, bp_40_min_dbp=95),
        answers(suggested, ready_to_leave_min=500),
        answers(suggested, event_details=""),
        answers(suggested, hcp_email="not-an-email"),
        {k: v for k, v in answers(suggested).items() if k != "enrolled"},
    ):
        assert is_problem(nurse.api("PUT", f"/api/v1/sessions/{sid}/rems", json=bad), 422), bad

    page = nurse.post(f"/sessions/{sid}/rems", {"patient_name": "Ada Lovelace", "total_monitoring_min": "60"})
    assert page.status_code == 422
    assert "This is required." in page.text and 'id="e-enrolled"' in page.text
    assert count(db, RemsForm) == 0
    assert not audit_entries(db, "session.rems.save")


def test_saved_form_prints_and_exports(as_role, world, db, chairs) -> None:  # type: ignore[no-untyped-def]
    sid, t0 = esketamine_session(as_role, world, db)
    nurse = as_role("nurse")
    suggested = nurse.api("GET", f"/api/v1/sessions/{sid}/rems").json()["answers"]
    saved = nurse.api(
        "PUT", f"/api/v1/sessions/{sid}/rems", json=answers(suggested, total_monitoring_min=150)
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["status"] == "saved" and saved.json()["saved_by"] == world.users["nurse"].full_name
    assert count(db, RemsForm) == 1
    assert audit_entries(db, "session.rems.save", resource_id=str(sid))

    page = as_role("prescriber").get(f"/sessions/{sid}/rems")
    assert page.status_code == 200
    assert "Saved form" in page.text and 'id="saved-lot">ESK-7<' in page.text
    assert 'id="saved-total_monitoring_min">150<' in page.text and 'id="saved-enrolled">Yes<' in page.text

    start = (t0 - dt.timedelta(days=1)).date().isoformat()
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    exported = nurse.client.get("/api/v1/rems/export.csv", params={"start": start, "end": end})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == list(rems.CSV_COLUMNS)
    assert len(rows) == 2
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["session_id"] == str(sid) and row["record_number"] == "TST-900001"
    assert row["form_status"] == "saved" and row["dose"] == "56" and row["lot"] == "ESK-7"
    assert row["benzodiazepines"] == "yes" and row["total_monitoring_min"] == "150"
    assert audit_entries(db, "session.rems.export", resource_id=str(sid))
    # the same export from the page link
    assert nurse.client.get("/rems/export.csv", params={"start": start, "end": end}).text == exported.text


def test_export_lists_a_missing_form_and_neutralises_formulas(as_role, world, db, chairs) -> None:  # type: ignore[no-untyped-def]
    sid, t0 = esketamine_session(as_role, world, db)
    nurse = as_role("nurse")
    start = (t0 - dt.timedelta(days=1)).date().isoformat()
    end = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    rows = list(
        csv.DictReader(
            io.StringIO(nurse.client.get("/api/v1/rems/export.csv", params={"start": start, "end": end}).text)
        )
    )
    assert [(r["session_id"], r["form_status"]) for r in rows] == [(str(sid), "missing")]
    suggested = nurse.api("GET", f"/api/v1/sessions/{sid}/rems").json()["answers"]
    nurse.api("PUT", f"/api/v1/sessions/{sid}/rems", json=answers(suggested, lot="=HYPERLINK(1)"))
    rows = list(
        csv.DictReader(
            io.StringIO(nurse.client.get("/api/v1/rems/export.csv", params={"start": start, "end": end}).text)
        )
    )
    assert rows[0]["lot"] == "'=HYPERLINK(1)"
    # an empty range has the header only; a range upside down is refused
    empty = nurse.client.get("/api/v1/rems/export.csv", params={"start": "2020-01-01", "end": "2020-01-31"})
    assert empty.status_code == 200 and len(list(csv.reader(io.StringIO(empty.text)))) == 1
    assert is_problem(nurse.api("GET", "/api/v1/rems/export.csv", params={"start": end, "end": start}), 422)


def test_html_form_saves(as_role, world, db, chairs) -> None:  # type: ignore[no-untyped-def]
    sid, _ = esketamine_session(as_role, world, db)
    nurse = as_role("nurse")
    page = nurse.get(f"/sessions/{sid}/rems")
    assert page.status_code == 200 and "Not saved yet" in page.text
    assert 'name="benzodiazepines" checked' in page.text
    suggested = nurse.api("GET", f"/api/v1/sessions/{sid}/rems").json()["answers"]
    form: dict[str, str] = {}
    for name, value in answers(suggested).items():
        if isinstance(value, bool):
            if name in rems.CHECKBOXES:
                if value:
                    form[name] = "on"
            else:
                form[name] = "yes" if value else "no"
        else:
            form[name] = str(value)
    done = nurse.post(f"/sessions/{sid}/rems", form, follow_redirects=False)
    assert done.status_code == 303, done.text
    stored = db.query(RemsForm).filter_by(session_id=sid).one()
    assert stored.answers["benzodiazepines"] is True and stored.answers["sedative_hypnotics"] is False
    assert stored.answers["enrolled"] is True


def test_only_esketamine_sessions_have_a_form(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    sid = running(nurse, world, booked)
    assert db.get(TreatmentSession, sid).drug == "ketamine"
    assert is_problem(nurse.api("GET", f"/api/v1/sessions/{sid}/rems"), 404)
    assert is_problem(nurse.api("PUT", f"/api/v1/sessions/{sid}/rems", json={"patient_name": "x"}), 422)
    assert nurse.get(f"/sessions/{sid}/rems").status_code == 404
    assert nurse.post(f"/sessions/{sid}/rems", {"patient_name": "x"}).status_code == 404
    assert count(db, RemsForm) == 0


def test_full_answers_for_a_ketamine_session_are_refused(as_role, world, db, chairs) -> None:  # type: ignore[no-untyped-def]
    esk, _ = esketamine_session(as_role, world, db)
    nurse = as_role("nurse")
    body = answers(nurse.api("GET", f"/api/v1/sessions/{esk}/rems").json()["answers"])
    other = book(as_role, world, db, patient=world.patient_b)
    ketamine_sid = running(nurse, world, other)
    assert is_problem(nurse.api("PUT", f"/api/v1/sessions/{ketamine_sid}/rems", json=body), 404)
    assert count(db, RemsForm) == 0


def test_no_device_yet_means_nothing_to_save(as_role, world, db, chairs) -> None:  # type: ignore[no-untyped-def]
    booked = book(
        as_role,
        world,
        db,
        protocol_key="esketamine_rems",
        dose=56,
        dose_unit="mg",
        titration_start=None,
        sessions=2,
        premedication=[],
    )
    nurse = as_role("nurse")
    sid = prechecked(nurse, world, booked)
    draft = nurse.api("GET", f"/api/v1/sessions/{sid}/rems").json()
    assert draft["first_device_at"] is None and draft["answers"]["dose"] is None
    body = answers(
        draft["answers"],
        dose="56",
        lot="L",
        treatment_date=clinic_today().isoformat(),
        total_monitoring_min=130,
    )
    body |= {
        "bp_40_min_sbp": 130,
        "bp_40_min_dbp": 80,
        "bp_before_discharge_sbp": 125,
        "bp_before_discharge_dbp": 78,
    }
    body |= {
        "vitals_ok_before_discharge": True,
        "sedation": False,
        "dissociation": False,
        "respiratory_depression": False,
    }
    assert is_problem(nurse.api("PUT", f"/api/v1/sessions/{sid}/rems", json=body), 409)
    assert count(db, RemsForm) == 0


@pytest.mark.parametrize(
    ("role", "read", "write"),
    [("admin", 200, 403), ("prescriber", 200, 200), ("researcher", 403, 403), ("outsider_nurse", 404, 404)],
)
def test_who_may_read_and_write(as_role, world, db, chairs, role, read, write) -> None:  # type: ignore[no-untyped-def]
    sid, _ = esketamine_session(as_role, world, db)
    suggested = as_role("nurse").api("GET", f"/api/v1/sessions/{sid}/rems").json()["answers"]
    client = as_role(role)
    assert client.api("GET", f"/api/v1/sessions/{sid}/rems").status_code == read
    assert client.api("PUT", f"/api/v1/sessions/{sid}/rems", json=answers(suggested)).status_code == write
