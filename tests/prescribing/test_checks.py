"""Every prescription check, pure: what passes, warns or blocks, and the source it names."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from ketacare.knowledge.prescribing import product_by_key, scope_defaults
from ketacare.prescribing import rules
from ketacare.prescribing.settings import knowledge_defaults, resolve
from ketacare.screening.eligibility import MedicationFact

ISSUED = dt.date(2026, 3, 2)
FAR = dt.date(2028, 1, 1)
LOZENGE = product_by_key()["ketamine_sl_lozenge_50"]
ACK = "Risks of compounded ketamine at home discussed with the patient and caregiver."
SETTINGS = knowledge_defaults()
ALLOWED = (True, "design default", "design")


def prescriber(**changes: object) -> rules.Prescriber:
    base = rules.Prescriber(
        user_id=1,
        name="Ann Parker MD",
        role="prescriber",
        licences=(rules.Licence("NY", "NY-1", FAR),),
        deas=(rules.DeaRegistration("NY", "AP5836727", FAR),),
        npi="1234567893",
        boards=(rules.BoardCertification("ABA", "Pain medicine", None),),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def draft(**changes: object) -> rules.Draft:
    base = rules.Draft(LOZENGE, quantity=30, days_supply=30, refills=0, issued_on=ISSUED, compounded_ack=ACK)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def patient(**changes: object) -> rules.PatientFacts:
    base = rules.PatientFacts(
        home_state="NY", has_address=True, last_pdmp_on=ISSUED - dt.timedelta(days=3), weight_kg=70.0
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


IN_PERSON = rules.Encounter("in_person", "in_person", ISSUED, "NY")
VIDEO = rules.Encounter("telehealth", "audio_video", ISSUED, "NY")


def run(
    d: rules.Draft | None = None,
    p: rules.Prescriber | None = None,
    e: rules.Encounter | None = IN_PERSON,
    f: rules.PatientFacts | None = None,
    s: object = SETTINGS,
    scope: tuple[bool, str, str] | None = ALLOWED,
) -> dict[str, rules.Check]:
    ev = rules.evaluate(d or draft(), p or prescriber(), e, f or patient(), s, ISSUED, scope)  # type: ignore[arg-type]
    return {c.key: c for c in ev.checks}


def test_a_complete_prescription_has_no_block_and_every_check_names_its_source() -> None:
    checks = run()
    assert {k for k, c in checks.items() if c.status == rules.BLOCK} == set()
    assert {k for k, c in checks.items() if c.status == rules.WARN} == {"compounded"}
    for c in checks.values():
        assert c.source and c.tag in {"V", "V*", "M", "design"}, c


# --- refills (Schedule III) ---------------------------------------------------------------------


def test_more_than_five_refills_is_refused_with_the_dea_source() -> None:
    errors = rules.input_errors(LOZENGE, 30, 30, 6, ISSUED)
    assert "at most 5 refills" in errors["refills"] and "App. C" in errors["refills"]


def test_refills_beyond_six_months_of_issue_are_refused() -> None:
    assert rules.input_errors(LOZENGE, 30, 30, 5, ISSUED) == {}  # last refill day 150: in time
    errors = rules.input_errors(LOZENGE, 40, 40, 5, ISSUED)  # day 200: after 2026-09-02
    assert "within 6 months" in errors["refills"] and "2026-09-18" in errors["refills"]


def test_six_months_from_the_end_of_a_month() -> None:
    assert rules.add_months(dt.date(2026, 8, 31), 6) == dt.date(2027, 2, 28)
    assert rules.add_months(dt.date(2027, 8, 31), 6) == dt.date(2028, 2, 29)


def test_esketamine_is_never_prescribed_for_home() -> None:
    errors = rules.input_errors(product_by_key()["esketamine_spravato_28"], 2, 14, 0, ISSUED)
    assert "never dispensed to patients for home use" in errors["product_key"]
    assert "SPRAVATO" in errors["product_key"]


def test_no_product_and_bad_numbers() -> None:
    errors = rules.input_errors(None, 0, 0, -1, ISSUED)
    assert set(errors) == {"product_key", "quantity", "days_supply", "refills"}


# --- encounter and the telehealth basis -----------------------------------------------------------


def test_audio_only_telehealth_is_blocked() -> None:
    c = run(e=rules.Encounter("telehealth", "audio_only", ISSUED, "NY"))["encounter"]
    assert c.status == rules.BLOCK and "Audio-only" in c.message and "audio-only" in c.source


def test_no_encounter_blocks() -> None:
    assert run(e=None)["encounter"].status == rules.BLOCK


def test_telehealth_with_an_in_person_evaluation_on_record_passes() -> None:
    c = run(e=VIDEO, f=patient(in_person_evaluation_on=dt.date(2025, 6, 1)))["telehealth_basis"]
    assert c.status == rules.PASS and "2025-06-01" in c.message and "Ryan Haight" in c.source


def test_telehealth_under_the_flexibility_passes_and_names_90_fr_61301() -> None:
    c = run(e=VIDEO)["telehealth_basis"]
    assert c.status == rules.PASS and "2026-12-31" in c.message and "90 FR 61301" in c.source


def test_telehealth_warns_within_90_days_of_the_flexibility_end() -> None:
    issued = dt.date(2026, 11, 1)
    ev = rules.evaluate(
        draft(issued_on=issued), prescriber(), VIDEO, patient(last_pdmp_on=issued), SETTINGS, issued, ALLOWED
    )
    c = next(x for x in ev.checks if x.key == "telehealth_basis")
    assert c.status == rules.WARN and "in 60 days" in c.message and "alert 90 days" in c.source


def test_after_the_flexibility_end_an_in_person_evaluation_is_required() -> None:
    issued = dt.date(2027, 1, 4)
    facts = patient(last_pdmp_on=issued)
    ev = rules.evaluate(draft(issued_on=issued), prescriber(), VIDEO, facts, SETTINGS, issued, ALLOWED)
    c = next(x for x in ev.checks if x.key == "telehealth_basis")
    assert c.status == rules.BLOCK and "ended on 2026-12-31" in c.message
    evaluated = dataclasses.replace(facts, in_person_evaluation_on=dt.date(2026, 12, 1))
    ev = rules.evaluate(draft(issued_on=issued), prescriber(), VIDEO, evaluated, SETTINGS, issued, ALLOWED)
    assert next(x for x in ev.checks if x.key == "telehealth_basis").status == rules.PASS


def test_the_flexibility_end_is_a_setting() -> None:
    earlier = resolve({"flexibility_end": dt.date(2026, 1, 31)})
    c = run(e=VIDEO, s=earlier)["telehealth_basis"]
    assert (
        c.status == rules.BLOCK and "ended on 2026-01-31" in c.message and "clinic's own setting" in c.source
    )


def test_an_in_person_encounter_needs_no_telehealth_basis() -> None:
    assert run()["telehealth_basis"].status == rules.PASS


# --- credentials and scope ------------------------------------------------------------------------


def test_an_expired_licence_blocks() -> None:
    p = prescriber(licences=(rules.Licence("NY", "NY-1", ISSUED - dt.timedelta(days=1)),))
    c = run(p=p)["licence"]
    assert c.status == rules.BLOCK and "expired on 2026-03-01" in c.message


def test_a_licence_in_another_state_blocks() -> None:
    c = run(p=prescriber(licences=(rules.Licence("NJ", "NJ-1", FAR),)))["licence"]
    assert c.status == rules.BLOCK and "No state licence in NY" in c.message


def test_the_telehealth_patient_location_is_the_state_judged() -> None:
    ev = run(e=rules.Encounter("telehealth", "audio_video", ISSUED, "NJ"))
    assert ev["licence"].status == rules.BLOCK and "NJ" in ev["licence"].message
    assert ev["dea"].status == rules.BLOCK


def test_a_licence_expiring_soon_warns() -> None:
    p = prescriber(licences=(rules.Licence("NY", "NY-1", ISSUED + dt.timedelta(days=20)),))
    c = run(p=p)["licence"]
    assert c.status == rules.WARN and "in 20 days" in c.message


def test_missing_dea_or_npi_blocks() -> None:
    assert run(p=prescriber(deas=()))["dea"].status == rules.BLOCK
    assert run(p=prescriber(npi=None))["npi"].status == rules.BLOCK


def test_no_board_certification_warns() -> None:
    assert run(p=prescriber(boards=()))["board"].status == rules.WARN


def test_unknown_patient_state_blocks() -> None:
    checks = run(
        e=rules.Encounter("in_person", "in_person", ISSUED, None), f=patient(home_state=None), scope=None
    )
    assert checks["licence"].status == rules.BLOCK and "not known" in checks["licence"].message
    assert checks["scope"].status == rules.BLOCK


def test_scope_rules_state_first_then_every_state_then_default() -> None:
    defaults = scope_defaults()
    own = [
        rules.ScopeRule("prescriber", "prescribe", "*", False),
        rules.ScopeRule("prescriber", "prescribe", "NY", True),
    ]
    assert rules.scope_allows(own, defaults, "prescriber", "prescribe", "NY")[0] is True
    assert rules.scope_allows(own, defaults, "prescriber", "prescribe", "NJ")[0] is False
    allowed, source, tag = rules.scope_allows([], defaults, "nurse", "prescribe", "NY")
    assert not allowed and tag == "design" and "nurses do not prescribe" in source
    assert rules.scope_allows([], defaults, "nurse", "administer", "NY")[0] is True
    c = run(scope=(False, "the clinic's own scope rule", "design"))["scope"]
    assert c.status == rules.BLOCK


# --- PDMP -------------------------------------------------------------------------------------------


def test_no_pdmp_check_blocks_and_names_cdc_rec_9() -> None:
    c = run(f=patient(last_pdmp_on=None))["pdmp"]
    assert c.status == rules.BLOCK and "CDC-2022 Rec 9" in c.source


def test_a_pdmp_check_older_than_the_window_blocks() -> None:
    assert run(f=patient(last_pdmp_on=ISSUED - dt.timedelta(days=90)))["pdmp"].status == rules.PASS
    c = run(f=patient(last_pdmp_on=ISSUED - dt.timedelta(days=91)))["pdmp"]
    assert c.status == rules.BLOCK and "91 days old" in c.message
    stricter = resolve({"pdmp_window_days": 30})
    assert (
        run(f=patient(last_pdmp_on=ISSUED - dt.timedelta(days=31)), s=stricter)["pdmp"].status == rules.BLOCK
    )


# --- patterns ---------------------------------------------------------------------------------------


def supply(
    days_ago: int, days: int = 30, refills: int = 0, key: str = LOZENGE.key, mg: float = 50.0, i: int = 7
) -> rules.Supply:
    route = product_by_key()[key].route
    return rules.Supply(i, key, route, ISSUED - dt.timedelta(days=days_ago), days, refills, mg)


def test_a_refill_on_day_10_of_30_is_refused() -> None:
    c = run(f=patient(prior=(supply(9),)))["early_refill"]
    assert c.status == rules.BLOCK and "day 10 of 30" in c.message and c.tag == "design"


def test_a_refill_late_in_the_supply_passes() -> None:
    assert run(f=patient(prior=(supply(24),)))["early_refill"].status == rules.PASS  # day 25 of 30
    assert run(f=patient(prior=(supply(23),)))["early_refill"].status == rules.BLOCK  # day 24


def test_refills_of_the_previous_prescription_count_as_supply() -> None:
    c = run(f=patient(prior=(supply(40, refills=1),)))["early_refill"]
    assert c.status == rules.BLOCK and "day 41 of 60" in c.message


def test_a_cancelled_prescription_is_no_supply() -> None:
    cancelled = dataclasses.replace(supply(0), ended_on=ISSUED)
    assert run(f=patient(prior=(cancelled,)))["early_refill"].status == rules.PASS


def test_another_running_supply_warns_as_overlap() -> None:
    spray = supply(5, key="ketamine_nasal_spray_10", mg=20.0, i=8)
    c = run(f=patient(prior=(spray,)))["overlap"]
    assert c.status == rules.WARN and "#8" in c.message
    assert run(f=patient(prior=(supply(40),)))["overlap"].status == rules.PASS


def test_dose_escalation_warns() -> None:
    c = run(d=draft(quantity=60), f=patient(prior=(supply(28, mg=50.0),)))["escalation"]
    assert c.status == rules.WARN and "100 mg/day, up 100%" in c.message
    assert run(f=patient(prior=(supply(28, mg=50.0),)))["escalation"].status == rules.PASS


def test_monthly_cumulative_counts_sessions_and_prescriptions_but_not_topical() -> None:
    cream = supply(10, key="ketamine_cream_10pct", mg=1000.0, i=9)
    facts = patient(prior=(supply(10, mg=50.0), cream), session_mg_last_window=200.0)
    c = run(f=facts)["monthly"]
    assert c.status == rules.PASS
    assert "Last 30 days: 750 mg (sessions 200 mg, take-home 550 mg)" in c.message
    assert "Lynch 2005" in c.source and "No source gives a monthly ketamine limit" in c.message


def test_monthly_cumulative_warns_above_the_clinic_limit() -> None:
    c = run(f=patient(session_mg_last_window=400.0), s=resolve({"monthly_limit_mg": 1000.0}))["monthly"]
    assert c.status == rules.WARN and "Next 30 days with this prescription: 1500 mg" in c.message


def opioid(name: str, mg: float, per_day: float) -> MedicationFact:
    return MedicationFact(name, "opioid", mg, "mg", per_day)


@pytest.mark.parametrize(
    ("meds", "status", "text"),
    [
        ((), rules.PASS, "No opioid"),
        ((opioid("Oxycodone", 10, 2),), rules.PASS, "30 MME/day"),
        ((opioid("Oxycodone", 10, 4),), rules.WARN, "60 MME/day. >= 50"),
        ((opioid("Morphine ER", 30, 3),), rules.BLOCK, "90 MME/day. >= 90"),
    ],
)
def test_mme_flags_at_50_and_blocks_at_90_without_a_justification(meds, status, text) -> None:  # type: ignore[no-untyped-def]
    c = run(f=patient(medications=meds))["mme"]
    assert c.status == status and text in c.message and "CDC-2022" in c.source


def test_mme_at_90_with_a_justification_warns() -> None:
    meds = (opioid("Morphine ER", 60, 2),)
    c = run(d=draft(mme_justification="Palliative; naloxone given"), f=patient(medications=meds))["mme"]
    assert c.status == rules.WARN and "Justified: Palliative" in c.message and "CDC 2016 Rec 5" in c.source


def test_benzodiazepine_co_prescribing_warns_and_with_opioids_more_strongly() -> None:
    benzo = MedicationFact("Lorazepam", "benzodiazepine", 1, "mg", 1)
    c = run(f=patient(medications=(benzo,)))["benzodiazepine"]
    assert c.status == rules.WARN and "Lorazepam" in c.message and "SPRAVATO-PI" in c.source
    c = run(f=patient(medications=(benzo, opioid("Oxycodone", 5, 2))))["benzodiazepine"]
    assert c.status == rules.WARN and "high sedation risk" in c.message and "Oxycodone" in c.message


def test_a_compounded_product_needs_the_documented_acknowledgement() -> None:
    c = run(d=draft(compounded_ack=None))["compounded"]
    assert c.status == rules.BLOCK and "not FDA-approved" in c.message and "10 Oct 2023" in c.source
    c = run(d=draft(compounded_ack="ok"))["compounded"]
    assert c.status == rules.BLOCK  # too short to document anything
    c = run()["compounded"]
    assert c.status == rules.WARN and "Acknowledged:" in c.message


def test_a_safety_hold_blocks() -> None:
    c = run(f=patient(holds=("bladder: Positive LUTS screen",)))["safety_hold"]
    assert c.status == rules.BLOCK and "Positive LUTS" in c.message


def test_the_patient_address_must_be_on_the_prescription() -> None:
    c = run(f=patient(has_address=False))["content"]
    assert c.status == rules.BLOCK and "1306.05" in c.source
