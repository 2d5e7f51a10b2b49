"""Practitioner: the clinic's prescribers and nurses, NPI and clean qualifications; never a
password, TOTP or login field."""

from __future__ import annotations

import json

from sqlalchemy import select

from ketacare.interop.fhir.resources.base import table
from ketacare.interop.fhir.resources.practitioner import human_name
from tests.interop_fhir.conftest import utc_z, validate, validate_bundle

BASE = "/fhir/R4"
NPI = "http://hl7.org/fhir/sid/us-npi"


def _staff(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    u = table("users")
    with demo_fhir.db() as db:
        query = select(u).where(u.c.clinic_id == clinic_id).order_by(u.c.id)
        return list(db.execute(query))


def test_prescribers_and_nurses_validate_with_npi_and_qualifications(demo_fhir) -> None:
    practitioners = validate_bundle(demo_fhir.get(f"{BASE}/Practitioner", _count="1000"))
    staff = [u for u in _staff(demo_fhir, demo_fhir.clinic_id) if u.role in ("prescriber", "nurse")]
    assert [p["id"] for p in practitioners] == [str(u.id) for u in staff] and len(staff) >= 2
    with demo_fhir.db() as db:
        prof = table("rx_prescriber_profiles")
        npis = {row.user_id: row.npi for row in db.execute(select(prof))}
        licences = list(db.execute(select(table("rx_state_licences"))))
        deas = list(db.execute(select(table("rx_dea_registrations"))))
    for p, user in zip(practitioners, staff, strict=True):
        assert p["meta"]["profile"] == [
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-practitioner"
        ]
        assert p["name"][0]["text"] == user.full_name
        npi = [i["value"] for i in p["identifier"] if i.get("system") == NPI]
        assert npi == ([npis[user.id]] if npis.get(user.id) else [])
        quals = p.get("qualification", [])
        for lic in (row for row in licences if row.user_id == user.id):
            match = [q for q in quals if q.get("identifier", [{}])[0].get("value") == lic.number]
            assert match and match[0]["period"]["end"] == lic.expires_on.isoformat()
            assert match[0]["code"]["text"] == f"{lic.profession} licence ({lic.state})"
        for dea in (row for row in deas if row.user_id == user.id):
            shown = any(q.get("identifier", [{}])[0].get("value") == dea.number for q in quals)
            assert shown == (dea.name_mismatch_reason is None)
    assert any(p["identifier"][0]["system"] == NPI for p in practitioners)


def test_no_secret_or_login_field_is_exposed(demo_fhir) -> None:
    text = json.dumps(demo_fhir.get(f"{BASE}/Practitioner", _count="1000"))
    for user in _staff(demo_fhir, demo_fhir.clinic_id):
        assert user.password_hash not in text
        assert user.username not in text
        if user.totp_secret:
            assert user.totp_secret not in text


def test_admins_and_patients_are_not_practitioners(demo_fhir) -> None:
    others = [u for u in _staff(demo_fhir, demo_fhir.clinic_id) if u.role not in ("prescriber", "nurse")]
    assert others
    for user in others:
        response = demo_fhir.client.get(f"{BASE}/Practitioner/{user.id}", headers=demo_fhir.headers)
        assert response.status_code == 404


def test_name_parts_and_round_trip(demo_fhir) -> None:
    assert human_name("Dana Okafor MD") == {
        "use": "official",
        "text": "Dana Okafor MD",
        "family": "Okafor",
        "given": ["Dana"],
        "suffix": ["MD"],
    }
    assert human_name("Cher")["family"] == "Cher"
    for p in validate_bundle(demo_fhir.get(f"{BASE}/Practitioner")):
        assert validate(p).model_dump(mode="json", exclude_none=True) == utc_z(p)


def test_search_by_npi_and_family(demo_fhir) -> None:
    with demo_fhir.db() as db:
        prof = table("rx_prescriber_profiles")
        row = db.execute(
            select(prof)
            .where(prof.c.clinic_id == demo_fhir.clinic_id, prof.c.npi.is_not(None))
            .order_by(prof.c.id)
        ).first()
    assert row is not None
    found = validate_bundle(demo_fhir.get(f"{BASE}/Practitioner", identifier=f"{NPI}|{row.npi}"))
    assert [p["id"] for p in found] == [str(row.user_id)]
    family = found[0]["name"][0]["family"]
    assert str(row.user_id) in {
        p["id"] for p in validate_bundle(demo_fhir.get(f"{BASE}/Practitioner", family=family))
    }


def test_another_clinics_staff_never_appear(demo_fhir) -> None:
    with demo_fhir.db() as db:
        other = db.execute(select(table("clinics").c.id).where(table("clinics").c.slug == "bay")).scalar_one()
    theirs = {str(u.id) for u in _staff(demo_fhir, other) if u.role in ("prescriber", "nurse")}
    assert theirs
    ours = {p["id"] for p in validate_bundle(demo_fhir.get(f"{BASE}/Practitioner", _count="1000"))}
    assert ours.isdisjoint(theirs)
    response = demo_fhir.client.get(f"{BASE}/Practitioner/{min(theirs)}", headers=demo_fhir.headers)
    assert response.status_code == 404
