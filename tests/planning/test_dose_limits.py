"""Hard dose limits, absolute ceilings, the adult programme and protocol self-consistency: one
table per rule, each row naming its source (pure rules, issue 14 items 1, 9 and 10)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from pathlib import Path

import pytest

from ketacare.knowledge.dose_limits import ceiling_for, dose_limits
from ketacare.knowledge.protocols import SETTINGS, builtin_protocols
from ketacare.planning.clinical_defaults import SPEC_BY_KEY, resolve
from ketacare.planning.dosing import BLOCK, OVERRIDE, WARNING, DoseRequest, calculate

TODAY = dt.date(2026, 3, 2)
LIB = {p.key: p for p in builtin_protocols()}
DATA = Path(__file__).parents[2] / "src" / "ketacare" / "knowledge" / "data"


def req(key: str, **changes: object) -> DoseRequest:
    p = LIB[key]
    base: dict[str, object] = {
        "protocol": p,
        "dose": p.dose_default,
        "dose_unit": p.dose_unit,
        "sessions": p.sessions_min,
        "duration_min": p.duration_min,
        "concentration_mg_per_ml": 10.0,
        "weight_kg": 70.0,
        "weight_measured_on": TODAY,
        "today": TODAY,
        "age_years": 45,
    }
    base.update(changes)
    return DoseRequest(**base)  # type: ignore[arg-type]


def by_code(calc, code: str):  # type: ignore[no-untyped-def]
    return next(f for f in calc.findings if f.code == code)


# (protocol, changes, finding code, source words) -- every row is refused, whatever the reason says.
HARD = [
    # The issue's case: an outpatient 4-hour infusion at 10 mg/kg/h (2,800 mg at 70 kg).
    ("single_day_4h", {"dose": 10.0}, "infusion_max", "ASRA/AAPM/ASA consensus guideline 2018"),
    ("single_day_4h", {"dose": 10.0}, "ceiling", "Design default"),
    ("outpatient_series", {"dose": 2.1}, "infusion_max", "ASRA/AAPM/ASA consensus guideline 2018"),
    ("inpatient_continuous", {"dose": 50.0, "weight_kg": 20.0, "age_years": 45}, "infusion_max", "ASRA"),
    ("im_injection", {"dose": 0.5}, "bolus_max", "ASRA/AAPM/ASA consensus guideline 2018"),
    ("esketamine_rems", {"dose": 112.0}, "esketamine_session_max", "SPRAVATO prescribing information"),
    ("intranasal_breakthrough", {"dose": 200.0}, "ceiling", "Design default"),
    ("oral_maintenance", {"dose": 9.0}, "ceiling", "Design default"),
    ("outpatient_series", {"age_years": 17}, "not_adult", "adult programme"),
    ("outpatient_series", {"weight_kg": 30.0}, "weight_out_of_bounds", "Design default"),
    ("outpatient_series", {"weight_kg": 260.0}, "weight_out_of_bounds", "Design default"),
]


@pytest.mark.parametrize(("key", "changes", "code", "source"), HARD)
def test_hard_limits_refuse_with_or_without_an_override_reason(
    key: str, changes: dict[str, object], code: str, source: str
) -> None:
    calc = calculate(req(key, override_reason="refractory pain, discussed with the team", **changes))
    finding = by_code(calc, code)
    assert finding.severity == BLOCK and not calc.allowed
    assert source in finding.source


def test_the_issue_case_names_the_numbers() -> None:
    """10 mg/kg/h for 4 h at 70 kg = 2,800 mg: refused, the message says how much and the limit."""
    calc = calculate(req("single_day_4h", dose=10.0, override_reason="a few words of reason"))
    assert "10 mg/kg/h" in by_code(calc, "infusion_max").message
    assert "outpatient setting, not an ICU" in by_code(calc, "infusion_max").message
    ceiling = by_code(calc, "ceiling").message
    assert "2800 mg" in ceiling and "800 mg" in ceiling and "40 mg/kg" in ceiling


def test_icu_setting_allows_up_to_7_and_refuses_above() -> None:
    """ASRA/AAPM/ASA 2018: up to 7 mg/kg/h used for refractory cases in ICU settings ([V])."""
    icu = dataclasses.replace(LIB["single_day_4h"], setting="icu", dose_max=7.0, duration_min=240)
    assert "infusion_max" not in {
        f.code for f in calculate(req("single_day_4h", protocol=icu, dose=5.0)).blocks
    }
    assert (
        by_code(calculate(req("single_day_4h", protocol=icu, dose=7.5)), "infusion_max_icu").severity == BLOCK
    )


# Judgement calls: above the protocol's own range (within every hard limit) needs a written reason.
JUDGEMENT = [
    ("outpatient_series", {"dose": 0.5}, "protocol_max"),  # Schwartzman 2009 0.175-0.35; ASRA allows 2
    ("outpatient_series", {"sessions": 12}, "sessions_range"),
    ("oral_maintenance", {"dose": 2.0}, "protocol_max"),  # UIC 2022: 0.5-1.5 mg/kg/day
]


@pytest.mark.parametrize(("key", "changes", "code"), JUDGEMENT)
def test_judgement_calls_need_a_prescribers_reason(key: str, changes: dict[str, object], code: str) -> None:
    calc = calculate(req(key, **changes))
    assert by_code(calc, code).severity == OVERRIDE and not calc.allowed and not calc.blocks
    assert calculate(req(key, override_reason="documented refractory case", **changes)).allowed


def test_clinic_lowered_ceiling_is_applied_and_named() -> None:
    """Design ceilings are clinic-editable downwards only (outer bound 800 mg, 8 mg/kg)."""
    clinic = resolve({"session_max_mg": 100.0})
    calc = calculate(req("outpatient_series", clinic=clinic, weight_kg=80.0))  # 112 mg per session
    assert "100 mg" in by_code(calc, "ceiling").message and "clinic's own" in by_code(calc, "ceiling").message
    assert SPEC_BY_KEY["session_max_mg"].maximum == ceiling_for("outpatient").session_max_mg
    assert SPEC_BY_KEY["day_max_mg_per_kg"].maximum == ceiling_for("home").day_max_mg_per_kg


# Inpatient and ICU per-day ceilings (design): clinic-editable downwards only, like the day visit's.
# (setting, clinic key, knowledge column)
LOWERABLE = [
    ("inpatient", "inpatient_day_max_mg", "day_max_mg"),
    ("inpatient", "inpatient_day_max_mg_per_kg", "day_max_mg_per_kg"),
    ("icu", "icu_day_max_mg_per_kg", "day_max_mg_per_kg"),
]


@pytest.mark.parametrize(("setting", "key", "column"), LOWERABLE)
def test_inpatient_and_icu_ceilings_are_editable_downwards_only(setting: str, key: str, column: str) -> None:
    from pydantic import ValidationError

    from ketacare.planning.schemas import ClinicalDefaultsIn

    spec = SPEC_BY_KEY[key]
    assert spec.maximum == getattr(ceiling_for(setting), column) == spec.knowledge_value
    assert "Design default" in spec.source() and "only lower it" in spec.source() and spec.tag() == "design"
    ClinicalDefaultsIn(**{key: spec.maximum - 1})
    with pytest.raises(ValidationError, match="outer bound"):
        ClinicalDefaultsIn(**{key: spec.maximum + 1})


def test_clinic_lowered_inpatient_ceiling_refuses_the_plan() -> None:
    """Correll 2004's 50 mg/h for ~5 days: 1,200 mg a day, within the knowledge ceiling; a clinic
    that lowers its inpatient day ceiling to 1,000 mg has the plan refused, named as its own."""
    assert "ceiling" not in {f.code for f in calculate(req("inpatient_continuous", dose=50.0)).blocks}
    clinic = resolve({"inpatient_day_max_mg": 1000.0})
    calc = calculate(req("inpatient_continuous", dose=50.0, clinic=clinic, override_reason="refractory CRPS"))
    ceiling = by_code(calc, "ceiling")
    assert ceiling.severity == BLOCK and "1000 mg" in ceiling.message and "clinic's own" in ceiling.message
    assert not calculate(req("inpatient_continuous", dose=40.0, clinic=clinic)).blocks


def test_clinic_lowered_icu_ceiling_refuses_the_plan() -> None:
    icu = dataclasses.replace(LIB["single_day_4h"], setting="icu", dose_max=7.0, duration_min=240)
    assert "ceiling" not in {f.code for f in calculate(req("single_day_4h", protocol=icu, dose=5.0)).blocks}
    clinic = resolve({"icu_day_max_mg_per_kg": 10.0})  # 5 mg/kg/h for 4 h = 20 mg/kg
    calc = calculate(req("single_day_4h", protocol=icu, dose=5.0, clinic=clinic))
    assert by_code(calc, "ceiling").severity == BLOCK and "clinic's own" in by_code(calc, "ceiling").message


def test_every_setting_has_a_ceiling_row_tagged_design() -> None:
    for setting in SETTINGS:
        row = ceiling_for(setting)
        assert row.sourced.tag == "design" and "Design default" in row.sourced.source


@pytest.mark.parametrize("protocol", builtin_protocols(), ids=lambda p: p.key)
def test_no_protocol_contradicts_itself(protocol) -> None:  # type: ignore[no-untyped-def]
    """Every protocol's own defaults pass every limit, or the warning carries the protocol's
    sourced exception and names both sources (issue 14 item 10)."""
    for weight in (40.0, 70.0, 200.0):  # the adult bounds and the PK reference adult
        calc = calculate(req(protocol.key, weight_kg=weight, titration_start=protocol.titration_start))
        assert calc.blocks == [] and calc.needs_override == [], (protocol.key, weight, calc.findings)
        for f in calc.warnings:
            if f.code in ("dilute",):
                continue
            assert f.code in protocol.exceptions, (protocol.key, weight, f)
            assert protocol.source in f.source and "ASRA/AAPM/ASA" in f.source
            assert "This protocol's rate is sourced" in f.message


def test_crps_default_names_schwartzman_and_asra() -> None:
    """The grade-B CRPS series at 0.35 mg/kg/h: below ASRA 0.5-2 mg/kg/h, sourced by Schwartzman 2009."""
    low = by_code(calculate(req("outpatient_series")), "infusion_min")
    assert low.severity == WARNING and "Schwartzman 2009" in low.message and "ASRA/AAPM/ASA" in low.source


def test_shown_sources_cite_public_sources_not_our_files() -> None:
    """What staff see cites the guideline, trial or label, never 'clinical-facts section 9'."""
    for name in ("dose_limits.toml", "protocols.toml"):
        data = tomllib.loads((DATA / name).read_text())
        for table in data.values():
            rows = table if isinstance(table, list) else [table]
            for row in rows:
                for key, value in row.items():
                    if key.endswith("source") or key == "exceptions":
                        assert "clinical-facts" not in str(value), (name, key)
    for limit in dose_limits().values():
        assert "clinical-facts" not in limit.sourced.source
    dose_specs = ("weight_max_age_days", "high_frequency_sessions", "session_max_mg", "adult_weight_min_kg")
    for key in dose_specs:
        assert "clinical-facts" not in SPEC_BY_KEY[key].source()
    calc = calculate(req("outpatient_series", weight_kg=None, weight_measured_on=None))
    assert all("clinical-facts" not in f.source for f in calc.findings)
