"""Every eligibility rule, each test naming the source of the fact it checks (pure rules)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ketacare.knowledge.contraindications import contraindications, risk_factors
from ketacare.screening.eligibility import (
    ELIGIBLE,
    INCOMPLETE,
    NEEDS_OVERRIDE,
    NOT_ELIGIBLE,
    MedicationFact,
    ScreeningFacts,
    decide,
    mme_per_day,
)

ALL_NO = {c.key: "no" for c in contraindications()} | {r.key: "no" for r in risk_factors()}


def facts(**changes: object) -> ScreeningFacts:
    base: dict[str, object] = {
        "condition_codes": ("G90.512",),
        "screened": True,
        "answers": dict(ALL_NO),
        "prior_therapies": ("anticonvulsant", "physical_therapy"),
        "sbp_mmhg": 125.0,
        "dbp_mmhg": 80.0,
    }
    answers = changes.pop("answers", None)
    if answers:
        base["answers"] = {**ALL_NO, **answers}  # type: ignore[dict-item]
    base.update(changes)
    return ScreeningFacts(**base)  # type: ignore[arg-type]


def codes(decision, kind: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {r.code for r in decision.of_kind(kind)}


def test_complete_clean_crps_record_is_eligible_with_grade_b() -> None:
    """ASRA-2018 (GC, MC): CRPS is grade B."""
    d = decide(facts())
    assert d.status == ELIGIBLE and d.evidence_grade == "B"
    assert "off_label_weak" not in codes(d, "indication")


@pytest.mark.parametrize(("code", "grade"), [("G89.0", "C"), ("M79.7", "D"), ("G43.909", "D")])
def test_other_indications_are_graded_and_flagged_off_label(code: str, grade: str) -> None:
    """ASRA-2018: spinal cord injury pain grade C, others D; facts 1.1 rule: off-label weak evidence."""
    d = decide(facts(condition_codes=(code,)))
    assert d.evidence_grade == grade
    assert "off_label_weak" in codes(d, "indication")
    assert "ASRA-2018" in d.of_kind("indication")[0].source


def test_best_grade_wins_when_several_conditions() -> None:
    assert decide(facts(condition_codes=("M79.7", "G90.512"))).evidence_grade == "B"


def test_no_indication_on_record_is_missing() -> None:
    d = decide(facts(condition_codes=("M25.511",)))
    assert d.status == INCOMPLETE and "indication" in codes(d, "missing")


HARD = [
    "hypersensitivity",
    "aneurysm_avm_ich",
    "raised_icp",
    "active_psychosis",
    "pregnancy",
    "severe_hepatic",
    "uncontrolled_bp",
]
HARD_SOURCES = {
    "hypersensitivity": "SPRAVATO-PI",
    "aneurysm_avm_ich": "SPRAVATO-PI",
    "raised_icp": "ASRA-2018",
    "active_psychosis": "ASRA-2018",
    "pregnancy": "ASRA-2018",
    "severe_hepatic": "ASRA-2018",
    "uncontrolled_bp": "Ketalar label",
}


@pytest.mark.parametrize("key", HARD)
def test_each_hard_stop(key: str) -> None:
    """Hard stops of clinical-facts 1.4 / section 9 rule 1; each names its source."""
    d = decide(facts(answers={key: "yes"}))
    assert d.status == NOT_ELIGIBLE
    (reason,) = [r for r in d.hard_stops if r.code == key]
    assert HARD_SOURCES[key] in reason.source


def test_hard_stop_cannot_be_overridden() -> None:
    d = decide(facts(answers={"pregnancy": "yes"}, overrides={"pregnancy": "patient insists strongly"}))
    assert d.status == NOT_ELIGIBLE


def test_ketamine_allergy_on_record_is_a_hard_stop_even_if_answered_no() -> None:
    """Spravato label: hypersensitivity to esketamine or ketamine is an absolute contraindication."""
    d = decide(facts(allergy_substances=("Esketamine",)))
    assert d.status == NOT_ELIGIBLE and "hypersensitivity" in codes(d, "hard_stop")


RELATIVE = {
    "poorly_controlled_cvd": "grade B",
    "moderate_hepatic": "grade C",
    "raised_iop": "grade C",
    "substance_misuse": "grade C",
}


@pytest.mark.parametrize("key", sorted(RELATIVE))
def test_each_relative_caution_needs_an_override_then_passes(key: str) -> None:
    """ASRA-2018 relative contraindications (GC), with their grade in the source."""
    answers = {key: "yes"}
    if key == "poorly_controlled_cvd":
        d0 = decide(facts(answers=answers, ecg_on_file=True))
    elif key == "moderate_hepatic":
        d0 = decide(facts(answers=answers, lft_on_file=True))
    else:
        d0 = decide(facts(answers=answers))
    assert d0.status == NEEDS_OVERRIDE
    (reason,) = [r for r in d0.open_cautions if r.code == key]
    assert "ASRA-2018" in reason.source and RELATIVE[key] in reason.source
    overridden = decide(
        facts(answers=answers, ecg_on_file=True, lft_on_file=True, overrides={key: "benefit outweighs risk"})
    )
    assert overridden.status == ELIGIBLE and key in codes(overridden, "overridden")


def test_blood_pressure_above_180_systolic_is_a_hard_stop() -> None:
    """ED low-dose ketamine protocol (scirp): do not give if SBP > 180."""
    d = decide(facts(sbp_mmhg=185.0, dbp_mmhg=95.0))
    assert d.status == NOT_ELIGIBLE and "scirp" in d.hard_stops[0].source
    assert decide(facts(sbp_mmhg=180.0, dbp_mmhg=85.0)).status != NOT_ELIGIBLE


def test_blood_pressure_above_140_90_needs_a_documented_decision() -> None:
    """Spravato label: BP > 140/90 before dosing -> weigh benefit and risk."""
    d = decide(facts(sbp_mmhg=150.0, dbp_mmhg=85.0))
    assert d.status == NEEDS_OVERRIDE and "SPRAVATO-PI" in d.open_cautions[0].source
    assert decide(facts(sbp_mmhg=130.0, dbp_mmhg=95.0)).status == NEEDS_OVERRIDE
    assert decide(facts(sbp_mmhg=140.0, dbp_mmhg=90.0)).status == ELIGIBLE


def test_missing_blood_pressure_and_unanswered_questions_are_listed() -> None:
    d = decide(facts(sbp_mmhg=None, dbp_mmhg=None, answers={}, screened=True))
    d2 = decide(ScreeningFacts(condition_codes=("G90.512",)))
    assert d2.status == INCOMPLETE
    missing = codes(d2, "missing")
    assert {"blood_pressure", "prior_therapies", "pregnancy", "liver_risk"} <= missing
    assert "blood_pressure" in codes(d, "missing")


def test_not_first_line_needs_prior_therapies_or_an_override() -> None:
    """(design) clinic-editable default: at least 2 prior therapies; the facts give no list."""
    d = decide(facts(prior_therapies=("nsaid",)))
    assert d.status == NEEDS_OVERRIDE and d.open_cautions[0].tag == "design"
    ok = decide(facts(prior_therapies=("nsaid",), overrides={"prior_therapies": "intolerant of all others"}))
    assert ok.status == ELIGIBLE


def test_ecg_required_for_cardiovascular_risk() -> None:
    """ASRA-2018 (GC): baseline ECG if suspected or high cardiovascular risk."""
    d = decide(facts(answers={"cardiovascular_risk": "yes"}))
    assert d.status == INCOMPLETE and "ecg" in codes(d, "missing")
    assert "ASRA-2018" in next(r for r in d.missing if r.code == "ecg").source
    assert decide(facts(answers={"cardiovascular_risk": "yes"}, ecg_on_file=True)).status == ELIGIBLE


@pytest.mark.parametrize("trigger", ["liver_risk", "high_dose"])
def test_liver_tests_required_for_liver_risk_or_high_dose_high_frequency(trigger: str) -> None:
    """ASRA-2018 (GC): consider LFTs with liver risk or high doses at frequent intervals."""
    f = (
        facts(answers={"liver_risk": "yes"})
        if trigger == "liver_risk"
        else facts(high_dose_high_frequency=True)
    )
    d = decide(f)
    assert "lft" in codes(d, "missing")
    assert "lft" in codes(decide(facts(high_dose_high_frequency=True, lft_on_file=True)), "test")


@pytest.mark.parametrize(
    ("drug_class", "words"),
    [
        ("benzodiazepine", "sedation"),
        ("opioid", "sedation"),
        ("maoi", "blood pressure"),
        ("stimulant", "blood pressure"),
    ],
)
def test_interactions(drug_class: str, words: str) -> None:
    """Spravato label: monitor sedation with CNS depressants, BP with psychostimulants and MAOIs."""
    d = decide(facts(medications=(MedicationFact("X", drug_class, 1.0, "mg", 1.0),)))
    (reason,) = [r for r in d.of_kind("interaction") if r.code == f"interaction_{drug_class}"]
    assert words in reason.message and "SPRAVATO-PI" in reason.source
    assert d.status == ELIGIBLE  # a caution to monitor, not a block


def test_mme_uses_cdc_2022_factors_and_flags() -> None:
    """CDC-2022: oxycodone x1.5, fentanyl patch mcg/h x2.4; >= 50 naloxone, >= 90 review."""
    meds = (MedicationFact("Oxycodone", "opioid", 10.0, "mg", 2.0),)
    assert mme_per_day(meds).total == 30.0 and not mme_per_day(meds).unconverted
    patch = (MedicationFact("Fentanyl patch", "opioid", 25.0, "mcg/h", 1.0),)
    d = decide(facts(medications=patch))
    assert d.mme_per_day == 60.0
    assert "naloxone" in next(r for r in d.of_kind("interaction") if r.code == "mme").message
    high = decide(facts(medications=(MedicationFact("Morphine ER", "opioid", 50.0, "mg", 2.0),)))
    assert "physician review" in next(r for r in high.of_kind("interaction") if r.code == "mme").message
    unknown = mme_per_day((MedicationFact("Mystery opioid", "opioid", None, None, None),))
    assert unknown.total is None and unknown.known is None and unknown.unconverted == ["Mystery opioid"]


@given(st.dictionaries(st.sampled_from([c.key for c in contraindications()]), st.sampled_from(["yes", "no"])))
def test_any_yes_to_a_hard_stop_is_never_eligible(answers: dict[str, str]) -> None:
    d = decide(facts(answers=answers, ecg_on_file=True, lft_on_file=True))
    hard = {c.key for c in contraindications() if c.kind == "hard"}
    if any(answers.get(k) == "yes" for k in hard):
        assert d.status == NOT_ELIGIBLE
    assert d.sources  # every decision names its sources
