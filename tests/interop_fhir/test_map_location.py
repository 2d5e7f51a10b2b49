"""Location: the clinic's treatment chairs, managed by the clinic."""

from __future__ import annotations

from sqlalchemy import select

from ketacare.interop.fhir.resources.base import table
from tests.interop_fhir.conftest import utc_z, validate, validate_bundle

BASE = "/fhir/R4"


def _chairs(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    chairs = table("clinic_chairs")
    with demo_fhir.db() as db:
        return list(db.execute(select(chairs).where(chairs.c.clinic_id == clinic_id).order_by(chairs.c.id)))


def test_every_chair_validates_and_matches_its_row(demo_fhir) -> None:
    locations = validate_bundle(demo_fhir.get(f"{BASE}/Location", _count="1000"))
    rows = _chairs(demo_fhir, demo_fhir.clinic_id)
    assert [loc["id"] for loc in locations] == [str(r.id) for r in rows] and rows
    for loc, row in zip(locations, rows, strict=True):
        assert loc["name"] == f"{row.name}, {row.room}" and loc["alias"] == [row.name]
        assert loc["status"] == ("active" if row.active else "inactive")
        assert loc["managingOrganization"] == {"reference": f"Organization/{demo_fhir.clinic_id}"}
        assert loc["mode"] == "instance" and loc["physicalType"] == {"text": "Treatment chair"}
        assert loc["meta"]["profile"] == ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-location"]


def test_round_trip_loses_nothing(demo_fhir) -> None:
    for loc in validate_bundle(demo_fhir.get(f"{BASE}/Location")):
        assert validate(loc).model_dump(mode="json", exclude_none=True) == utc_z(loc)


def test_search_by_name_and_organization(demo_fhir) -> None:
    rows = _chairs(demo_fhir, demo_fhir.clinic_id)
    found = validate_bundle(demo_fhir.get(f"{BASE}/Location", name=rows[0].name))
    assert str(rows[0].id) in {loc["id"] for loc in found}
    assert all(loc["alias"] == [rows[0].name] for loc in found)
    by_org = demo_fhir.get(f"{BASE}/Location", organization=f"Organization/{demo_fhir.clinic_id}")
    assert by_org["total"] == len(rows)


def test_another_clinics_chairs_never_appear(demo_fhir) -> None:
    with demo_fhir.db() as db:
        other = db.execute(select(table("clinics").c.id).where(table("clinics").c.slug == "bay")).scalar_one()
    theirs = _chairs(demo_fhir, other)
    assert theirs
    ids = {loc["id"] for loc in validate_bundle(demo_fhir.get(f"{BASE}/Location", _count="1000"))}
    assert ids.isdisjoint({str(r.id) for r in theirs})
    response = demo_fhir.client.get(f"{BASE}/Location/{theirs[0].id}", headers=demo_fhir.headers)
    assert response.status_code == 404
