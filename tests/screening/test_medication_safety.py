"""Issue 14 items 3, 4 and 5 as pure rules, each row naming its source.

MME that never lies (CDC 2022 factors; CDC 2017 conversion file for dihydrocodeine and the
factorless buprenorphine; clinical-facts 5.1-5.3); screening blood pressure on both numbers and
both directions with the session pre-check's one rule (ED protocol SBP < 90 or > 180 [V]; design
pause DBP >= 110; Spravato label 140/90 decision [V]); allergies matched on the coded ingredient
(Spravato label: hypersensitivity to esketamine or ketamine)."""

from __future__ import annotations

import pytest

from ketacare.knowledge.allergens import allergen_for, allergens, ingredient_of
from ketacare.knowledge.contraindications import blood_pressure_findings, mme_rule, opioid_for
from ketacare.knowledge.sessions import session_rules
from ketacare.screening.eligibility import (
    ELIGIBLE,
    NEEDS_OVERRIDE,
    NOT_ELIGIBLE,
    MedicationFact,
    decide,
    mme_per_day,
)
from ketacare.sessions import rules as session_rules_module
from tests.screening.test_eligibility_rules import codes, facts


def opioid(
    name: str, amount: float | None, unit: str | None = "mg", per_day: float | None = 1.0
) -> MedicationFact:
    return MedicationFact(name, "opioid", amount, unit, per_day)


# --- MME -------------------------------------------------------------------------------------

# (name as written, factor or None, source words): matched whole, never by a fragment.
NAMES = [
    ("Codeine", 0.15, "CDC-2022"),
    ("Dihydrocodeine", 0.25, "CDC 2017"),  # contains "codeine": never codeine's 0.15
    ("dihydrocodeine bitartrate", 0.25, "CDC 2017"),
    ("Oxycodone HCl ER", 1.5, "CDC-2022"),
    ("Hydromorphone", 5.0, "CDC-2022"),
    ("Oxymorphone", 3.0, "CDC-2022"),  # contains "morphone", never morphine
    ("Morphine sulfate", 1.0, "CDC-2022"),
    ("Tramadol", 0.2, "CDC-2022"),
    ("Tapentadol", 0.4, "CDC-2022"),
    ("Methadone", 4.7, "CDC-2022"),
    ("Levorphanol", 11.0, "CDC 2017"),
    ("Pethidine", 0.1, "CDC 2017"),
    ("Pentazocine", 0.37, "CDC 2017"),
    ("Buprenorphine", None, "no MME factor"),
    ("Buprenorphine patch", None, "no MME factor"),
    ("Buprenorphine/naloxone", None, "no MME factor"),
]


@pytest.mark.parametrize(("name", "factor", "source"), NAMES)
def test_opioids_are_matched_by_exact_name(name: str, factor: float | None, source: str) -> None:
    found = opioid_for(name)
    assert found is not None and found.factor == factor and source in found.sourced.source


@pytest.mark.parametrize(
    "name", ["Codeine-like syrup", "Hydrocodone/acetaminophen", "morphine-ish", "codeine x"]
)
def test_a_name_that_only_contains_an_opioid_is_not_matched(name: str) -> None:
    assert opioid_for(name) is None


def test_dihydrocodeine_is_025_not_codeines_015() -> None:
    """CDC 2017 conversion file: dihydrocodeine 0.25 (clinical-facts 5.2)."""
    result = mme_per_day((opioid("Dihydrocodeine", 30.0, "mg", 4.0),))
    assert result.total == 30.0  # 120 mg/day x 0.25, not x 0.15 (18)


def test_a_buprenorphine_only_regimen_shows_no_total_never_zero() -> None:
    """CDC gives buprenorphine no MME factor (clinical-facts 5.2): no number at all."""
    result = mme_per_day((opioid("Buprenorphine", 8.0, "mg", 2.0), opioid("Butrans patch", 10.0, "mcg/h")))
    assert result.total is None and result.known is None and result.level() == ""
    assert "0 MME" not in result.summary() and "not computed" in result.summary()
    d = decide(facts(medications=(opioid("Buprenorphine", 8.0, "mg", 2.0),)))
    assert d.mme_per_day is None
    (reason,) = [r for r in d.of_kind("interaction") if r.code == "mme"]
    assert "MME/day" not in reason.message and "no CDC conversion factor" in reason.message


def test_a_factorless_opioid_beside_others_makes_the_total_not_computed() -> None:
    result = mme_per_day((opioid("Morphine", 30.0, "mg", 2.0), opioid("Buprenorphine", 8.0, "mg", 1.0)))
    assert result.total is None and result.known == 60.0 and result.no_factor == ("Buprenorphine",)
    assert "Total MME not computed" in result.summary() and "60 MME/day" in result.summary()
    assert result.level() == "flag"  # the known part alone reaches 50: the advice still shows


@pytest.mark.parametrize(
    ("mg_per_day", "level", "advices"),
    [(40.0, "", 0), (50.0, "flag", 1), (89.0, "flag", 1), (90.0, "review", 2), (120.0, "review", 2)],
)
def test_at_90_the_advice_includes_the_50_advice(mg_per_day: float, level: str, advices: int) -> None:
    """CDC 2016 Rec 5 and 2022 Rec 8 CDS: >= 50 naloxone and sedation monitoring, >= 90 review too."""
    result = mme_per_day((opioid("Morphine", mg_per_day),))
    rule = mme_rule()
    assert result.level() == level and len(result.advice()) == advices
    if level == "review":
        assert rule.review_message in result.advice() and rule.flag_message in result.advice()
        d = decide(facts(medications=(opioid("Morphine", mg_per_day),)))
        (reason,) = [r for r in d.of_kind("interaction") if r.code == "mme"]
        assert "naloxone" in reason.message and "physician review" in reason.message


