"""Organization: the reader's own clinic, with its directory profile's address and phone."""

from __future__ import annotations

from sqlalchemy import select

from ketacare.interop.fhir.resources.base import table
from tests.interop_fhir.conftest import utc_z, validate, validate_bundle

BASE = "/fhir/R4"


def test_the_clinic_validates_and_matches_its_rows(demo_fhir) -> None:
    orgs = validate_bundle(demo_fhir.get(f"{BASE}/Organization", _count="1000"))
    assert [o["id"] for o in orgs] == [str(demo_fhir.clinic_id)]
    org = orgs[0]
    with demo_fhir.db() as db:
        clinic = db.execute(
            select(table("clinics")).where(table("clinics").c.id == demo_fhir.clinic_id)
        ).one()
        profile = db.execute(
            select(table("directory_profiles")).where(table("directory_profiles").c.clinic_id == clinic.id)
        ).one()
    assert org["name"] == clinic.name and org["active"] is True
    assert org["identifier"] == [{"system": "urn:ketacare:clinic", "value": clinic.slug}]
    assert org["meta"]["profile"] == ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-organization"]
    address = org["address"][0]
    assert address["line"] == [profile.street] and address["city"] == profile.city
    assert address["state"] == profile.state and address["postalCode"] == profile.zip
    assert org["telecom"] == [{"system": "phone", "value": profile.public_phone, "use": "work"}]


def test_round_trip_loses_nothing(demo_fhir) -> None:
    org = demo_fhir.get(f"{BASE}/Organization/{demo_fhir.clinic_id}")
    assert validate(org).model_dump(mode="json", exclude_none=True) == utc_z(org)


def test_search_by_name_and_identifier(demo_fhir) -> None:
    found = validate_bundle(demo_fhir.get(f"{BASE}/Organization", name="north shore"))
    assert [o["id"] for o in found] == [str(demo_fhir.clinic_id)]
    assert demo_fhir.get(f"{BASE}/Organization", identifier="urn:ketacare:clinic|north")["total"] == 1
    assert demo_fhir.get(f"{BASE}/Organization", identifier="urn:ketacare:clinic|bay")["total"] == 0


def test_another_clinic_is_not_found(demo_fhir) -> None:
    with demo_fhir.db() as db:
        other = db.execute(select(table("clinics").c.id).where(table("clinics").c.slug == "bay")).scalar_one()
    response = demo_fhir.client.get(f"{BASE}/Organization/{other}", headers=demo_fhir.headers)
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert demo_fhir.get(f"{BASE}/Organization", _id=str(other))["total"] == 0
