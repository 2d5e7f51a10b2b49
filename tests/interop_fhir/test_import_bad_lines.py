"""FHIR NDJSON import, the bad lines: each is rejected with a specific reason naming what is
wrong, nothing of it is written, and the good lines of the same file are kept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from ketacare.interop.fhir import importer
from ketacare.interop.fhir.models import FhirImportLink
from ketacare.interop.fhir.resources.base import record_number_system
from ketacare.patients.models import Condition, Measurement, Medication, Patient, PatientObservation
from ketacare.patients.schemas import ExternalObservationCreate
from tests.interop_fhir.test_import_good import (
    CONDITION,
    MEDICATION,
    PATIENT,
    ndjson,
    observation,
    post,
    quantity,
)

LOINC = "http://loinc.org"
GOOD_HR = observation("hr-good", "8867-4", valueQuantity=quantity(64, "/min"))


def _line(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource).encode()


def _without(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != key}


def _med(name: str, **changes: Any) -> dict[str, Any]:
    return {
        **MEDICATION,
        "id": "m-" + "".join(c for c in name if c.isalnum()),
        "medicationCodeableConcept": {"text": name},
        **changes,
    }


def _dosage(quantity_: dict[str, Any], timing: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    dosage: dict[str, Any] = {"doseAndRate": [{"doseQuantity": quantity_}]}
    if timing:
        dosage["timing"] = timing
    return [dosage]


def bad_lines(world) -> list[tuple[bytes, str]]:  # type: ignore[no-untyped-def]
    """(line, a fragment of the reason expected)."""
    bp_no_diastolic = observation(
        "bp-x",
        "85354-9",
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": quantity(120, "mm[Hg]"),
            }
        ],
    )
    return [
        (b"this is not json", "not JSON"),
        (b"[1, 2, 3]", "is an array, not one FHIR resource"),
        (b'{"id": "x"}', "resourceType is missing"),
        (
            _line({"resourceType": "Encounter", "id": "e1", "status": "finished"}),
            "'Encounter' is not imported",
        ),
        (_line(_without({**PATIENT, "id": "p-nobirth"}, "birthDate")), "Patient.birthDate is missing"),
        (
            _line({**PATIENT, "id": "p-baddate", "birthDate": "1980-13-45"}),
            "not valid FHIR R4: Patient.birthDate",
        ),
        (_line({**PATIENT, "id": "p-badtype", "name": "Curie"}), "not valid FHIR R4: Patient.name"),
        (
            _line({**PATIENT, "id": "p-state", "address": [{"city": "Paris", "state": "Ile-de-France"}]}),
            "Patient.address.state",
        ),
        (
            _line(
                {
                    **CONDITION,
                    "id": "c-snomed",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "203082005"}]},
                }
            ),
            "Condition.code has only SNOMED CT 203082005",
        ),
        (
            _line({**CONDITION, "id": "c-text", "code": {"text": "Fibromyalgia"}}),
            "Condition.code has no ICD-10-CM coding",
        ),
        (
            _line(
                {
                    **CONDITION,
                    "id": "c-shape",
                    "code": {"coding": [{"system": importer.ICD10CM, "code": "XYZ"}]},
                }
            ),
            "Condition.code (ICD-10-CM): Enter an ICD-10-CM code",
        ),
        (
            _line(
                {
                    **CONDITION,
                    "id": "c-resolved",
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                "code": "resolved",
                            }
                        ]
                    },
                }
            ),
            "Condition.clinicalStatus 'resolved'",
        ),
        (
            _line(observation("bmi", "39156-5", valueQuantity=quantity(24, "kg/m2"))),
            "Observation.code http://loinc.org|39156-5 is not one KetaCare imports",
        ),
        (
            _line(observation("wt-stone", "29463-7", valueQuantity=quantity(11, "stone"))),
            "Observation.valueQuantity unit 'stone' cannot be converted for a body weight",
        ),
        (
            _line(observation("wt-heavy", "29463-7", valueQuantity=quantity(900, "kg"))),
            "Observation.valueQuantity: A weight of 900 kg is not plausible",
        ),
        (
            _line(observation("hr-x", "8867-4", valueQuantity=quantity(400, "/min"))),
            "Observation.valueQuantity 400 /min for Heart rate is outside the plausible range 20-300",
        ),
        (
            _line(observation("hr-unit", "8867-4", valueQuantity=quantity(70, "mm[Hg]"))),
            "Observation.valueQuantity unit 'mm[Hg]' cannot be converted to /min for Heart rate",
        ),
        (
            _line(
                observation(
                    "hr-day", "8867-4", valueQuantity=quantity(70, "/min"), effectiveDateTime="2025-03-04"
                )
            ),
            "Observation.effective '2025-03-04' has no time of day",
        ),
        (
            _line(observation("hr-ghost", "8867-4", "Patient/ghost", valueQuantity=quantity(70, "/min"))),
            "Observation.subject Patient/ghost is not a patient imported into this clinic",
        ),
        (
            _line(
                observation(
                    "hr-other",
                    "8867-4",
                    f"Patient/{world.other_patient.id}",
                    valueQuantity=quantity(70, "/min"),
                )
            ),
            f"Observation.subject Patient/{world.other_patient.id} is not a patient imported into this",
        ),
        (
            _line(
                {
                    **observation("hr-oth-id", "8867-4", valueQuantity=quantity(70, "/min")),
                    "subject": {
                        "identifier": {"system": record_number_system("test"), "value": "OTH-900001"}
                    },
                }
            ),
            "Observation.subject.identifier 'OTH-900001' is not a record number of this clinic "
            "(system urn:ketacare:clinic:test:record-number)",
        ),
        (_line(bp_no_diastolic), "the blood-pressure panel lacks diastolic 8462-4"),
        (
            _line(observation("nrs-11", "72514-3", valueInteger=11)),
            "Observation.value 11 is not a pain NRS score",
        ),
        (
            _line(
                {
                    **observation("hr-err", "8867-4", valueQuantity=quantity(70, "/min")),
                    "status": "entered-in-error",
                }
            ),
            "Observation.status 'entered-in-error'",
        ),
        (
            _line(_med("Oxycodone 5 mg", dosage=_dosage({"value": 5}))),
            "doseQuantity has no unit: 'Oxycodone 5 mg' is an opioid",
        ),
        (
            _line(_med("Morphine ER", dosage=_dosage(quantity(15, "mg")))),
            "MedicationStatement.dosage.timing is missing: 'Morphine ER' is an opioid",
        ),
        (
            _line(
                _med(
                    "Fentanyl patch",
                    dosage=_dosage(quantity(25, "mg"), {"repeat": {"period": 72, "periodUnit": "h"}}),
                )
            ),
            "fentanyl's MME needs its dose in mcg/h",
        ),
        (_line(_med("Vitamin D3")), "the drug class of 'Vitamin D3' cannot be told"),
        (
            _line(
                _med(
                    "Oxycodone",
                    medicationCodeableConcept={
                        "text": "Oxycodone",
                        "coding": [{"system": importer.DRUG_CLASS_SYSTEM, "code": "other"}],
                    },
                )
            ),
            "is named like an opioid (oxycodone) but coded as other",
        ),
        (
            _line({**MEDICATION, "id": "m-stopped", "status": "stopped"}),
            "MedicationStatement.status 'stopped'",
        ),
        (b"", "empty line"),
        (b"   ", "empty line"),
        (b'{"resourceType": "Patient", "id": "nul\x00"}', "NUL character"),
        (b'{"resourceType": "Patient", "id": "nul", "gender": "fe\\u0000male"}', "NUL character"),
        (b'{"resourceType": "Patient", "id": "\xff\xfe"}', "not UTF-8 text"),
        (b'{"resourceType": "Patient", "id": "nan", "x": NaN}', "NaN is not a JSON number"),
        (
            b'{"resourceType": "Patient", "id": "huge", "text": "'
            + b"x" * (importer.MAX_LINE_BYTES + 10)
            + b'"}',
            "longer than",
        ),
    ]


def _rows(db, clinic_id: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    out = {}
    for model in (Condition, Measurement, Medication, PatientObservation):
        query = (
            select(func.count())
            .select_from(model)
            .join(Patient, Patient.id == model.patient_id)
            .where(Patient.clinic_id == clinic_id)
        )
        out[model.__name__] = db.execute(query).scalar_one()
    out["Patient"] = db.execute(
        select(func.count()).select_from(Patient).where(Patient.clinic_id == clinic_id)
    ).scalar_one()
    out["links"] = db.execute(
        select(func.count()).select_from(FhirImportLink).where(FhirImportLink.clinic_id == clinic_id)
    ).scalar_one()
    return out


def test_every_bad_line_is_rejected_with_its_reason_and_nothing_of_it_is_written(
    browser, world, token_for, db
) -> None:
    writer = token_for("system/*.write", "system/*.read")
    cases = bad_lines(world)
    assert len(cases) >= 20
    body = b"\n".join([_line(PATIENT), *(line for line, _ in cases), _line(GOOD_HR)]) + b"\n"
    before = _rows(db, world.clinic.id)
    response = post(browser().client, writer, body, _report="json")
    assert response.status_code == 200, response.text
    report = response.json()
    lines = {line["line"]: line for line in report["lines"]}
    assert report["totals"] == {
        "lines": len(cases) + 2,
        "accepted": 2,
        "unchanged": 0,
        "rejected": len(cases),
    }
    for number, (_, expected) in enumerate(cases, start=2):
        result = lines[number]
        assert result["outcome"] == "rejected", (number, expected, result)
        assert expected in result["reason"], (number, expected, result["reason"])
    assert lines[1]["outcome"] == "accepted" and lines[len(cases) + 2]["outcome"] == "accepted"
    after = _rows(db, world.clinic.id)
    # Only the good Patient and the good heart rate were written.
    assert after == {
        **before,
        "Patient": before["Patient"] + 1,
        "PatientObservation": before["PatientObservation"] + 1,
        "links": before["links"] + 2,
    }


def test_a_line_that_fails_after_writing_leaves_nothing(world, db, monkeypatch) -> None:
    """The savepoint: a failure after the service wrote its row takes the row back with it."""
    from ketacare.auth.principal import Principal
    from ketacare.auth.roles import Role
    from ketacare.errors import InvalidInput
    from ketacare.patients import service as patients

    admin = world.users["admin"]
    actor = Principal(admin.id, admin.username, Role.clinic_admin, world.clinic.id)
    original = patients.add_external_observation

    def write_then_fail(db_, actor_, patient_id: int, data: ExternalObservationCreate):  # type: ignore[no-untyped-def]
        original(db_, actor_, patient_id, data)
        raise InvalidInput(errors={"value": "refused after writing"})

    monkeypatch.setattr(patients, "add_external_observation", write_then_fail)
    stream = __import__("io").BytesIO(ndjson(PATIENT, GOOD_HR))
    report = importer.Importer(db, actor, source_system="old-ehr").run(
        [importer.NdjsonFile("f.ndjson", stream)]
    )
    assert [r.outcome for r in report.lines] == ["accepted", "rejected"]
    assert "refused after writing" in (report.lines[1].reason or "")
    assert db.execute(select(func.count()).select_from(PatientObservation)).scalar_one() == 0
    assert (
        db.execute(
            select(func.count())
            .select_from(FhirImportLink)
            .where(FhirImportLink.resource_type == "Observation")
        ).scalar_one()
        == 0
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"x" * 100_000, "longer than"), (b"short", "not JSON")],
)
def test_long_lines_are_skipped_without_being_held(raw: bytes, expected: str) -> None:
    import io

    stream = io.BytesIO(raw + b"\n" + b'{"resourceType": "Patient"}\n')
    lines = list(importer.read_lines(stream, limit=40))
    assert [n for n, _ in lines] == [1, 2]
    with pytest.raises(importer.Rejected, match=expected):
        importer.parse_line(lines[0][1], limit=40)
    assert lines[1][1] == b'{"resourceType": "Patient"}\n'


def _hr(oid: str, **changes: Any) -> dict[str, Any]:
    return {**observation(oid, "8867-4", valueQuantity=quantity(64, "/min")), **changes}


def test_a_subject_identifier_matches_only_this_clinics_record_number_system(
    browser, world, token_for, db
) -> None:
    """Another hospital's identifier whose value happens to equal one of our record numbers is
    another patient: matched only in this clinic's system, and only as written."""
    writer = token_for("system/*.write", "system/*.read")
    number = world.patient_a.record_number
    own = record_number_system("test")
    body = ndjson(
        _hr(
            "hr-other-sys",
            subject={"identifier": {"system": "http://hospital-b.example/mrn", "value": number}},
        ),
        _hr("hr-no-sys", subject={"identifier": {"value": number}}),
        _hr("hr-lower", subject={"identifier": {"system": own, "value": number.lower()}}),
        _hr("hr-own", subject={"identifier": {"system": own, "value": number}}),
    )
    lines = post(browser().client, writer, body, _report="json").json()["lines"]
    assert [(x["outcome"], x["issue_code"]) for x in lines] == [
        ("rejected", "not-found"),
        ("rejected", "not-found"),
        ("rejected", "not-found"),
        ("accepted", None),
    ]
    assert lines[0]["reason"] == (
        "Observation.subject.identifier has system 'http://hospital-b.example/mrn': only this "
        f"clinic's record numbers (system {own}) are matched; give the patient as a reference to an "
        "imported Patient instead"
    )
    assert "has no system: only this clinic's record numbers" in lines[1]["reason"]
    assert f"{number.lower()!r} is not a record number of this clinic (system {own})" in lines[2]["reason"]
    kept = db.execute(select(PatientObservation.patient_id, PatientObservation.code)).all()
    assert [tuple(k) for k in kept] == [(world.patient_a.id, "8867-4")]


