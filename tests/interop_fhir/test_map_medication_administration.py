"""MedicationAdministration: the session administration record as constant-rate infusion pieces
(start / rate change, closed by the next change or the stop) and single doses."""

from __future__ import annotations

from collections import defaultdict

from ketacare.interop.fhir.resources.base import instant
from ketacare.interop.fhir.resources.medication_administration import open_status
from tests.interop_fhir.test_map_medication_request import (
    BASE,
    RXNORM,
    assert_round_trips,
    by_id,
    other_clinic_id,
    read_all,
    rows,
    status_of,
)


def _administrations(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    sessions = {s.id for s in rows(demo_fhir, "treatment_sessions", lambda t: [t.c.clinic_id == clinic_id])}
    return [r for r in rows(demo_fhir, "session_administrations") if r.session_id in sessions]


def test_every_administration_validates_and_round_trips(demo_fhir) -> None:
    resources = read_all(demo_fhir, "MedicationAdministration")
    assert_round_trips(resources)
    given = _administrations(demo_fhir, demo_fhir.clinic_id)
    assert {r["id"] for r in resources} == {str(g.id) for g in given if g.kind != "stop"}


def test_infusion_pieces_and_doses_equal_the_rows(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "MedicationAdministration"))
    per_session: dict[int, list] = defaultdict(list)
    for row in _administrations(demo_fhir, demo_fhir.clinic_id):
        per_session[row.session_id].append(row)
    status = {s.id: s.status for s in rows(demo_fhir, "treatment_sessions")}
    checked = {"start": 0, "rate_change": 0, "premedication": 0, "open": 0}
    for given in per_session.values():
        given.sort(key=lambda g: (g.given_at, g.id))
        infusion = [g for g in given if g.kind in ("start", "rate_change", "stop")]
        for row in given:
            if row.kind == "stop":
                continue
            ma = found[str(row.id)]
            assert ma["context"] == {"reference": f"Encounter/{row.session_id}"}
            assert ma["performer"][0]["actor"] == {"reference": f"Practitioner/{row.recorded_by_id}"}
            if row.kind in ("start", "rate_change"):
                after = infusion[infusion.index(row) + 1 :]
                if after:
                    assert ma["effectivePeriod"] == {
                        "start": instant(row.given_at),
                        "end": instant(after[0].given_at),
                    }
                    assert ma["status"] == "completed"
                else:  # the infusion still runs
                    assert ma["effectivePeriod"] == {"start": instant(row.given_at)}
                    assert ma["status"] == open_status(status[row.session_id]) == "in-progress"
                    checked["open"] = checked.get("open", 0) + 1
                assert ma["dosage"]["rateQuantity"] == {
                    "value": row.rate_mg_per_h,
                    "unit": "mg/h",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg/h",
                }
                assert ma["medicationCodeableConcept"]["coding"][0] == {
                    "system": RXNORM,
                    "code": "6130",
                    "display": "ketamine",
                }
            else:
                assert ma["effectiveDateTime"] == instant(row.given_at)
                assert ma["dosage"]["dose"]["value"] == row.dose_mg and ma["dosage"]["dose"]["code"] == "mg"
                assert ma["medicationCodeableConcept"] == {
                    "text": row.product or row.drug
                }  # no code in the facts
            checked[row.kind] = checked.get(row.kind, 0) + 1
    assert checked["start"] and checked["rate_change"] and checked["premedication"] and checked["open"]


def test_search_by_context_and_code(demo_fhir) -> None:
    given = _administrations(demo_fhir, demo_fhir.clinic_id)
    session_id = next(g.session_id for g in given if g.kind == "rate_change")
    in_session = read_all(demo_fhir, "MedicationAdministration", context=f"Encounter/{session_id}")
    assert {r["id"] for r in in_session} == {
        str(g.id) for g in given if g.session_id == session_id and g.kind != "stop"
    }
    ketamine = read_all(demo_fhir, "MedicationAdministration", code="6130")
    assert {r["id"] for r in ketamine} == {
        str(g.id) for g in given if g.drug == "ketamine" and g.kind != "stop"
    }


def test_another_clinics_administrations_are_not_found(demo_fhir) -> None:
    theirs = _administrations(demo_fhir, other_clinic_id(demo_fhir))
    assert theirs
    assert status_of(demo_fhir, f"{BASE}/MedicationAdministration/{theirs[0].id}") == 404
    ours = {r["id"] for r in read_all(demo_fhir, "MedicationAdministration")}
    assert not ours & {str(g.id) for g in theirs}


def test_an_open_infusion_piece_follows_its_session() -> None:
    assert open_status("running") == "in-progress"
    assert open_status("aborted") == "stopped"
    assert open_status("recovery") == "unknown"
