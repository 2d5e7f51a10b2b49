"""Patient API edge cases."""

from __future__ import annotations


def test_a_required_field_cannot_be_emptied(as_role, world) -> None:  # type: ignore[no-untyped-def]
    # found by the API fuzzer: a null date of birth reached the database (NOT NULL) as a 500
    dr = as_role("prescriber")
    r = dr.api("PATCH", f"/api/v1/patients/{world.patient_a.id}", json={"date_of_birth": None})
    assert r.status_code == 422 and "cannot be emptied" in r.text
    assert dr.api("GET", f"/api/v1/patients/{world.patient_a.id}").json()["date_of_birth"]
