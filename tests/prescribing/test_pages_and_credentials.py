"""The prescribing pages (forms keep what was typed on error), credentials with DEA and NPI
validation, scope rules, settings, the printable prescription and the EPCS plug-in point."""

from __future__ import annotations

import datetime as dt
import re

from ketacare.prescribing import epcs, prescriptions, rx_settings, scope
from ketacare.prescribing.models import (
    DeaRegistration,
    PrescriberProfile,
    Prescription,
    ScopeRule,
    StateLicence,
)
from tests.helpers import audit_entries, count, is_problem
from tests.prescribing.conftest import (
    ACK,
    DEA_VALID,
    FAR,
    NPI_VALID,
    TODAY,
    draft,
    in_person,
    pdmp,
    principal,
)


def test_the_patient_prescriptions_page_shows_the_fda_warning_and_keeps_a_refused_form(
    as_role, world, db, ready
) -> None:
    dr = as_role("prescriber")
    page = dr.get(f"/patients/{ready.patient_id}/prescriptions")
    assert (
        page.status_code == 200
        and "not FDA-approved" in page.text
        and "Write a take-home prescription" in page.text
    )
    form = {
        "product_key": "ketamine_sl_lozenge_50",
        "quantity": "30",
        "days_supply": "30",
        "refills": "6",
        "directions": "One lozenge daily, typed by hand",
        "compounded_ack": ACK,
    }
    refused = dr.post(f"/patients/{ready.patient_id}/prescriptions/new", form)
    assert refused.status_code == 422 and "at most 5 refills" in refused.text
    assert "One lozenge daily, typed by hand" in refused.text and count(db, Prescription) == 0
    made = dr.post(
        f"/patients/{ready.patient_id}/prescriptions/new", {**form, "refills": "1"}, follow_redirects=False
    )
    assert made.status_code == 303
    detail = dr.get(made.headers["location"])
    assert "What is missing before this can be signed" in detail.text and "PDMP check" in detail.text
    assert "Audio-only" not in detail.text


