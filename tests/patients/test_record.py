"""The rest of the record: edit, weight and height, conditions, medications, allergies."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ketacare.patients.models import Condition, Measurement, Patient
from ketacare.patients.schemas import WEIGHT_KG_MAX, WEIGHT_KG_MIN, MeasurementCreate
from tests.helpers import audit_entries, count, is_problem


def test_edit_demographics_keeps_typed_values_on_error(as_role, world, db) -> None:
    nurse = as_role("nurse")
    url = f"/patients/{world.patient_a.id}/edit"
    bad = nurse.post(
        url,
        {
            "given_name": "Ada",
            "family_name": "King",
            "date_of_birth": "1980-13-45",
            "sex": "female",
            "postal_code": "ABCDE",
        },
    )
    assert bad.status_code == 422
    assert 'value="King"' in bad.text and "5-digit ZIP" in bad.text
    db.refresh(world.patient_a)
    assert world.patient_a.family_name == "Lovelace"
    good = nurse.post(
        url,
        {
            "given_name": "Ada",
            "family_name": "King",
            "date_of_birth": "1980-05-17",
            "sex": "female",
            "state": "ny",
            "postal_code": "10001",
        },
    )
    assert good.status_code == 200
    db.refresh(world.patient_a)
    assert (world.patient_a.family_name, world.patient_a.state) == ("King", "NY")
    assert "family_name" in audit_entries(db, "patient.update")[0].detail


def test_absurd_weights_are_refused_and_nothing_is_written(as_role, world, db) -> None:
    nurse = as_role("nurse")
    url = f"/patients/{world.patient_a.id}/measurements"
    for weight in ("0", "900", "-5", "heavy"):
        page = nurse.post(url, {"weight_kg": weight, "measured_on": "2026-01-02"})
        assert page.status_code == 422, weight
        assert f'value="{weight}"' in page.text
    api = nurse.api(
        "POST",
        f"/api/v1/patients/{world.patient_a.id}/measurements",
        json={"weight_kg": 900, "measured_on": "2026-01-02"},
    )
    assert is_problem(api, 422)
    assert api.json()["errors"][0]["field"] == "weight_kg"
    assert count(db, Measurement) == 0
    ok = nurse.post(url, {"weight_kg": "82.5", "height_cm": "171", "measured_on": "2026-01-02"})
    assert ok.status_code == 200 and "82.5 kg" in ok.text


def test_future_measurement_date_refused(as_role, world) -> None:
    nurse = as_role("nurse")
    response = nurse.api(
        "POST",
        f"/api/v1/patients/{world.patient_a.id}/measurements",
        json={"weight_kg": 80, "measured_on": "2999-01-01"},
    )
    assert response.status_code == 422


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weight=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_weight_rule_accepts_exactly_the_plausible_range(weight: float) -> None:
    import datetime as dt

    from pydantic import ValidationError

    try:
        MeasurementCreate(weight_kg=weight, measured_on=dt.date(2026, 1, 1))
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == (WEIGHT_KG_MIN <= weight <= WEIGHT_KG_MAX)


def test_conditions_are_coded(as_role, world, db) -> None:
    prescriber = as_role("prescriber")
    url = f"/api/v1/patients/{world.patient_a.id}/conditions"
    known = prescriber.api("POST", url, json={"icd10_code": "g90.512"})
    assert known.status_code == 201 and known.json()["display"] == "CRPS I of left upper limb"
    duplicate = prescriber.api("POST", url, json={"icd10_code": "G90.512"})
    assert duplicate.status_code == 422
    unknown_no_text = prescriber.api("POST", url, json={"icd10_code": "M25.511"})
    assert unknown_no_text.status_code == 422
    unknown_with_text = prescriber.api(
        "POST", url, json={"icd10_code": "M25.511", "display": "Pain in right shoulder"}
    )
    assert unknown_with_text.status_code == 201
    not_a_code = prescriber.api("POST", url, json={"icd10_code": "hello"})
    assert not_a_code.status_code == 422
    assert count(db, Condition) == 2


def test_medications_and_allergies_via_pages(as_role, world, db) -> None:
    nurse = as_role("nurse")
    base = f"/patients/{world.patient_a.id}"
    med = nurse.post(
        f"{base}/medications",
        {
            "name": "Oxycodone",
            "drug_class": "opioid",
            "dose_amount": "10",
            "dose_unit": "mg",
            "doses_per_day": "3",
        },
    )
    assert med.status_code == 200 and "Oxycodone" in med.text
    no_unit = nurse.post(
        f"{base}/medications", {"name": "Morphine", "drug_class": "opioid", "dose_amount": "5"}
    )
    assert no_unit.status_code == 422 and "unit" in no_unit.text
    allergy = nurse.post(f"{base}/allergies", {"substance": "Latex", "reaction": "hives", "severity": "mild"})
    assert "Latex" in allergy.text
    record = nurse.api("GET", f"/api/v1/patients/{world.patient_a.id}").json()
    assert [m["name"] for m in record["medications"]] == ["Oxycodone"]
    assert record["allergies"][0]["substance"] == "Latex"
    removed = nurse.post(f"{base}/allergies/{record['allergies'][0]['id']}/remove")
    assert removed.status_code == 200
    assert nurse.api("GET", f"/api/v1/patients/{world.patient_a.id}").json()["allergies"] == []
    assert audit_entries(db, "patient.allergy.remove")


def test_malformed_json_is_a_problem_and_writes_nothing(as_role, db) -> None:
    nurse = as_role("nurse")
    before = count(db, Patient)
    response = nurse.client.post(
        "/api/v1/patients",
        content=b"{not json",
        headers={"X-CSRF-Token": nurse.csrf, "Content-Type": "application/json"},
    )
    assert is_problem(response, 422)
    bad_date = nurse.api(
        "POST",
        "/api/v1/patients",
        json={"given_name": "A", "family_name": "B", "date_of_birth": "31/12/1990", "sex": "female"},
    )
    assert is_problem(bad_date, 422)
    assert count(db, Patient) == before
