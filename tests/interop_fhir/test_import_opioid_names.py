"""FHIR import of opioids (issue 14 item 3): the drug is told by the exact names of the MME table
(never a fragment), an opioid with a CDC factor needs what its MME needs, and buprenorphine (the
CDC gives it no factor, clinical-facts 5.2) is kept without a dose and shown as not computed."""

from __future__ import annotations

from typing import Any

from ketacare.patients.models import Medication
from tests.interop_fhir.test_import_good import MEDICATION, PATIENT, ndjson, post, quantity


def _med(mid: str, name: str, dosage: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {**MEDICATION, "id": mid, "medicationCodeableConcept": {"text": name}, "dosage": dosage or []}


def test_opioid_names_and_doses_on_import(browser, token_for, db) -> None:  # type: ignore[no-untyped-def]
    writer = token_for("system/*.write", "system/*.read")
    every_8h = {"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}
    body = ndjson(
        PATIENT,
        _med("bup", "Buprenorphine"),  # no factor: no dose needed, kept
        _med("dhc-nodose", "Dihydrocodeine 30 mg"),  # a factor (0.25): the dose is needed
        _med(
            "dhc",
            "Dihydrocodeine",
            [{"timing": every_8h, "doseAndRate": [{"doseQuantity": quantity(30, "mg")}]}],
        ),
    )
    report = post(browser().client, writer, body, _report="json").json()
    lines = {line["line"]: line for line in report["lines"]}
    assert lines[2]["outcome"] == "accepted", lines[2]
    assert lines[3]["outcome"] == "rejected" and "Dihydrocodeine 30 mg" in lines[3]["reason"]
    assert "is an opioid and its MME needs the dose" in lines[3]["reason"]
    assert lines[4]["outcome"] == "accepted", lines[4]
    kept = {m.name: m for m in db.query(Medication)}
    assert kept["Buprenorphine"].drug_class == "opioid" and kept["Buprenorphine"].dose_amount is None
    assert kept["Dihydrocodeine"].drug_class == "opioid"
