"""Take-home prescriptions over the JSON API and the service: draft, the checks with their
sources, what blocks signing, signing (re-authenticated), immutability, cancel, refills."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from ketacare.auth import service as auth
from ketacare.auth.models import LoginSession
from ketacare.db import utcnow
from ketacare.prescribing import encounters, prescriptions
from ketacare.prescribing.models import Prescription, PrescriptionCancellation, StateLicence
from ketacare.prescribing.schemas import PdmpIn, PrescriptionIn, SignIn
from tests.helpers import audit_entries, count, is_problem
from tests.prescribing.conftest import TODAY, check, draft, in_person, lozenge, pdmp, telehealth


def test_a_draft_says_what_is_missing_and_signs_once_it_is_there(as_role, world, db, ready) -> None:
    dr = as_role("prescriber")
    body = draft(dr, ready.patient_id)
    assert body["status"] == "draft" and not body["signable"]
    blocked = {c["key"] for c in body["checks"] if c["status"] == "block"}
    assert blocked == {"encounter", "telehealth_basis", "pdmp"}
    assert any("PDMP" in m for m in body["missing"])
    assert check(body, "pdmp")["source"].startswith("CDC-2022 Rec 9")
    assert body["compounded_warning"] and "not FDA-approved" in body["compounded_warning"]
    refused = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={"acknowledge_warnings": True})
    assert is_problem(refused, 422)
    assert {e["field"] for e in refused.json()["errors"]} == blocked
    encounter = in_person(dr, ready.patient_id)
    pdmp(dr, ready.patient_id)
    body = dr.api("PATCH", f"/api/v1/prescriptions/{body['id']}", json={"encounter_id": encounter}).json()
    assert body["signable"] and body["missing"] == []
    no_ack = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={})
    assert is_problem(no_ack, 422) and no_ack.json()["errors"][0]["field"] == "acknowledge_warnings"
    signed = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={"acknowledge_warnings": True})
    assert signed.status_code == 200, signed.text
    out = signed.json()
    assert (
        out["status"] == "signed"
        and len(out["content_sha256"]) == 64
        and out["issued_on"] == TODAY.isoformat()
    )
    row = db.get(Prescription, out["id"])
    db.refresh(row)
    assert row.checks_at_signing and row.warnings_acknowledged
    assert [e.outcome for e in audit_entries(db, "prescription.sign")] == ["success"]


def signed_rx(dr, patient_id: int, **changes: object) -> int:  # type: ignore[no-untyped-def]
    encounter = in_person(dr, patient_id)
    pdmp(dr, patient_id)
    body = draft(dr, patient_id, encounter_id=encounter, **changes)
    r = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={"acknowledge_warnings": True})
    assert r.status_code == 200, r.text
    return int(body["id"])


def test_a_signed_prescription_never_changes_through_the_api(as_role, world, db, ready) -> None:
    dr = as_role("prescriber")
    rx_id = signed_rx(dr, ready.patient_id)
    for method, url, body in [
        ("PATCH", f"/api/v1/prescriptions/{rx_id}", {"mme_justification": "changed"}),
        ("DELETE", f"/api/v1/prescriptions/{rx_id}", None),
        ("POST", f"/api/v1/prescriptions/{rx_id}/sign", {"acknowledge_warnings": True}),
    ]:
        r = dr.api(method, url, json=body)
        assert is_problem(r, 409), (method, r.text)
        assert "cancel it and write a new one" in r.json()["detail"]
    db.expire_all()
    assert db.get(Prescription, rx_id).mme_justification is None


def test_the_database_refuses_to_change_or_delete_a_signed_prescription(as_role, world, db, ready) -> None:
    rx_id = signed_rx(as_role("prescriber"), ready.patient_id)
    for statement in (
        text("UPDATE prescriptions SET quantity = 90 WHERE id = :id"),
        text("DELETE FROM prescriptions WHERE id = :id"),
    ):
        savepoint = db.begin_nested()
        with pytest.raises(DBAPIError, match="signed prescription is never changed"):
            db.execute(statement, {"id": rx_id})
        savepoint.rollback()
    db.expire_all()
    assert db.get(Prescription, rx_id).quantity == 30


def test_a_draft_may_still_change_in_the_database(as_role, world, db, ready) -> None:
    body = draft(as_role("prescriber"), ready.patient_id)
    db.execute(text("UPDATE prescriptions SET quantity = 20 WHERE id = :id"), {"id": body["id"]})
    db.execute(text("DELETE FROM prescriptions WHERE id = :id"), {"id": body["id"]})
    assert count(db, Prescription) == 0


def test_a_correction_is_a_cancellation_and_a_new_prescription(as_role, world, db, ready) -> None:
    dr = as_role("prescriber")
    rx_id = signed_rx(dr, ready.patient_id)
    short = dr.api("POST", f"/api/v1/prescriptions/{rx_id}/cancel", json={"reason": "typo"})
    assert is_problem(short, 422)
    r = dr.api("POST", f"/api/v1/prescriptions/{rx_id}/cancel", json={"reason": "Wrong quantity written"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert is_problem(
        dr.api("POST", f"/api/v1/prescriptions/{rx_id}/cancel", json={"reason": "Again, twice over"}), 409
    )
    again = draft(dr, ready.patient_id, quantity=20, encounter_id=in_person(dr, ready.patient_id))
    assert check(again, "early_refill")["status"] == "pass"  # the cancelled supply ended today
    db.expire_all()
    assert db.get(Prescription, rx_id).signed_at is not None and count(db, PrescriptionCancellation) == 1


def test_a_refill_on_day_10_of_30_is_refused(world, db, ready) -> None:
    start = TODAY - dt.timedelta(days=9)
    dr = ready.prescriber
    encounters.record_pdmp(db, dr, ready.patient_id, PdmpIn(checked_on=start, state="NY"), today=start)
    first = prescriptions.create_draft(db, dr, ready.patient_id, PrescriptionIn(**lozenge()), today=start)
    encounter = _in_person(db, dr, ready.patient_id, start)
    first.encounter_id = encounter
    prescriptions.sign(db, dr, first.id, SignIn(acknowledge_warnings=True), today=start)
    db.commit()
    second = prescriptions.create_draft(
        db, dr, ready.patient_id, PrescriptionIn(**lozenge(encounter_id=encounter))
    )
    view = prescriptions.view(db, dr, second.id)
    early = next(c for c in view.evaluation.checks if c.key == "early_refill")
    assert early.status == "block" and "day 10 of 30" in early.message
    from ketacare.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        prescriptions.sign(db, dr, second.id, SignIn(acknowledge_warnings=True))
    assert "early_refill" in refused.value.errors
    assert db.get(Prescription, second.id).signed_at is None


def _in_person(db, actor, patient_id: int, on: dt.date) -> int:  # type: ignore[no-untyped-def]
    from ketacare.prescribing.schemas import EncounterIn

    row = encounters.record_encounter(
        db, actor, patient_id, EncounterIn(kind="in_person", modality="in_person", occurred_on=on), today=on
    )
    return row.id


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"refills": 6}, "refills", "at most 5 refills"),
        ({"refills": 5, "days_supply": 40, "quantity": 40}, "refills", "within 6 months"),
        ({"product_key": "esketamine_spravato_28", "quantity": 2}, "product_key", "never dispensed"),
        ({"product_key": "ketamine_iv"}, "product_key", "Choose a product"),
        ({"quantity": 0}, "quantity", ""),
    ],
)
def test_impossible_prescriptions_are_refused_and_nothing_is_saved(
    as_role, world, db, ready, changes, field, text
) -> None:  # type: ignore[no-untyped-def]
    r = as_role("prescriber").api(
        "POST", f"/api/v1/patients/{ready.patient_id}/prescriptions", json=lozenge(**changes)
    )
    assert is_problem(r, 422)
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert field in errors and text in errors[field]
    assert count(db, Prescription) == 0


def test_an_expired_licence_blocks_prescribing(as_role, world, db, ready) -> None:
    db.execute(update(StateLicence).values(expires_on=TODAY - dt.timedelta(days=1)))
    db.commit()
    dr = as_role("prescriber")
    encounter = in_person(dr, ready.patient_id)
    pdmp(dr, ready.patient_id)
    body = draft(dr, ready.patient_id, encounter_id=encounter)
    assert check(body, "licence")["status"] == "block" and "expired" in check(body, "licence")["message"]
    r = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={"acknowledge_warnings": True})
    assert is_problem(r, 422) and "licence" in {e["field"] for e in r.json()["errors"]}


def test_audio_only_telehealth_is_blocked(as_role, world, db, ready) -> None:
    dr = as_role("prescriber")
    pdmp(dr, ready.patient_id)
    body = draft(dr, ready.patient_id, encounter_id=telehealth(dr, ready.patient_id, "audio_only"))
    assert check(body, "encounter")["status"] == "block"
    r = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={"acknowledge_warnings": True})
    assert is_problem(r, 422)


def test_after_the_flexibility_end_setting_telehealth_needs_an_in_person_evaluation(
    as_role, world, db, ready
) -> None:
    admin = as_role("admin")
    ended = (TODAY - dt.timedelta(days=1)).isoformat()
    saved = admin.api("PUT", "/api/v1/prescribing/settings", json={"flexibility_end": ended})
    assert saved.status_code == 200, saved.text
    dr = as_role("prescriber")
    pdmp(dr, ready.patient_id)
    body = draft(dr, ready.patient_id, encounter_id=telehealth(dr, ready.patient_id))
    basis = check(body, "telehealth_basis")
    assert basis["status"] == "block" and f"ended on {ended}" in basis["message"]
    assert "clinic's own setting" in basis["source"]
    in_person(dr, ready.patient_id, TODAY - dt.timedelta(days=30))
    body = dr.api("GET", f"/api/v1/prescriptions/{body['id']}").json()
    assert check(body, "telehealth_basis")["status"] == "pass"
    assert [e.detail for e in audit_entries(db, "prescribing.settings.save")] == [
        f"flexibility_end: default (2026-12-31) -> {ended}"
    ]


def test_a_hold_from_long_term_safety_blocks_prescribing(as_role, world, db, ready) -> None:
    nurse = as_role("nurse")
    lft = {
        "drawn_on": TODAY.isoformat(),
        "alt_u_per_l": 150,
        "alt_uln_u_per_l": 40,
        "ast_u_per_l": 30,
        "ast_uln_u_per_l": 40,
    }
    assert nurse.api("POST", f"/api/v1/patients/{ready.patient_id}/liver-tests", json=lft).status_code == 201
    body = draft(as_role("prescriber"), ready.patient_id)
    hold = check(body, "safety_hold")
    assert hold["status"] == "block" and "ALT 150 U/L" in hold["message"]


def test_monthly_cumulative_counts_the_prescriptions_of_the_last_30_days(world, db, ready) -> None:
    dr = ready.prescriber
    start = TODAY - dt.timedelta(days=25)
    encounters.record_pdmp(db, dr, ready.patient_id, PdmpIn(checked_on=start, state="NY"), today=start)
    first = prescriptions.create_draft(db, dr, ready.patient_id, PrescriptionIn(**lozenge()), today=start)
    first.encounter_id = _in_person(db, dr, ready.patient_id, start)
    prescriptions.sign(db, dr, first.id, SignIn(acknowledge_warnings=True), today=start)
    second = prescriptions.create_draft(db, dr, ready.patient_id, PrescriptionIn(**lozenge()))
    monthly = next(c for c in prescriptions.view(db, dr, second.id).evaluation.checks if c.key == "monthly")
    assert "take-home 1300 mg" in monthly.message  # 50 mg/day on each of the 26 days since it began


def test_signing_needs_a_recent_password(as_role, world, db, ready) -> None:
    dr = as_role("prescriber")
    encounter = in_person(dr, ready.patient_id)
    pdmp(dr, ready.patient_id)
    body = draft(dr, ready.patient_id, encounter_id=encounter)
    db.execute(update(LoginSession).values(reauthenticated_at=utcnow() - dt.timedelta(minutes=30)))
    db.commit()
    r = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={"acknowledge_warnings": True})
    assert is_problem(r, 401) and r.json()["type"].endswith("reauthentication-required")
    page = dr.post(
        f"/prescriptions/{body['id']}/sign", {"acknowledge_warnings": "yes"}, follow_redirects=False
    )
    assert page.status_code == 303 and page.headers["location"].startswith("/reauth")
    db.expire_all()
    assert db.get(Prescription, body["id"]).signed_at is None


@pytest.mark.parametrize("role", ["nurse", "admin"])
def test_only_a_prescriber_writes_or_signs(as_role, world, db, ready, role) -> None:
    dr = as_role("prescriber")
    body = draft(dr, ready.patient_id)
    client = as_role(role)
    assert client.api("GET", f"/api/v1/prescriptions/{body['id']}").status_code == 200
    assert is_problem(
        client.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={"acknowledge_warnings": True}),
        403,
    )
    assert is_problem(
        client.api("POST", f"/api/v1/patients/{ready.patient_id}/prescriptions", json=lozenge()), 403
    )
    assert (
        client.post(f"/prescriptions/{body['id']}/sign", {"acknowledge_warnings": "yes"}).status_code == 403
    )
    assert count(db, Prescription) == 1


def test_another_prescriber_cannot_sign_someone_elses_draft(as_role, world, db, ready) -> None:
    from ketacare.auth.models import User

    body = draft(as_role("prescriber"), ready.patient_id)
    other = User(
        clinic_id=world.clinic.id,
        username="second.dr",
        full_name="Second Doctor",
        role="prescriber",
        password_hash=world.users["nurse"].password_hash,
        totp_enrolled=False,
    )
    db.add(other)
    db.commit()
    actor = auth.principal_for(other, None, "127.0.0.1")
    from ketacare.errors import Forbidden

    with pytest.raises(Forbidden):
        prescriptions.sign(db, actor, body["id"], SignIn(acknowledge_warnings=True))


@pytest.mark.parametrize("role", ["outsider", "outsider_nurse"])
def test_another_clinic_sees_nothing(as_role, world, db, ready, role) -> None:
    rx_id = signed_rx(as_role("prescriber"), ready.patient_id)
    client = as_role(role)
    for url in (
        f"/api/v1/prescriptions/{rx_id}",
        f"/api/v1/prescriptions/{rx_id}/pdf",
        f"/api/v1/patients/{ready.patient_id}/prescriptions",
        f"/api/v1/patients/{ready.patient_id}/encounters",
        f"/api/v1/patients/{ready.patient_id}/pdmp-checks",
        f"/api/v1/patients/{ready.patient_id}/safety",
    ):
        assert is_problem(client.api("GET", url), 404), url
    assert client.get(f"/prescriptions/{rx_id}").status_code == 404
    assert client.get(f"/patients/{ready.patient_id}/prescriptions").status_code == 404
    if role == "outsider":
        r = client.api("POST", f"/api/v1/prescriptions/{rx_id}/cancel", json={"reason": "Not mine to cancel"})
        assert is_problem(r, 404)
    assert count(db, PrescriptionCancellation) == 0
    assert audit_entries(db, "prescription.read", outcome="denied")


@pytest.mark.parametrize("role", ["researcher", "auditor", "patient_a"])
def test_roles_without_prescription_access_are_refused(as_role, world, db, ready, role) -> None:
    client = as_role(role)
    assert is_problem(client.api("GET", f"/api/v1/patients/{ready.patient_id}/prescriptions"), 403)
    assert is_problem(client.api("GET", "/api/v1/credentials"), 403)
