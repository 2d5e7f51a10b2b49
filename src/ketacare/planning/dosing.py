"""Dose calculation and limits: pure functions, each finding with its source.

Severity: ``block`` stops the plan outright (stale weight, wrong unit, protocol without a
source); ``override`` stops it unless a prescriber writes a reason (above a protocol's or the
guideline's limit); ``warning`` is shown beside the plan (below the guideline range, under
the ASRA session floor).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from ketacare.knowledge.dose_limits import dose_limits, planning_defaults
from ketacare.knowledge.protocols import Protocol, validate_protocol
from ketacare.planning.clinical_defaults import ClinicalDefaults, knowledge_defaults

BLOCK, OVERRIDE, WARNING = "block", "override", "warning"
MIN_PER_H = 60.0
WEIGHT_BASED = ("mg/kg/h", "mg/kg", "mg/kg/day")
MIN_OVERRIDE_REASON_CHARS = 10  # (design) a written reason, not a tick box


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    source: str
    tag: str
    field: str = "dose"


@dataclass(frozen=True)
class DoseRequest:
    protocol: Protocol
    dose: float
    dose_unit: str
    sessions: int
    duration_min: int
    concentration_mg_per_ml: float
    weight_kg: float | None
    weight_measured_on: dt.date | None
    today: dt.date
    titration_start: float | None = None
    override_reason: str | None = None
    weight_max_age_days: int | None = None  # wins over ``clinic`` (kept for callers that set it)
    # The clinic's values in force for the clinic-editable defaults (weight age, increments);
    # None = the knowledge defaults.
    clinic: ClinicalDefaults | None = None

    @property
    def in_force(self) -> ClinicalDefaults:
        return self.clinic if self.clinic is not None else knowledge_defaults()


@dataclass(frozen=True)
class SessionDose:
    number: int
    dose: float  # in the protocol's unit
    dose_mg: float | None
    rate_mg_per_kg_h: float | None
    rate_mg_per_h: float | None
    pump_ml_per_h: float | None
    volume_ml: float | None


@dataclass(frozen=True)
class DoseCalculation:
    sessions: tuple[SessionDose, ...]
    findings: tuple[Finding, ...]
    overridden: bool

    @property
    def blocks(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == BLOCK]

    @property
    def needs_override(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == OVERRIDE]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def allowed(self) -> bool:
        return not self.blocks and (not self.needs_override or self.overridden)

    @property
    def max_session_mg(self) -> float | None:
        values = [s.dose_mg for s in self.sessions if s.dose_mg is not None]
        return max(values) if values else None

    @property
    def series_mg(self) -> float | None:
        values = [s.dose_mg for s in self.sessions if s.dose_mg is not None]
        return round(sum(values), 1) if len(values) == len(self.sessions) and values else None


def round_to(value: float, increment: float) -> float:
    """Round to what a pump or syringe can deliver (half up), without float noise."""
    steps = math.floor(value / increment + 0.5 + 1e-9)
    return round(steps * increment, 6)


def titration(target: float, start: float | None, step: float | None, sessions: int) -> list[float]:
    """Per-session doses: from ``start`` up by ``step`` each session, capped at ``target``."""
    if start is None:
        return [target] * sessions
    increment = step if step and step > 0 else target - start
    doses = []
    for i in range(sessions):
        doses.append(round(min(start + i * increment, target), 6) if increment > 0 else target)
    return doses


def _session(req: DoseRequest, number: int, dose: float) -> SessionDose:
    p, w = req.protocol, req.weight_kg or 0.0
    defaults = req.in_force
    hours = req.duration_min / MIN_PER_H
    mg: float | None
    rate_kg_h = rate_h = None
    if p.dose_unit == "mg/kg/h":
        rate_kg_h, rate_h = dose, dose * w
        mg = rate_h * hours
    elif p.dose_unit == "mg/kg":
        mg = dose * w
        if p.route == "iv_infusion" and hours > 0:
            rate_kg_h, rate_h = dose / hours, mg / hours
    elif p.dose_unit == "mg/h":
        rate_h = dose
        rate_kg_h = dose / w if w else None
        mg = dose * hours
    elif p.dose_unit == "mg/kg/day":
        mg = dose * w  # one day of maintenance, given in divided doses
    elif p.dose_unit == "mg":
        mg = dose
    else:
        mg = None  # topical strength in percent: no systemic dose
    conc = req.concentration_mg_per_ml
    pump = round_to(rate_h / conc, defaults.pump_increment_ml_per_h) if rate_h is not None else None
    volume = round_to(mg / conc, defaults.syringe_increment_ml) if mg is not None and p.is_iv else None
    return SessionDose(
        number=number,
        dose=dose,
        dose_mg=round(mg, 1) if mg is not None else None,
        rate_mg_per_kg_h=round(rate_kg_h, 4) if rate_kg_h is not None else None,
        rate_mg_per_h=round(rate_h, 2) if rate_h is not None else None,
        pump_ml_per_h=pump,
        volume_ml=volume,
    )


def _structural(req: DoseRequest) -> list[Finding]:
    p, defaults, clinic = req.protocol, planning_defaults(), req.in_force
    out: list[Finding] = []
    problems = validate_protocol({**p.__dict__, "premedication": list(p.premedication)})
    if problems:
        out.append(
            Finding(
                "protocol_invalid",
                BLOCK,
                "The protocol breaks a rule: " + "; ".join(problems.values()),
                "KetaCare protocol rules (every protocol names its source)",
                "design",
                "protocol_key",
            )
        )
    if req.dose_unit != p.dose_unit:
        out.append(
            Finding(
                "wrong_unit",
                BLOCK,
                f"Dose given in {req.dose_unit}, but {p.name} doses in {p.dose_unit}.",
                p.source,
                p.tag,
                "dose_unit",
            )
        )
    if not req.dose > 0:
        out.append(Finding("dose_not_positive", BLOCK, "The dose must be above 0.", p.source, p.tag))
    max_age = req.weight_max_age_days or clinic.weight_max_age_days
    age_note = "set for this check" if req.weight_max_age_days else clinic.note("weight_max_age_days")
    needs_weight = p.dose_unit in WEIGHT_BASED or p.route != "topical"
    if needs_weight and (req.weight_kg is None or req.weight_measured_on is None):
        out.append(
            Finding(
                "weight_missing",
                BLOCK,
                "No weight on the record: record today's weight before dosing.",
                "clinical-facts section 9 rule 3 (mg/kg from a measured weight)",
                "V",
                "weight",
            )
        )
    elif needs_weight and req.weight_measured_on is not None:
        age_days = (req.today - req.weight_measured_on).days
        if age_days > max_age:
            out.append(
                Finding(
                    "weight_stale",
                    BLOCK,
                    f"The weight was measured {age_days} days ago; plans need one from the last "
                    f"{max_age} days ({age_note}).",
                    "clinical-facts section 9 rule 3; the number of days is a clinic default",
                    defaults.weight_max_age_days_tag,
                    "weight",
                )
            )
    if req.concentration_mg_per_ml not in defaults.product_concentrations_mg_per_ml:
        strengths = ", ".join(f"{c:g}" for c in defaults.product_concentrations_mg_per_ml)
        out.append(
            Finding(
                "concentration",
                BLOCK,
                f"Ketamine comes as {strengths} mg/mL.",
                defaults.product_concentrations.source,
                defaults.product_concentrations.tag,
                "concentration_mg_per_ml",
            )
        )
    elif p.is_iv and req.concentration_mg_per_ml >= defaults.iv_needs_dilution_mg_per_ml:
        out.append(
            Finding(
                "dilute",
                WARNING,
                f"{req.concentration_mg_per_ml:g} mg/mL must be diluted before IV use.",
                defaults.product_concentrations.source,
                "V*",
                "concentration_mg_per_ml",
            )
        )
    if not p.sessions_min <= req.sessions <= p.sessions_max:
        out.append(
            Finding(
                "sessions_range",
                OVERRIDE,
                f"{req.sessions} sessions is outside the protocol's {p.sessions_min}-{p.sessions_max}.",
                p.source,
                p.tag,
                "sessions",
            )
        )
    if req.titration_start is not None:
        if p.dose_unit != "mg/kg/h":
            out.append(
                Finding(
                    "titration_unit",
                    BLOCK,
                    "Titration is for mg/kg/h infusions.",
                    p.source,
                    p.tag,
                    "titration_start",
                )
            )
        elif not 0 < req.titration_start <= req.dose:
            out.append(
                Finding(
                    "titration_start",
                    BLOCK,
                    "Titration starts above 0 and at or below the target rate.",
                    p.source,
                    p.tag,
                    "titration_start",
                )
            )
    if p.dose_step and req.dose > 0 and abs(req.dose / p.dose_step - round(req.dose / p.dose_step)) > 1e-9:
        out.append(
            Finding(
                "dose_step",
                BLOCK,
                f"Doses change in steps of {p.dose_step:g} {p.dose_unit} (one device each).",
                p.source,
                p.tag,
            )
        )
    return out


def _limits(req: DoseRequest, sessions: list[SessionDose]) -> list[Finding]:
    p, limits = req.protocol, dose_limits()
    out: list[Finding] = []
    if req.dose > p.dose_max:
        out.append(
            Finding(
                "protocol_max",
                OVERRIDE,
                f"{req.dose:g} {p.dose_unit} is above this protocol's limit of {p.dose_max:g} {p.dose_unit}.",
                p.source,
                p.tag,
            )
        )
    elif req.dose < p.dose_min:
        out.append(
            Finding(
                "protocol_min",
                WARNING,
                f"{req.dose:g} {p.dose_unit} is below this protocol's range ({p.dose_min:g}-{p.dose_max:g}).",
                p.source,
                p.tag,
            )
        )
    top = max(sessions, key=lambda s: s.dose) if sessions else None
    if top is None:
        return out
    if p.route == "iv_infusion" and top.rate_mg_per_kg_h is not None:
        cap = limits["infusion_max_icu"] if p.setting == "icu" else limits["infusion_max"]
        if top.rate_mg_per_kg_h > cap.value + 1e-9:
            out.append(
                Finding(
                    cap.key,
                    OVERRIDE,
                    f"{cap.message} ({top.rate_mg_per_kg_h:g} mg/kg/h).",
                    cap.sourced.source,
                    cap.sourced.tag,
                )
            )
        low = limits["infusion_min"]
        if top.rate_mg_per_kg_h < low.value - 1e-9:
            out.append(
                Finding(
                    low.key,
                    WARNING,
                    f"{low.message} ({top.rate_mg_per_kg_h:g} mg/kg/h).",
                    low.sourced.source,
                    low.sourced.tag,
                )
            )
        floor = limits["session_floor"]
        short = req.duration_min <= (floor.min_duration_min or 0)
        if (top.dose_mg is not None and top.dose_mg < floor.value) or short:
            what = f"{top.dose_mg:g} mg over {req.duration_min} min" if top.dose_mg is not None else ""
            out.append(
                Finding(
                    floor.key, WARNING, f"{floor.message}: {what}.", floor.sourced.source, floor.sourced.tag
                )
            )
    bolus = limits["bolus_max"]
    if p.route in bolus.applies_to and p.dose_unit == "mg/kg" and req.dose > bolus.value + 1e-9:
        out.append(
            Finding(
                bolus.key,
                OVERRIDE,
                f"{bolus.message} ({req.dose:g} mg/kg).",
                bolus.sourced.source,
                bolus.sourced.tag,
            )
        )
    return out


def calculate(req: DoseRequest) -> DoseCalculation:
    """Per-session doses (titrated), mg and mL rounded to the pump and syringe, and every finding."""
    findings = _structural(req)
    doses = titration(req.dose, req.titration_start, req.protocol.titration_step, max(req.sessions, 0))
    can_compute = not any(f.code in ("weight_missing", "wrong_unit", "dose_not_positive") for f in findings)
    sessions = [_session(req, i + 1, d) for i, d in enumerate(doses)] if can_compute else []
    if can_compute:
        findings += _limits(req, sessions)
    reason = (req.override_reason or "").strip()
    return DoseCalculation(
        sessions=tuple(sessions),
        findings=tuple(findings),
        overridden=len(reason) >= MIN_OVERRIDE_REASON_CHARS,
    )


def high_dose_high_frequency(
    calc: DoseCalculation, protocol: Protocol, high_frequency_sessions: int | None = None
) -> bool:
    """(design) A plan counts as high-dose, high-frequency (liver tests, facts 1.5) from this many
    sessions in the series (the clinic's value, else the knowledge default), or for any
    continuous inpatient infusion."""
    threshold = high_frequency_sessions or knowledge_defaults().high_frequency_sessions
    return len(calc.sessions) >= threshold or protocol.setting in (
        "inpatient",
        "icu",
    )
