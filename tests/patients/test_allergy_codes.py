"""Allergies as coded substances (issue 14 item 5; knowledge allergens.toml): picked from a coded
list of ingredients and brands on the page and the API, free text kept beside; a free-text entry
is coded by its exact normalised name, never by a fragment; screening matches on the ingredient,
so a Ketalar or Spravato allergy is a hypersensitivity hard stop (Spravato label)."""

from __future__ import annotations

from ketacare.patients.models import Allergy
from tests.helpers import count


def _hard_stops(nurse, patient_id: int) -> set[str]:  # type: ignore[no-untyped-def]
    decision = nurse.api("GET", f"/api/v1/patients/{patient_id}/eligibility").json()
    return {r["code"] for r in decision["reasons"] if r["kind"] == "hard_stop"}


def test_the_api_takes_a_coded_allergen_and_keeps_the_text(as_role, world) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    pid = world.patient_a.id
    assert "hypersensitivity" not in _hard_stops(nurse, pid)
    r = nurse.api(
        "POST",
        f"/api/v1/patients/{pid}/allergies",
        json={"substance_code": "spravato", "substance": "Spravato nasal spray (2024)", "severity": "severe"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["substance_code"] == "spravato" and r.json()["substance"] == "Spravato nasal spray (2024)"
    assert "hypersensitivity" in _hard_stops(nurse, pid)


def test_free_text_brand_is_coded_by_exact_name(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    pid = world.patient_a.id
    r = nurse.api("POST", f"/api/v1/patients/{pid}/allergies", json={"substance": "Ketalar"})
    assert r.status_code == 201 and r.json()["substance_code"] == "ketalar"
    assert "hypersensitivity" in _hard_stops(nurse, pid)


def test_a_name_containing_ketamine_is_not_coded_as_ketamine(as_role, world) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    pid = world.patient_a.id
    r = nurse.api("POST", f"/api/v1/patients/{pid}/allergies", json={"substance": "Ketamine-free lotion"})
    assert r.status_code == 201 and r.json()["substance_code"] is None
    assert "hypersensitivity" not in _hard_stops(nurse, pid)


def test_an_old_free_text_allergy_is_matched_by_exact_name_when_read(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    """A row from before coding (no code, the text as typed) still stops ketamine."""
    db.add(Allergy(patient_id=world.patient_a.id, substance="SPRAVATO", severity="unknown"))
    db.commit()
    assert "hypersensitivity" in _hard_stops(as_role("nurse"), world.patient_a.id)


def test_bad_allergy_input_is_refused_and_changes_nothing(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    url = f"/api/v1/patients/{world.patient_a.id}/allergies"
    unknown = nurse.api("POST", url, json={"substance_code": "propofol"})
    assert unknown.status_code == 422 and unknown.headers["content-type"].startswith(
        "application/problem+json"
    )
    empty = nurse.api("POST", url, json={"reaction": "rash"})
    assert empty.status_code == 422
    assert count(db, Allergy) == 0


def test_the_page_offers_the_coded_list(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    nurse = as_role("nurse")
    base = f"/patients/{world.patient_a.id}"
    page = nurse.get(base)
    assert 'name="substance_code"' in page.text and ">Ketalar (brand of ketamine)<" in page.text
    added = nurse.post(
        f"{base}/allergies", {"substance_code": "ketalar", "substance": "", "severity": "severe"}
    )
    assert (
        "Ketalar (brand of ketamine)" in added.text and "(coded: Ketalar (brand of ketamine))" in added.text
    )
    bad = nurse.post(f"{base}/allergies", {"substance_code": "", "substance": ""}, follow_redirects=False)
    assert bad.status_code == 422 and "Pick the substance" in bad.text
    assert count(db, Allergy) == 1
