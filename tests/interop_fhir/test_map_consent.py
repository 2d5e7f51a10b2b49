"""Consent: plan consents, proposed until signed; the text and its SHA-256 as the attachment."""

from __future__ import annotations

import base64
import hashlib

from ketacare.interop.fhir.resources.base import instant
from tests.interop_fhir.test_map_medication_request import (
    BASE,
    assert_round_trips,
    by_id,
    other_clinic_id,
    read_all,
    rows,
    status_of,
)


def _consents(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    plans = {p.id for p in rows(demo_fhir, "treatment_plans", lambda t: [t.c.clinic_id == clinic_id])}
    return [c for c in rows(demo_fhir, "plan_consents") if c.plan_id in plans]


def test_every_consent_validates_and_round_trips(demo_fhir) -> None:
    resources = read_all(demo_fhir, "Consent")
    assert_round_trips(resources)
    assert {r["id"] for r in resources} == {str(c.id) for c in _consents(demo_fhir, demo_fhir.clinic_id)}


def test_consents_equal_the_rows(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "Consent"))
    signed = 0
    for row in _consents(demo_fhir, demo_fhir.clinic_id):
        consent = found[str(row.id)]
        assert consent["status"] == ("active" if row.signed_at else "proposed")
        assert consent["scope"]["coding"][0] == {
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "treatment",
            "display": "Treatment",
        }
        assert "coding" not in consent["category"][0]  # no consent LOINC in the facts
        assert consent["patient"] == {"reference": f"Patient/{row.patient_id}"}
        assert consent["dateTime"] == instant(row.signed_at or row.generated_at)
        attachment = consent["sourceAttachment"]
        text = base64.b64decode(attachment["data"]).decode("utf-8")
        assert text == row.text
        assert base64.b64decode(attachment["hash"]).hex() == row.content_sha256
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == row.content_sha256
        assert consent["provision"]["data"][0]["reference"] == {"reference": f"CarePlan/{row.plan_id}"}
        if row.signed_at:
            signed += 1
            assert consent["performer"][0]["display"] == row.signed_name
            assert consent["identifier"][0]["value"] == row.signature_sha256
    assert signed


def test_search_by_status(demo_fhir) -> None:
    active = read_all(demo_fhir, "Consent", status="active")
    expected = {str(c.id) for c in _consents(demo_fhir, demo_fhir.clinic_id) if c.signed_at}
    assert {r["id"] for r in active} == expected
    proposed = read_all(demo_fhir, "Consent", status="proposed")
    assert not {r["id"] for r in proposed} & expected and proposed


def test_another_clinics_consents_are_not_found(demo_fhir) -> None:
    theirs = _consents(demo_fhir, other_clinic_id(demo_fhir))
    assert theirs
    assert status_of(demo_fhir, f"{BASE}/Consent/{theirs[0].id}") == 404