def test_fentanyl_patch_multiplies_mcg_per_hour() -> None:
    """CDC-2022: fentanyl transdermal 2.4 x mcg/h; a dose in mg is not converted (not counted as 0)."""
    assert mme_per_day((opioid("Fentanyl patch", 25.0, "mcg/h"),)).total == 60.0
    wrong = mme_per_day((opioid("Fentanyl patch", 25.0, "mg"),))
    assert wrong.total is None and wrong.incomplete == ("Fentanyl patch",)


# --- blood pressure --------------------------------------------------------------------------

# (sbp, dbp, screening status, finding codes, source words)
BP = [
    (82, 50, NOT_ELIGIBLE, {"sbp_low"}, "SBP < 90"),
    (89, 60, NOT_ELIGIBLE, {"sbp_low"}, "SBP < 90"),
    (90, 60, ELIGIBLE, set(), ""),
    (170, 125, NOT_ELIGIBLE, {"dbp_high"}, "DBP >= 110"),
    (130, 110, NOT_ELIGIBLE, {"dbp_high"}, "DBP >= 110"),
    (185, 95, NOT_ELIGIBLE, {"sbp_high"}, "SBP > 180"),
    (190, 115, NOT_ELIGIBLE, {"sbp_high", "dbp_high"}, "SBP > 180"),
    (180, 100, NEEDS_OVERRIDE, {"above_caution"}, "140/90"),
    (150, 85, NEEDS_OVERRIDE, {"above_caution"}, "140/90"),
    (130, 95, NEEDS_OVERRIDE, {"above_caution"}, "140/90"),
    (140, 90, ELIGIBLE, set(), ""),
]


@pytest.mark.parametrize(("sbp", "dbp", "status", "found", "source"), BP)
def test_screening_blood_pressure_both_numbers_both_directions(
    sbp: float, dbp: float, status: str, found: set[str], source: str
) -> None:
    findings = blood_pressure_findings(sbp, dbp)
    assert {f.code for f in findings} == found
    assert not source or any(source in f.sourced.source for f in findings)
    d = decide(facts(sbp_mmhg=float(sbp), dbp_mmhg=float(dbp)))
    assert d.status == status
    if status == NOT_ELIGIBLE:
        stops = d.hard_stops
        assert stops and all("mmHg" in r.message for r in stops)
        assert any(source in r.source for r in stops)  # the source is shown with the reason


def test_the_session_pre_check_uses_the_same_rule() -> None:
    """One function: what screening holds, the pre-check refuses whatever decision was documented."""
    rules = session_rules()
    ctx = session_rules_module.PrecheckContext(False, False, False, True, frozenset({7}), rules.plausible)
    for sbp, dbp, _status, found, _ in BP:
        data = session_rules_module.PrecheckInput(
            80, sbp, dbp, 70, 98, 14, True, False, False, "not_applicable", "Escort", "555", True, True, 7
        )
        problems = session_rules_module.precheck_problems(data, ctx, rules)
        holds = found - {"above_caution"}
        assert bool(holds) == bool({"sbp", "dbp"} & set(problems)), (sbp, dbp, problems)
        assert session_rules_module.predose_bp_high(sbp, dbp, rules) == bool(found)


# --- allergies -------------------------------------------------------------------------------

# (as written, ingredient or None)
ALLERGIES = [
    ("Ketalar", "ketamine"),
    ("KETALAR®", "ketamine"),
    ("ketamine hydrochloride", "ketamine"),
    ("Spravato", "esketamine"),
    ("Esketamine", "esketamine"),
    ("Ketamax", "ketamine"),
    ("Ketamine-free lotion", None),  # never a fragment
    ("Penicillin", None),
]


@pytest.mark.parametrize(("text", "ingredient"), ALLERGIES)
def test_allergies_match_on_the_ingredient_by_exact_name(text: str, ingredient: str | None) -> None:
    assert ingredient_of(None, text) == ingredient
    found = allergen_for(text)
    assert (found.ingredient if found else None) == ingredient


@pytest.mark.parametrize("code", ["ketalar", "spravato", "ketamine", "esketamine", "ketamax"])
def test_a_coded_ketamine_or_esketamine_allergy_is_a_hard_stop_whatever_the_answer(code: str) -> None:
    """Spravato label: hypersensitivity to esketamine, ketamine or excipients (SPRAVATO-PI)."""
    assert allergens()[code].sourced.source
    d = decide(facts(allergy_codes=(code,), answers={"hypersensitivity": "no"}))
    assert d.status == NOT_ELIGIBLE and "hypersensitivity" in codes(d, "hard_stop")
    (reason,) = [r for r in d.hard_stops if r.code == "hypersensitivity"]
    assert "SPRAVATO-PI" in reason.source


@pytest.mark.parametrize("text", ["Ketalar", "Spravato"])
def test_a_free_text_brand_allergy_is_a_hard_stop(text: str) -> None:
    d = decide(facts(allergy_substances=(text,)))
    assert d.status == NOT_ELIGIBLE and "hypersensitivity" in codes(d, "hard_stop")


def test_a_name_containing_ketamine_is_not_an_allergy_to_it() -> None:
    assert decide(facts(allergy_substances=("Ketamine-free lotion",))).status == ELIGIBLE
