"""Patient/$everything with the part-A types: a demo patient whose series is complete gets
their Encounters, vital-sign Observations and Conditions, and the Organization, Locations and
Practitioners those point at (and nothing of another patient or clinic)."""

from __future__ import annotations

from sqlalchemy import func, select

from ketacare.interop.fhir.resources.base import table
from tests.interop_fhir.conftest import validate_bundle

BASE = "/fhir/R4"


def _completed_patient(demo_fhir) -> int:  # type: ignore[no-untyped-def]
    """The clinic's patient with the most discharged sessions and no session still open."""
    s = table("treatment_sessions")
    with demo_fhir.db() as db:
        open_ = select(s.c.patient_id).where(s.c.status != "discharged")
        query = (
            select(s.c.patient_id, func.count())
            .where(
                s.c.clinic_id == demo_fhir.clinic_id, s.c.status == "discharged", s.c.patient_id.not_in(open_)
            )
            .group_by(s.c.patient_id)
            .order_by(func.count().desc(), s.c.patient_id)
        )
        return int(db.execute(query).first()[0])


def test_everything_holds_the_sessions_and_what_they_reference(demo_fhir) -> None:
    patient = _completed_patient(demo_fhir)
    resources = validate_bundle(demo_fhir.get(f"{BASE}/Patient/{patient}/$everything"))
    by_type: dict[str, dict[str, dict]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], {})[r["id"]] = r
    s, pc, v = table("treatment_sessions"), table("patient_conditions"), table("session_vitals")
    with demo_fhir.db() as db:
        sessions = list(db.execute(select(s).where(s.c.patient_id == patient)))
        conditions = {str(c) for c in db.execute(select(pc.c.id).where(pc.c.patient_id == patient)).scalars()}
        vital_count = db.execute(
            select(func.count())
            .select_from(v)
            .where(v.c.session_id.in_([x.id for x in sessions]), v.c.kind != "dbp")
        ).scalar_one()
    assert set(by_type["Encounter"]) == {str(x.id) for x in sessions} and len(sessions) >= 3
    assert set(by_type["Condition"]) == conditions and conditions
    vital_signs = [
        o for o in by_type["Observation"].values() if o["category"][0]["coding"][0]["code"] == "vital-signs"
    ]
    in_sessions = [o for o in vital_signs if "encounter" in o]
    assert len(in_sessions) == vital_count > 0
    assert any(o["id"].startswith("bp-") for o in in_sessions)
    # The non-patient resources the record points at are in the bundle too.
    assert set(by_type["Organization"]) == {str(demo_fhir.clinic_id)}
    assert set(by_type["Location"]) == {str(x.chair_id) for x in sessions if x.chair_id is not None}
    staff = {str(uid) for x in sessions for uid in (x.nurse_id, x.prescriber_id) if uid is not None}
    assert set(by_type["Practitioner"]) == staff
    # Every reference to one of these types resolves inside the bundle.
    for r in resources:
        for enc in (r.get("encounter"),):
            if enc:
                assert enc["reference"].split("/")[1] in by_type["Encounter"]
    subjects = {
        o["subject"]["reference"]
        for t in ("Encounter", "Condition", "Observation")
        for o in by_type[t].values()
    }
    assert subjects == {f"Patient/{patient}"}
