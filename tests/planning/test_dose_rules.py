"""Dose calculation and every dose limit, each test naming its source (pure rules)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from ketacare.knowledge.protocols import builtin_protocols
from ketacare.planning.dosing import BLOCK, OVERRIDE, WARNING, DoseRequest, calculate, round_to, titration

TODAY = dt.date(2026, 3, 2)
LIB = {p.key: p for p in builtin_protocols()}


def req(key: str = "outpatient_series", **changes: object) -> DoseRequest:
    p = LIB[key]
    base: dict[str, object] = {
        "protocol": p,
        "dose": p.dose_default,
        "dose_unit": p.dose_unit,
        "sessions": p.sessions_min,
        "duration_min": p.duration_min,
        "concentration_mg_per_ml": 10.0,
        "weight_kg": 80.0,
        "weight_measured_on": TODAY,
        "today": TODAY,
    }
    base.update(changes)
    return DoseRequest(**base)  # type: ignore[arg-type]


def codes(calc, severity: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.code for f in calc.findings if f.severity == severity}


def test_crps_series_mg_per_session_and_series_with_titration() -> None:
    """ASRA-2018 CRPS 0.35 mg/kg/h over 4 h; Schwartzman 2009. 80 kg: 0.2 -> 0.35 mg/kg/h."""
    calc = calculate(req(titration_start=0.2))
    assert [s.dose for s in calc.sessions] == [0.2, 0.35, 0.35, 0.35, 0.35]
    assert calc.sessions[0].dose_mg == 64.0 and calc.sessions[1].dose_mg == 112.0
    assert calc.series_mg == 64.0 + 4 * 112.0
    assert calc.sessions[1].rate_mg_per_h == 28.0 and calc.sessions[1].pump_ml_per_h == 2.8
    assert calc.allowed


def test_stepped_titration_0_2_0_4_0_6() -> None:
    """Rema 2012: 0.2 -> 0.4 -> 0.6 mg/kg/h, stepped daily."""
    p = LIB["stepped_titration"]
    assert titration(0.6, p.titration_start, p.titration_step, 3) == [0.2, 0.4, 0.6]


def test_infusion_above_2_mg_per_kg_h_is_refused_even_with_a_reason() -> None:
    """ASRA/AAPM/ASA 2018: infusion 0.5-2 mg/kg/h outside ICU; hard block above it."""
    calc = calculate(req("single_day_4h", dose=2.5))
    assert "infusion_max" in codes(calc, BLOCK) and not calc.allowed
    f = next(f for f in calc.findings if f.code == "infusion_max")
    assert "ASRA/AAPM/ASA consensus guideline 2018" in f.source
    assert not calculate(
        req("single_day_4h", dose=2.5, override_reason="refractory, discussed with team")
    ).allowed


def test_icu_limit_is_7_mg_per_kg_h() -> None:
    """ASRA-2018 (GC): up to 7 mg/kg/h used for refractory cases in ICU."""
    icu = dataclasses.replace(LIB["single_day_4h"], setting="icu", dose_max=10.0)
    assert "infusion_max" not in codes(calculate(req(protocol=icu, dose=5.0)), BLOCK)
    assert "infusion_max_icu" in codes(calculate(req(protocol=icu, dose=7.5)), BLOCK)


def test_infusion_below_0_5_is_a_warning_only() -> None:
    """ASRA-2018 range 0.5-2 mg/kg/h; CRPS trials used 0.35, so below is shown, not blocked."""
    calc = calculate(req())
    assert "infusion_min" in codes(calc, WARNING) and calc.allowed


def test_bolus_above_0_35_mg_per_kg_is_refused() -> None:
    """ASRA/AAPM/ASA 2018: bolus up to 0.35 mg/kg (applied to IM by analogy, design)."""
    calc = calculate(req("im_injection", dose=0.5))
    assert "bolus_max" in codes(calc, BLOCK) and "protocol_max" in codes(calc, OVERRIDE)
    assert "ASRA/AAPM/ASA" in next(f for f in calc.findings if f.code == "bolus_max").source
    assert calculate(req("im_injection", dose=0.35)).allowed


def test_session_floor_80_mg_over_2_h_is_flagged() -> None:
    """ASRA-2018 (GC): at least 80 mg infused over more than 2 h per session."""
    short = calculate(req("cleveland_5day"))  # 0.5 mg/kg over 40 min = 40 mg
    assert "session_floor" in codes(short, WARNING)
    light = calculate(req(weight_kg=50.0, titration_start=0.2))  # 40 mg at 0.2 for 50 kg
    assert "session_floor" in codes(light, WARNING)
    assert "session_floor" not in codes(calculate(req("single_day_4h", dose=0.35)), WARNING)


def test_above_the_protocols_own_limit_needs_an_override() -> None:
    """Protocol library limit (Schwartzman 2009 0.175-0.35 mg/kg/h)."""
    calc = calculate(req(dose=0.4))
    assert "protocol_max" in codes(calc, OVERRIDE) and not calc.allowed
    assert calculate(req(dose=0.4, override_reason="short")).allowed is False  # reason too short


def test_stale_or_missing_weight_blocks() -> None:
    """Section 9 rule 3: mg/kg from a measured weight; 30 days is a clinic default (design)."""
    stale = calculate(req(weight_measured_on=TODAY - dt.timedelta(days=31)))
    assert "weight_stale" in codes(stale, BLOCK) and not stale.allowed
    assert calculate(req(weight_measured_on=TODAY - dt.timedelta(days=30))).allowed
    missing = calculate(req(weight_kg=None, weight_measured_on=None))
    assert "weight_missing" in codes(missing, BLOCK) and missing.sessions == ()


def test_dose_in_the_wrong_unit_blocks() -> None:
    calc = calculate(req(dose_unit="mg/kg"))
    assert "wrong_unit" in codes(calc, BLOCK) and calc.sessions == ()


def test_protocol_without_a_source_blocks() -> None:
    nameless = dataclasses.replace(LIB["single_day_4h"], source="")
    assert "protocol_invalid" in codes(calculate(req(protocol=nameless)), BLOCK)


def test_product_concentrations_and_dilution() -> None:
    """openFDA: 10, 50, 100 mg/mL; 100 mg/mL diluted before IV (V*)."""
    assert "concentration" in codes(calculate(req(concentration_mg_per_ml=20.0)), BLOCK)
    assert "dilute" in codes(calculate(req(concentration_mg_per_ml=100.0)), WARNING)


def test_esketamine_doses_in_28_mg_devices() -> None:
    """SPRAVATO-PI: 28 mg devices, 56 or 84 mg."""
    assert "dose_step" in codes(calculate(req("esketamine_rems", dose=60.0)), BLOCK)
    assert calculate(req("esketamine_rems", dose=84.0)).sessions[0].dose_mg == 84.0


def test_sessions_outside_protocol_need_an_override() -> None:
    assert "sessions_range" in codes(calculate(req(sessions=12)), OVERRIDE)


@given(st.floats(min_value=0, max_value=1000, allow_nan=False), st.sampled_from([0.1, 0.5, 1.0]))
def test_rounding_is_to_a_deliverable_increment(value: float, increment: float) -> None:
    rounded = round_to(value, increment)
    assert abs(rounded - value) <= increment / 2 + 1e-6
    assert abs(rounded / increment - round(rounded / increment)) < 1e-6