def test_the_whole_journey_through_the_pages(as_role, world, db, ready) -> None:
    dr = as_role("prescriber")
    pid = ready.patient_id
    assert (
        dr.post(
            f"/patients/{pid}/prescriptions/encounters",
            {"kind": "in_person", "modality": "audio_only", "occurred_on": TODAY.isoformat()},
        ).status_code
        == 422
    )
    assert (
        dr.post(
            f"/patients/{pid}/prescriptions/encounters",
            {
                "kind": "in_person",
                "modality": "in_person",
                "occurred_on": TODAY.isoformat(),
                "patient_state": "NY",
            },
            follow_redirects=False,
        ).status_code
        == 303
    )
    future = (TODAY + dt.timedelta(days=2)).isoformat()
    late = dr.post(
        f"/patients/{pid}/prescriptions/pdmp-checks",
        {"checked_on": future, "state": "NY", "findings": "none"},
    )
    assert late.status_code == 422 and "after it was made" in late.text
    assert (
        dr.post(
            f"/patients/{pid}/prescriptions/pdmp-checks",
            {"checked_on": TODAY.isoformat(), "state": "NY", "findings": "none"},
            follow_redirects=False,
        ).status_code
        == 303
    )
    body = draft(dr, pid, compounded_ack=None)
    rx_id = body["id"]
    encounter = prescriptions.patient_prescribing(db, principal(world, "prescriber"), pid).encounters[0].id
    refused = dr.post(f"/prescriptions/{rx_id}/sign", {"acknowledge_warnings": "yes"})
    assert (
        refused.status_code == 422
        and "Not signed" in refused.text
        and "documented acknowledgement" in refused.text
    )
    saved = dr.post(
        f"/prescriptions/{rx_id}/update",
        {"encounter_id": str(encounter), "compounded_ack": ACK, "mme_justification": ""},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    unacknowledged = dr.post(f"/prescriptions/{rx_id}/sign", {})
    assert unacknowledged.status_code == 422 and "Review and acknowledge" in unacknowledged.text
    signed = dr.post(f"/prescriptions/{rx_id}/sign", {"acknowledge_warnings": "yes"}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"].endswith("saved=signed")
    page = dr.get(signed.headers["location"])
    assert (
        "Signed." in page.text
        and "Cancel this prescription" in page.text
        and "Sign prescription" not in page.text
    )
    sent = dr.post(f"/prescriptions/{rx_id}/transmit", {})
    assert sent.status_code == 409 and "certified EPCS intermediary" in sent.text
    cancelled = dr.post(
        f"/prescriptions/{rx_id}/cancel", {"reason": "Patient stopped treatment"}, follow_redirects=False
    )
    assert cancelled.status_code == 303
    assert "CANCELLED" not in dr.get(f"/prescriptions/{rx_id}").text  # the page says it in words
    assert "Cancelled" in dr.get(f"/prescriptions/{rx_id}").text


def test_the_printable_prescription_is_a_pdf(as_role, world, db, ready) -> None:
    dr = as_role("prescriber")
    body = draft(dr, ready.patient_id)
    r = dr.api("GET", f"/api/v1/prescriptions/{body['id']}/pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF") and len(r.content) > 5000
    page = as_role("nurse").get(f"/prescriptions/{body['id']}/pdf")
    assert page.content.startswith(b"%PDF")
    assert audit_entries(db, "prescription.print")


def test_the_epcs_plug_in_point_refuses_clearly_until_a_gateway_is_installed(
    as_role, world, db, ready
) -> None:
    dr = as_role("prescriber")
    in_person(dr, ready.patient_id)
    pdmp(dr, ready.patient_id)
    encounter = dr.api("GET", f"/api/v1/patients/{ready.patient_id}/encounters").json()[0]["id"]
    body = draft(dr, ready.patient_id, encounter_id=encounter)
    unsigned = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/transmit")
    assert is_problem(unsigned, 409) and "signed" in unsigned.json()["detail"]
    dr.api("POST", f"/api/v1/prescriptions/{body['id']}/sign", json={"acknowledge_warnings": True})
    r = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/transmit")
    assert is_problem(r, 409) and r.json()["type"].endswith("epcs-not-configured")
    assert "certified EPCS intermediary" in r.json()["detail"]
    assert [e.outcome for e in audit_entries(db, "prescription.transmit")] == ["refused"]

    class Fake(epcs.EpcsGateway):
        name = "fake vendor"

        def send(self, prescription: epcs.OutgoingPrescription) -> epcs.Receipt:
            assert prescription.prescriber_dea == DEA_VALID and prescription.content_sha256
            return epcs.Receipt(self.name, f"REF-{prescription.prescription_id}", dt.datetime.now(dt.UTC))

    epcs.install(Fake())
    try:
        sent = dr.api("POST", f"/api/v1/prescriptions/{body['id']}/transmit")
    finally:
        epcs.install(epcs.NotConfigured())
    assert sent.status_code == 200 and sent.json()["reference"] == f"REF-{body['id']}"


# --- credentials ------------------------------------------------------------------------------------


def test_admin_records_credentials_with_validated_numbers(as_role, world, db) -> None:
    admin = as_role("admin")
    uid = world.users["prescriber"].id
    base = f"/api/v1/credentials/{uid}"
    bad = admin.api(
        "POST", f"{base}/dea", json={"number": "AP5836720", "state": "NY", "expires_on": FAR.isoformat()}
    )
    assert is_problem(bad, 422) and "check digit" in bad.json()["errors"][0]["message"]
    wrong_name = admin.api(
        "POST", f"{base}/dea", json={"number": "AB1234563", "state": "NY", "expires_on": FAR.isoformat()}
    )
    assert is_problem(wrong_name, 422)
    assert "not the first letter of Prescriber" in wrong_name.json()["errors"][0]["message"]
    explained = admin.api(
        "POST",
        f"{base}/dea",
        json={
            "number": "AB1234563",
            "state": "NJ",
            "expires_on": FAR.isoformat(),
            "name_mismatch_reason": "Registered under maiden name Brown",
        },
    )
    assert explained.status_code == 201
    ok = admin.api(
        "POST", f"{base}/dea", json={"number": "ap5836727", "state": "ny", "expires_on": FAR.isoformat()}
    )
    assert ok.status_code == 201 and {d["number"] for d in ok.json()["dea_registrations"]} == {
        "AB1234563",
        DEA_VALID,
    }
    assert is_problem(admin.api("PUT", f"{base}/npi", json={"npi": "1234567890"}), 422)
    assert admin.api("PUT", f"{base}/npi", json={"npi": NPI_VALID}).json()["npi"] == NPI_VALID
    lic = admin.api(
        "POST", f"{base}/licences", json={"state": "NY", "number": "NY-9", "expires_on": FAR.isoformat()}
    )
    assert lic.status_code == 201
    board = admin.api("POST", f"{base}/boards", json={"board": "ABA", "specialty": "Pain medicine"})
    assert board.status_code == 201 and board.json()["problems"] == []
    assert count(db, DeaRegistration) == 2 and count(db, PrescriberProfile) == 1
    assert len(audit_entries(db, "credential.dea.add")) == 2
    licence_id = lic.json()["licences"][0]["id"]
    assert admin.api("DELETE", f"/api/v1/credentials/licence/{licence_id}").status_code == 204
    assert "No state licence on record." in admin.api("GET", base).json()["problems"]


def test_credential_pages(as_role, world, db) -> None:
    admin = as_role("admin")
    uid = world.users["prescriber"].id
    page = admin.get("/credentials")
    assert page.status_code == 200 and "No DEA registration on record." in page.text
    refused = admin.post(
        f"/credentials/{uid}/dea", {"number": "AP5836720", "state": "NY", "expires_on": FAR.isoformat()}
    )
    assert refused.status_code == 422 and "check digit" in refused.text and "AP5836720" in refused.text
    saved = admin.post(
        f"/credentials/{uid}/dea",
        {"number": DEA_VALID, "state": "NY", "expires_on": FAR.isoformat()},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert admin.post(f"/credentials/{uid}/npi", {"npi": "12345"}).status_code == 422
    nurse = as_role("nurse")
    assert nurse.get(f"/credentials/{uid}").status_code == 200
    assert nurse.post(f"/credentials/{uid}/npi", {"npi": NPI_VALID}).status_code == 403
    assert is_problem(
        nurse.api(
            "POST",
            f"/api/v1/credentials/{uid}/licences",
            json={"state": "NY", "number": "X", "expires_on": FAR.isoformat()},
        ),
        403,
    )
    assert count(db, StateLicence) == 0
    outsider = as_role("outsider")
    assert is_problem(outsider.api("GET", f"/api/v1/credentials/{uid}"), 404)
    assert all(c["user_id"] != uid for c in outsider.api("GET", "/api/v1/credentials").json())


def test_scope_rules_and_who_may(as_role, world, db, ready) -> None:
    admin = as_role("admin")
    nurse_id, dr_id = world.users["nurse"].id, world.users["prescriber"].id
    assert scope.may(db, world.clinic.id, dr_id, "prescribe", "NY", TODAY).allowed
    nope = scope.may(db, world.clinic.id, dr_id, "prescribe", "NJ", TODAY)
    assert not nope.allowed and "No valid licence in NJ." in nope.reasons
    nurse = scope.may(db, world.clinic.id, nurse_id, "prescribe", "NY", TODAY)
    assert not nurse.allowed and any("nurse may not prescribe" in r for r in nurse.reasons)
    r = admin.api(
        "POST",
        "/api/v1/scope-rules",
        json={"role": "prescriber", "activity": "prescribe", "state": "NY", "allowed": False},
    )
    assert r.status_code == 201 and any(x["origin"] == "clinic" for x in r.json())
    assert not scope.may(db, world.clinic.id, dr_id, "prescribe", "NY", TODAY).allowed
    body = draft(as_role("prescriber"), ready.patient_id)
    assert next(c for c in body["checks"] if c["key"] == "scope")["status"] == "block"
    form = admin.post(
        "/credentials-scope", {"role": "prescriber", "activity": "prescribe", "state": "N1", "allowed": "yes"}
    )
    assert form.status_code == 422 and "two-letter" in form.text
    rule_id = db.query(ScopeRule).one().id
    assert admin.post(f"/credentials-scope/{rule_id}/remove", {}, follow_redirects=False).status_code == 303
    assert scope.may(db, world.clinic.id, dr_id, "prescribe", "NY", TODAY).allowed


def test_prescribing_settings_page_and_api(as_role, world, db) -> None:
    admin = as_role("admin")
    page = admin.get("/prescribing/settings")
    assert page.status_code == 200 and "90 FR 61301" in page.text and "2026-12-31" in page.text
    bad = admin.post("/prescribing/settings", {"pdmp_window_days": "120"})
    assert bad.status_code == 422
    saved = admin.post(
        "/prescribing/settings",
        {"pdmp_window_days": "30", "monthly_limit_mg": "1500"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    rows = {r["key"]: r for r in admin.api("GET", "/api/v1/prescribing/settings").json()}
    assert rows["pdmp_window_days"]["value"] == "30" and rows["pdmp_window_days"]["origin"] == "clinic"
    assert rows["flexibility_end"]["value"] == "2026-12-31" and rows["flexibility_end"]["tag"] == "V"
    assert as_role("prescriber").post("/prescribing/settings", {"pdmp_window_days": "10"}).status_code == 403
    assert rx_settings.settings_in_force(db, world.other_clinic.id).pdmp_window_days == 90


def test_products_api_marks_compounded_products_with_the_fda_warning(as_role, world) -> None:
    products = {p["key"]: p for p in as_role("nurse").api("GET", "/api/v1/products").json()}
    assert (
        products["ketamine_sl_lozenge_50"]["compounded"]
        and "not FDA-approved" in products["ketamine_sl_lozenge_50"]["fda_warning"]
    )
    assert products["esketamine_spravato_28"]["home_use"] is False
    assert re.match(r"^(V|V\*|M|design)$", products["ketamine_nasal_spray_10"]["tag"])
