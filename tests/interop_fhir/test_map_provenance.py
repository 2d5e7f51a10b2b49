"""Provenance: signed session reports (nurse author, prescriber verifier) and signed
prescriptions, with the signed SHA-256 as the signature's data."""

from __future__ import annotations

import base64

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

AUTHOR, VERIFIER = "1.2.840.10065.1.12.1.1", "1.2.840.10065.1.12.1.5"


def _signed_sessions(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    return rows(
        demo_fhir,
        "treatment_sessions",
        lambda t: [t.c.clinic_id == clinic_id, t.c.nurse_signed_at.is_not(None)],
    )


def _signed_prescriptions(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    return rows(
        demo_fhir, "prescriptions", lambda t: [t.c.clinic_id == clinic_id, t.c.signed_at.is_not(None)]
    )


def test_every_provenance_validates_and_round_trips(demo_fhir) -> None:
    resources = read_all(demo_fhir, "Provenance")
    assert_round_trips(resources)
    expected = {f"session-{s.id}" for s in _signed_sessions(demo_fhir, demo_fhir.clinic_id)} | {
        f"prescription-{p.id}" for p in _signed_prescriptions(demo_fhir, demo_fhir.clinic_id)
    }
    assert {r["id"] for r in resources} == expected


def test_signatures_equal_the_rows(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "Provenance"))
    sessions = _signed_sessions(demo_fhir, demo_fhir.clinic_id)
    assert sessions
    for s in sessions:
        prov = found[f"session-{s.id}"]
        assert prov["target"] == [{"reference": f"Encounter/{s.id}"}]
        assert prov["extension"][0]["valueReference"] == {"reference": f"Patient/{s.patient_id}"}
        nurse, prescriber = prov["signature"]
        assert nurse["type"][0]["code"] == AUTHOR and prescriber["type"][0]["code"] == VERIFIER
        assert nurse["who"] == {"reference": f"Practitioner/{s.nurse_signed_by_id}"}
        assert prescriber["who"] == {"reference": f"Practitioner/{s.prescriber_signed_by_id}"}
        assert nurse["when"] == instant(s.nurse_signed_at) and prescriber["when"] == instant(
            s.prescriber_signed_at
        )
        assert (
            base64.b64decode(nurse["data"]).hex()
            == s.report_sha256
            == base64.b64decode(prescriber["data"]).hex()
        )
        assert [a["type"]["coding"][0]["code"] for a in prov["agent"]] == ["author", "verifier"]
    for p in _signed_prescriptions(demo_fhir, demo_fhir.clinic_id):
        prov = found[f"prescription-{p.id}"]
        assert prov["target"] == [{"reference": f"MedicationRequest/{p.id}"}]
        (signature,) = prov["signature"]
        assert signature["who"] == {"reference": f"Practitioner/{p.signed_by_id}"}
        assert base64.b64decode(signature["data"]).hex() == p.content_sha256
        assert prov["recorded"] == instant(p.signed_at)


def test_search_by_target(demo_fhir) -> None:
    session = _signed_sessions(demo_fhir, demo_fhir.clinic_id)[0]
    found = read_all(demo_fhir, "Provenance", target=f"Encounter/{session.id}")
    assert [r["id"] for r in found] == [f"session-{session.id}"]
    by_patient = read_all(demo_fhir, "Provenance", patient=f"Patient/{session.patient_id}")
    assert f"session-{session.id}" in {r["id"] for r in by_patient}


def test_another_clinics_signatures_are_not_found(demo_fhir) -> None:
    theirs = _signed_sessions(demo_fhir, other_clinic_id(demo_fhir))
    assert theirs
    assert status_of(demo_fhir, f"{BASE}/Provenance/session-{theirs[0].id}") == 404
