"""The seed claims checked: onset and duration per route, computed next to what clinics say.

The education page renders :func:`route_claims_table`. Claims, regimens and verdict
reasons come from facts section 4; the numbers are computed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ketacare.pharmacology.administration import default_route
from ketacare.pharmacology.effects import NK_WEIGHT_ONE_THIRD, Endpoint, Timing
from ketacare.pharmacology.pk_models import DEFAULT_MODEL, Patient, get_model
from ketacare.pharmacology.schedule import Dose
from ketacare.pharmacology.simulate import simulate

_END_MIN = 720.0
_STEP_MIN = 0.1
ABOUT = (0.5, 1.5)
"""(design) A claim of "about X" is read as X/2 to 1.5 X."""


@dataclass(frozen=True)
class Definition:
    label: str
    endpoint: Endpoint


@dataclass(frozen=True)
class Claim:
    route: str
    regimen: str
    dose_mg_per_kg: float | None
    dose_mg: float | None
    duration_min: float
    claim: str
    onset_range_min: tuple[float, float] | None
    duration_range_min: tuple[float, float] | None
    relative_to_iv: bool
    why: str


@dataclass(frozen=True)
class RouteClaimRow:
    """One route, regimen and effect definition, with the engine's numbers.

    Times are minutes from the dose; None means the threshold is never reached (onset)
    or not left within 12 h (offset).
    """

    route: str
    regimen: str
    clinic_claim: str
    definition: str
    onset_min: float | None
    offset_min: float | None
    duration_min: float | None
    peak_ng_per_ml: float
    verdict: str
    why: str


def definitions(model: str = DEFAULT_MODEL) -> tuple[Definition, ...]:
    fast_ke0 = get_model(model).params["ke0_opentiva_per_min"].value
    return (
        Definition("Ce >= 100 ng/mL, t1/2ke0 8.3 min (measured)", Endpoint("measured", 100.0, 8.3)),
        Definition(
            f"Ce >= 100 ng/mL, fast ke0 {fast_ke0} /min (tpeak 1 min)",
            Endpoint("fast", 100.0, math.log(2) / fast_ke0),
        ),
        Definition("Ce >= 50 ng/mL, t1/2ke0 8.3 min", Endpoint("low", 50.0, 8.3)),
        Definition(
            "plasma K + NK/3 >= 50 ng/mL (norketamine active)",
            Endpoint("nk", 50.0, 0.0, nk_weight=NK_WEIGHT_ONE_THIRD),
        ),
    )


CLAIMS = (
    Claim(
        "iv_bolus",
        "0.3 mg/kg IV over 1 min",
        0.3,
        None,
        1.0,
        "onset within 1 minute, lasts about 20 minutes",
        (0.0, 1.0),
        (20 * ABOUT[0], 20 * ABOUT[1]),
        False,
        "reproduced only with a fast effect site (tpeak 1 min); with the measured "
        "analgesic t1/2ke0 of 8.3 min (Olofsen 2022) onset is 2-3 min (KetaCare simulation)",
    ),
    Claim(
        "iv_infusion",
        "0.5 mg/kg IV over 40 min",
        0.5,
        None,
        40.0,
        "(no clinic claim; the common antidepressant/analgesic infusion)",
        None,
        None,
        False,
        "onset falls 5-15 min into the infusion; effect ends 15-35 min after it stops (KetaCare simulation)",
    ),
    Claim(
        "im",
        "0.5 mg/kg IM",
        0.5,
        None,
        0.0,
        "slower onset than IV, longer duration",
        None,
        None,
        True,
        "onset later than IV, yes; at equal dose the effect ends only minutes later than "
        "after an IV bolus (KetaCare simulation); IM F 0.93 is from memory [M], ka assumed",
    ),
    Claim(
        "intranasal",
        "50 mg intranasal",
        None,
        50.0,
        0.0,
        "onset about 15 minutes, lasts 4-6 hours",
        (15 * ABOUT[0], 15 * ABOUT[1]),
        (240.0, 360.0),
        False,
        "onset yes at 50 ng/mL; parent ketamine stays above 50 ng/mL for about 1.6 h, "
        "not 4-6 h; that needs active norketamine, a slow PD process or a clinical "
        "definition of duration (KetaCare simulation)",
    ),
    Claim(
        "oral",
        "2 mg/kg oral",
        2.0,
        None,
        0.0,
        "onset 30-45 minutes, lasts 4-6 hours, low bioavailability",
        (30.0, 45.0),
        (240.0, 360.0),
        False,
        "low F yes; parent ketamine never reaches 100 ng/mL at <= 2 mg/kg; 4-6 h only "
        "with norketamine counted at 1/3 potency, which Dahan-group PD data contest "
        "(Olofsen 2022; KetaCare simulation)",
    ),
    Claim(
        "sublingual",
        "25 mg sublingual",
        None,
        25.0,
        0.0,
        "(no clinic claim)",
        None,
        None,
        False,
        "peak under-predicted 1.5-3x by the absorption model (Rolan 2014; Grant 1981)",
    ),
    Claim(
        "rectal",
        "0.5 mg/kg rectal",
        0.5,
        None,
        0.0,
        "(no clinic claim)",
        None,
        None,
        False,
        "norketamine exceeds ketamine after rectal dosing (Malinovsky 1996)",
    ),
)


def _dose(claim: Claim, weight_kg: float) -> Dose:
    mg = claim.dose_mg if claim.dose_mg is not None else (claim.dose_mg_per_kg or 0) * weight_kg
    return Dose(claim.route, mg, 0.0, claim.duration_min)


def _within(value: float | None, bounds: tuple[float, float] | None) -> bool | None:
    if bounds is None:
        return None
    return value is not None and bounds[0] <= value <= bounds[1]


def _verdict(claim: Claim, t: Timing, iv: Timing | None) -> str:
    if iv is not None:
        if t.onset_min is None or iv.onset_min is None:
            return "not supported: threshold not reached"
        slower = t.onset_min > iv.onset_min
        later = (t.offset_min or math.inf) - (iv.offset_min or math.inf)
        onset_text = "slower onset: yes" if slower else "slower onset: no"
        return f"{onset_text}; ends {later:+.1f} min vs IV bolus of equal dose"
    onset_ok = _within(t.onset_min, claim.onset_range_min)
    duration_ok = _within(t.duration_min, claim.duration_range_min)
    if onset_ok is None and duration_ok is None:
        return "no claim"
    if onset_ok and duration_ok:
        return "supported"
    if onset_ok:
        return "onset supported, duration not"
    if duration_ok:
        return "duration supported, onset not"
    return "not supported"


def route_claims_table(
    weight_kg: float = 70.0, age_y: float = 40.0, model: str = DEFAULT_MODEL
) -> tuple[RouteClaimRow, ...]:
    """One row per (route, effect definition), plus a topical row that is not simulated."""
    patient = Patient(weight_kg, age_y)
    defs = definitions(model)
    endpoints = [d.endpoint for d in defs]
    iv_equal = simulate(
        patient,
        [Dose("iv_bolus", 0.5 * weight_kg)],
        model=model,
        endpoints=endpoints,
        end_min=_END_MIN,
        step_min=_STEP_MIN,
    )
    rows: list[RouteClaimRow] = []
    for claim in CLAIMS:
        sim = simulate(
            patient,
            [_dose(claim, weight_kg)],
            model=model,
            endpoints=endpoints,
            end_min=_END_MIN,
            step_min=_STEP_MIN,
        )
        for d in defs:
            t = sim.timings[d.endpoint.name]
            iv = iv_equal.timings[d.endpoint.name] if claim.relative_to_iv else None
            rows.append(
                RouteClaimRow(
                    route=claim.route,
                    regimen=claim.regimen,
                    clinic_claim=claim.claim,
                    definition=d.label,
                    onset_min=t.onset_min,
                    offset_min=t.offset_min,
                    duration_min=t.duration_min,
                    peak_ng_per_ml=t.peak_ng_per_ml,
                    verdict=_verdict(claim, t, iv),
                    why=claim.why,
                )
            )
    topical = default_route("topical")
    rows.append(
        RouteClaimRow(
            route="topical",
            regimen="gel, cream or patch",
            clinic_claim="(local effect)",
            definition="-",
            onset_min=None,
            offset_min=None,
            duration_min=None,
            peak_ng_per_ml=math.nan,
            verdict="not simulated",
            why=topical.reason,
        )
    )
    return tuple(rows)