YEAR_ONE = "0001-01-01T00:30:00+01:00"  # before the first instant UTC can hold


def test_a_date_out_of_range_rejects_its_line_and_keeps_the_others(browser, world, token_for, db) -> None:
    writer = token_for("system/*.write", "system/*.read")
    body = ndjson(
        PATIENT,
        _hr("hr-year1", effectiveDateTime=YEAR_ONE),
        {**_without(_hr("p-year1"), "effectiveDateTime"), "effectivePeriod": {"start": YEAR_ONE}},
        GOOD_HR,
    )
    response = post(browser().client, writer, body, _report="json")
    assert response.status_code == 200, response.text
    lines = response.json()["lines"]
    assert [x["outcome"] for x in lines] == ["accepted", "rejected", "rejected", "accepted"]
    assert lines[1]["reason"].startswith(
        f"Observation.effective {YEAR_ONE!r} is not an instant KetaCare can keep"
    )
    kept = db.execute(select(PatientObservation.source)).scalars().all()
    assert kept == ["FHIR import from old-ehr: Observation/hr-good"]
    assert (
        db.execute(
            select(func.count()).select_from(Patient).where(Patient.family_name == "Curie")
        ).scalar_one()
        == 1
    )


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            observation("hr-huge", "8867-4", valueQuantity=quantity(10**400, "/min")),
            "Observation.valueQuantity.value 1000000000",
        ),
        (_med("Oxycodone", dosage=_dosage(quantity(10**400, "mg"))), "doseQuantity.value 1000000000"),
    ],
)
def test_a_number_too_large_for_a_float_is_rejected(world, db, resource, expected) -> None:
    from ketacare.auth.principal import Principal
    from ketacare.auth.roles import Role

    admin = world.users["admin"]
    actor = Principal(admin.id, admin.username, Role.clinic_admin, world.clinic.id)
    stream = __import__("io").BytesIO(ndjson(PATIENT, resource))
    report = importer.Importer(db, actor, source_system="old-ehr").run([importer.NdjsonFile("f", stream)])
    assert [r.outcome for r in report.lines] == ["accepted", "rejected"]
    assert expected in (report.lines[1].reason or "") and "not a number KetaCare can keep" in (
        report.lines[1].reason or ""
    )


