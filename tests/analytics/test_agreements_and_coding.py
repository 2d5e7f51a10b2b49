"""Data use agreements (HIPAA 45 CFR 164.514(e)): recorded by the clinic admin on a page and the
API; a limited data set is refused without an active one and names it. Coding "other" adverse
events to catalogue terms (page and API)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest
from sqlalchemy import select

from ketacare.sessions.models import AdverseEvent
from tests.helpers import audit_entries, clinic_today

TODAY = clinic_today()


def _agreement(**change: object) -> dict[str, object]:
    body: dict[str, object] = {
        "recipient": "University outcomes group",
        "purpose": "ketamine pain outcomes study",
        "starts_on": str(TODAY - dt.timedelta(days=1)),
        "ends_on": str(TODAY + dt.timedelta(days=90)),
        "approved_by": "Privacy officer",
    }
    return body | change


@pytest.mark.parametrize(
    ("case", "change", "active"),
    [
        ("running today", {}, True),
        ("not started", {"starts_on": str(TODAY + dt.timedelta(days=3))}, False),
        ("ended", {"starts_on": "2020-01-01", "ends_on": str(TODAY - dt.timedelta(days=1))}, False),
    ],
)
def test_a_limited_data_set_needs_an_active_agreement(as_role, case, change, active) -> None:  # type: ignore[no-untyped-def]
    admin, researcher = as_role("admin"), as_role("researcher")
    made = admin.api("POST", "/api/v1/research/agreements", json=_agreement(**change))
    assert made.status_code == 201, made.text
    number = made.json()["id"]
    response = researcher.get(f"/research/export.zip?method=limited&agreement={number}")
    if not active:
        assert response.status_code == 422, case
        assert "agreement" in response.text
        return
    assert response.status_code == 200, response.text
    readme = zipfile.ZipFile(io.BytesIO(response.content)).read("README.txt").decode()
    assert "LIMITED DATA SET" in readme and f"#{number} with University outcomes group" in readme
    # revoked: refused from then on
    assert admin.api("POST", f"/api/v1/research/agreements/{number}/revoke").status_code == 200
    assert researcher.get(f"/research/export.zip?method=limited&agreement={number}").status_code == 422


def test_without_an_agreement_and_by_role(as_role) -> None:  # type: ignore[no-untyped-def]
    researcher = as_role("researcher")
    assert researcher.get("/research/export.zip?method=limited").status_code == 422
    assert researcher.get("/research/export.zip?method=expert").status_code == 422
    safe = researcher.get("/api/v1/research/export")
    assert safe.status_code == 200
    assert "SAFE HARBOR" in zipfile.ZipFile(io.BytesIO(safe.content)).read("README.txt").decode()
    # only the clinic admin records agreements
    assert researcher.api("POST", "/api/v1/research/agreements", json=_agreement()).status_code == 403
    assert as_role("prescriber").get("/research/agreements").status_code == 403


def test_the_agreements_page_refuses_a_bad_form_and_records_a_good_one(as_role, db) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    bad = admin.post(
        "/research/agreements", data={k: str(v) for k, v in _agreement(ends_on="2000-01-01").items()}
    )
    assert bad.status_code == 422 and "cannot end before it starts" in bad.text
    assert "University outcomes group" in bad.text  # the form is shown again as entered
    good = admin.post("/research/agreements", data={k: str(v) for k, v in _agreement().items()})
    assert good.status_code in (200, 303)
    page = admin.get("/research/agreements")
    assert "University outcomes group" in page.text and "Revoke" in page.text
    assert audit_entries(db, "registry.agreement")


def test_staff_code_an_other_adverse_event(as_role, db, world) -> None:  # type: ignore[no-untyped-def]
    at = dt.datetime.now(dt.UTC)
    ae = AdverseEvent(
        clinic_id=world.clinic.id, patient_id=world.patient_a.id, session_id=None, term_key="other",
        term="felt odd, call Jane on 555-0100", onset_at=at, grade=1, serious=False,
        needed_intervention=False, actions=["observed"], outcome="resolved", needs_review=False,
    )  # fmt: skip
    db.add(ae)
    db.commit()
    prescriber = as_role("prescriber")
    listed = prescriber.api("GET", "/api/v1/adverse-events/uncoded").json()
    assert [a["id"] for a in listed] == [ae.id]
    page = prescriber.get("/adverse-events/uncoded")
    assert "felt odd" in page.text  # staff see the text; the registry never does
    assert (
        prescriber.post(f"/adverse-events/{ae.id}/code", data={"term_key": "not-a-term"}).status_code == 422
    )
    assert (
        prescriber.api("POST", f"/api/v1/adverse-events/{ae.id}/code", json={"term_key": "other"}).status_code
        == 422
    )
    done = prescriber.api("POST", f"/api/v1/adverse-events/{ae.id}/code", json={"term_key": "nausea"})
    assert done.status_code == 200 and done.json()["term_key"] == "nausea"
    assert done.json()["term"] == "felt odd, call Jane on 555-0100"  # kept as recorded
    again = prescriber.api("POST", f"/api/v1/adverse-events/{ae.id}/code", json={"term_key": "nausea"})
    assert again.status_code == 409
    db.expire_all()
    assert db.scalars(select(AdverseEvent.term_key).where(AdverseEvent.id == ae.id)).one() == "nausea"
    assert audit_entries(db, "session.ae.code")
    assert as_role("researcher").get("/adverse-events/uncoded").status_code == 403
