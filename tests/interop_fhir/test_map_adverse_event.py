"""AdverseEvent: catalogue term, seriousness, severity from the CTCAE grade (exact grade kept),
outcome, the suspect drug (RxNorm ketamine) and the session."""

from __future__ import annotations

from ketacare.interop.fhir.resources.adverse_event import CTCAE_GRADE_SYSTEM, SEVERITY, severity_code
from ketacare.interop.fhir.resources.base import instant
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


def _events(demo_fhir, clinic_id: int) -> list:  # type: ignore[no-untyped-def]
    return rows(demo_fhir, "adverse_events", lambda t: [t.c.clinic_id == clinic_id])


def test_every_adverse_event_validates_and_round_trips(demo_fhir) -> None:
    resources = read_all(demo_fhir, "AdverseEvent")
    assert_round_trips(resources)
    assert {r["id"] for r in resources} == {str(e.id) for e in _events(demo_fhir, demo_fhir.clinic_id)}


def test_adverse_events_equal_the_rows(demo_fhir) -> None:
    found = by_id(read_all(demo_fhir, "AdverseEvent"))
    grades = set()
    for row in _events(demo_fhir, demo_fhir.clinic_id):
        ae = found[str(row.id)]
        assert ae["actuality"] == "actual"
        assert ae["event"]["coding"][0] == {
            "system": "urn:ketacare:adverse-event",
            "code": row.term_key,
            "display": row.term,
        }
        assert ae["date"] == instant(row.onset_at)
        assert ae["encounter"] == {"reference": f"Encounter/{row.session_id}"}
        assert ae["recorder"] == {"reference": f"Practitioner/{row.recorded_by_id}"}
        assert ae["seriousness"]["coding"][0]["code"] == ("serious" if row.serious else "non-serious")
        severity = ae["severity"]["coding"]
        expected = "mild" if row.grade == 1 else "moderate" if row.grade == 2 else "severe"
        assert severity[0] == {"system": SEVERITY, "code": expected, "display": expected.capitalize()}
        assert severity[1]["system"] == CTCAE_GRADE_SYSTEM and severity[1]["code"] == str(row.grade)
        assert ae["severity"]["text"].startswith(f"CTCAE grade {row.grade}")
        assert ae["outcome"]["coding"][0]["code"] == {"resolved": "resolved", "resolving": "recovering"}.get(
            row.outcome, ae["outcome"]["coding"][0]["code"]
        )
        suspect = ae["contained"][0]
        assert ae["suspectEntity"][0]["instance"]["reference"] == f"#{suspect['id']}"
        assert suspect["code"]["coding"][0] == {"system": RXNORM, "code": "6130", "display": "ketamine"}
        grades.add(row.grade)
    assert {1, 2, 3} <= grades


def test_severity_mapping_of_every_grade() -> None:
    assert [severity_code(g)[0] for g in (1, 2, 3, 4, 5)] == [
        "mild",
        "moderate",
        "severe",
        "severe",
        "severe",
    ]


def test_search_by_severity_and_date(demo_fhir) -> None:
    events = _events(demo_fhir, demo_fhir.clinic_id)
    severe = read_all(demo_fhir, "AdverseEvent", severity=f"{SEVERITY}|severe")
    assert {r["id"] for r in severe} == {str(e.id) for e in events if e.grade >= 3}
    first = min(events, key=lambda e: e.onset_at)
    day = first.onset_at.date().isoformat()
    on_day = read_all(demo_fhir, "AdverseEvent", date=day)
    assert str(first.id) in {r["id"] for r in on_day}
    assert all(r["date"].startswith(day) for r in on_day)


def test_another_clinics_events_are_not_found(demo_fhir) -> None:
    theirs = _events(demo_fhir, other_clinic_id(demo_fhir))
    assert theirs
    assert status_of(demo_fhir, f"{BASE}/AdverseEvent/{theirs[0].id}") == 404