def test_an_unexpected_error_on_one_line_is_logged_and_rejects_that_line_only(
    world, db, monkeypatch, caplog
) -> None:
    """The last resort: a ValueError/OverflowError/TypeError nothing foresaw rejects its line
    (the savepoint takes back what it wrote), is logged with its traceback, and the import goes on."""
    from ketacare.auth.principal import Principal
    from ketacare.auth.roles import Role
    from ketacare.patients import service as patients

    admin = world.users["admin"]
    actor = Principal(admin.id, admin.username, Role.clinic_admin, world.clinic.id)
    original = patients.add_external_observation
    calls = []

    def write_then_break(db_, actor_, patient_id: int, data: ExternalObservationCreate):  # type: ignore[no-untyped-def]
        row = original(db_, actor_, patient_id, data)
        calls.append(row.id)
        if len(calls) == 1:
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
        return row

    monkeypatch.setattr(patients, "add_external_observation", write_then_break)
    stream = __import__("io").BytesIO(ndjson(PATIENT, _hr("hr-broken"), GOOD_HR))
    with caplog.at_level("ERROR", logger="ketacare.interop.fhir.importer"):
        report = importer.Importer(db, actor, source_system="old-ehr").run([importer.NdjsonFile("f", stream)])
    assert [(r.outcome, r.issue_code) for r in report.lines] == [
        ("accepted", None),
        ("rejected", "exception"),
        ("accepted", None),
    ]
    assert report.lines[1].reason == (
        "KetaCare could not take a value of this line (TypeError: unsupported operand type(s) for +: "
        "'int' and 'str'); nothing of it was stored"
    )
    assert db.execute(select(PatientObservation.source)).scalars().all() == [
        "FHIR import from old-ehr: Observation/hr-good"
    ]
    logged = [
        r for r in caplog.records if "f line 2 (Observation/hr-broken) failed unexpectedly" in r.getMessage()
    ]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_the_importer_needs_a_source_system(world, db) -> None:
    from ketacare.auth.principal import Principal
    from ketacare.auth.roles import Role
    from ketacare.errors import InvalidInput

    admin = world.users["admin"]
    actor = Principal(admin.id, admin.username, Role.clinic_admin, world.clinic.id)
    for blank in ("", "  "):
        with pytest.raises(InvalidInput) as raised:
            importer.Importer(db, actor, source_system=blank)
        assert raised.value.errors["source"].startswith("Name the system the records come from")
