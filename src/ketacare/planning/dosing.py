"""Dose calculation and limits: pure functions, each finding with its source.

Severity: ``block`` stops the plan outright (stale weight, wrong unit, protocol without a
source, a child or an implausible weight, a rate or dose above a limit its source sets, above an
absolute ceiling); ``override`` stops it unless a prescriber writes a reason (above the
protocol's own range: a judgement call); ``warning`` is shown beside the plan (below the
guideline range, under the ASRA session floor), naming the protocol's sourced exception if it has
one. Every number comes from ``knowledge/data/dose_limits.toml`` or the clinic's defaults.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass

from ketacare.knowledge.dose_limits import (
    DoseLimit,
    adult_bounds,
    ceiling_for,
    dose_limits,
    override_reason_min_chars,
    planning_defaults,
)
from ketacare.knowledge.protocols import Protocol, validate_protocol
from ketacare.planning.clinical_defaults import ClinicalDefaults, knowledge_defaults

BLOCK, OVERRIDE, WARNING = "block", "override", "warning"
MIN_PER_H = 60.0
H_PER_DAY = 24.0
WEIGHT_BASED = ("mg/kg/h", "mg/kg", "mg/kg/day")
MIN_OVERRIDE_REASON_CHARS = override_reason_min_chars()  # (design) a written reason, not a tick box
DAY_VISIT = ("outpatient", "home")  # settings whose ceilings the clinic may lower


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
    age_years: int | None = None  # None: not known to this check (the caller checks age itself)

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
                "ASRA/AAPM/ASA consensus guideline 2018: doses in mg/kg, from a measured weight",
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
                    "ASRA/AAPM/ASA consensus guideline 2018 doses from a measured weight; the number of "
                    "days is a clinic default",
                    defaults.weight_max_age_days_tag,
                    "weight",
                )
            )
    out += adult_findings(req.age_years, req.weight_kg if needs_weight else None, clinic)
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


def adult_findings(age_years: int | None, weight_kg: float | None, clinic: ClinicalDefaults) -> list[Finding]:
    """An adult programme: a child, or a weight outside the clinic's adult bounds, is refused."""
    bounds, out = adult_bounds(), []
    if age_years is not None and age_years < bounds.min_age_years:
        out.append(
            Finding(
                "not_adult",
                BLOCK,
                f"The patient is {age_years}: KetaCare doses adults ({bounds.min_age_years} or older) only.",
                bounds.min_age.source,
                bounds.min_age.tag,
                "weight",
            )
        )
    low, high = clinic.adult_weight_min_kg, clinic.adult_weight_max_kg
    if weight_kg is not None and not low <= weight_kg <= high:
        out.append(
            Finding(
                "weight_out_of_bounds",
                BLOCK,
                f"A weight of {weight_kg:g} kg is outside the adult dosing bounds of {low:g}-{high:g} kg "
                f"({clinic.note('adult_weight_min_kg')}): check the weight; it is not dosed here.",
                bounds.weight.source,
                bounds.weight.tag,
                "weight",
            )
        )
    return out


def _with_exception(p: Protocol, limit: DoseLimit, text: str) -> tuple[str, str]:
    """A warning's message and source; with the protocol's sourced exception, both sources."""
    why = p.exceptions.get(limit.key)
    if not why:
        return text, limit.sourced.source
    return f"{text} This protocol's rate is sourced: {why}", f"{limit.sourced.source}; {p.source}"


def rate_cap(setting: str) -> DoseLimit:
    """The infusion ceiling for a protocol setting: 7 mg/kg/h in an ICU setting, else 2."""
    limits = dose_limits()
    return limits["infusion_max_icu"] if setting == "icu" else limits["infusion_max"]


def _setting_label(setting: str) -> str:
    return "an ICU setting" if setting == "icu" else f"{setting} setting, not an ICU"


@dataclass(frozen=True)
class CeilingsInForce:
    session_max_mg: float | None
    session_max_mg_per_kg: float | None
    day_max_mg: float | None
    day_max_mg_per_kg: float | None
    source: str
    tag: str
    note: str


def ceilings_in_force(setting: str, clinic: ClinicalDefaults) -> CeilingsInForce:
    """The absolute ceilings for a setting: the clinic's (lowered) values for day visits."""
    row = ceiling_for(setting)
    if setting in DAY_VISIT:
        own = any(k in clinic.own for k in ("session_max_mg", "session_max_mg_per_kg", "day_max_mg"))
        return CeilingsInForce(
            clinic.session_max_mg,
            clinic.session_max_mg_per_kg,
            clinic.day_max_mg,
            clinic.day_max_mg_per_kg,
            row.sourced.source,
            row.sourced.tag,
            "the clinic's own ceiling" if own else "design default, clinic-editable downwards",
        )
    # Inpatient and ICU rows: only per-day ceilings apply; a clinic may lower the ones the row sets.
    keys = {"day_max_mg": f"{setting}_day_max_mg", "day_max_mg_per_kg": f"{setting}_day_max_mg_per_kg"}
    values: dict[str, float | None] = {}
    own = False
    for column, key in keys.items():
        default = getattr(row, column)
        if default is None or not hasattr(clinic, key):
            values[column] = default
        else:
            values[column] = float(getattr(clinic, key))
            own = own or key in clinic.own
    return CeilingsInForce(
        row.session_max_mg,
        row.session_max_mg_per_kg,
        values["day_max_mg"],
        values["day_max_mg_per_kg"],
        row.sourced.source,
        row.sourced.tag,
        "the clinic's own ceiling" if own else "design default, clinic-editable downwards",
    )


def ceiling_problems(
    what: str,
    mg: float,
    weight_kg: float | None,
    top_mg: float | None,
    top_mg_per_kg: float | None,
    note: str,
) -> list[str]:
    """Messages for an amount above a ceiling in mg or mg/kg (empty when within both)."""
    out = []
    if top_mg is not None and mg > top_mg + 1e-9:
        out.append(f"{what} would reach {mg:g} mg, above the ceiling of {top_mg:g} mg ({note}).")
    if top_mg_per_kg is not None and weight_kg:
        per_kg = round(mg / weight_kg, 2)
        if per_kg > top_mg_per_kg + 1e-9:
            out.append(
                f"{what} would reach {per_kg:g} mg/kg ({mg:g} mg at {weight_kg:g} kg), above the ceiling "
                f"of {top_mg_per_kg:g} mg/kg ({note})."
            )
    return out


def _ceilings(req: DoseRequest, sessions: list[SessionDose]) -> list[Finding]:
    p = req.protocol
    c = ceilings_in_force(p.setting, req.in_force)
    continuous = req.duration_min > MIN_PER_H * H_PER_DAY
    per_episode = p.max_doses_per_episode or 1
    messages: list[str] = []
    for s in sessions:
        if s.dose_mg is None:
            continue
        session_mg = round(s.dose_mg * per_episode, 1)
        if continuous:
            rate = s.rate_mg_per_h if s.rate_mg_per_h is not None else 0.0
            day_mg = round(rate * H_PER_DAY, 1)
        else:
            day_mg = session_mg  # sessions are at least a day apart
            what = f"Session {s.number}" + (f" ({per_episode} doses)" if per_episode > 1 else "")
            messages += ceiling_problems(
                what, session_mg, req.weight_kg, c.session_max_mg, c.session_max_mg_per_kg, c.note
            )
        messages += ceiling_problems(
            f"Day {s.number}", day_mg, req.weight_kg, c.day_max_mg, c.day_max_mg_per_kg, c.note
        )
        if messages:
            break  # the first session past a ceiling says enough
    return [Finding("ceiling", BLOCK, " ".join(messages), c.source, c.tag)] if messages else []


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
    severity = {True: BLOCK, False: OVERRIDE}
    if p.route == "iv_infusion" and top.rate_mg_per_kg_h is not None:
        cap = rate_cap(p.setting)
        if top.rate_mg_per_kg_h > cap.value + 1e-9:
            out.append(
                Finding(
                    cap.key,
                    severity[cap.hard],
                    f"{cap.message} ({top.rate_mg_per_kg_h:g} mg/kg/h in {_setting_label(p.setting)}).",
                    cap.sourced.source,
                    cap.sourced.tag,
                )
            )
        low = limits["infusion_min"]
        lowest = min(s.rate_mg_per_kg_h for s in sessions if s.rate_mg_per_kg_h is not None)
        if lowest < low.value - 1e-9:
            text, source = _with_exception(p, low, f"{low.message} ({lowest:g} mg/kg/h).")
            out.append(Finding(low.key, WARNING, text, source, low.sourced.tag))
        floor = limits["session_floor"]
        short = req.duration_min <= (floor.min_duration_min or 0)
        if (top.dose_mg is not None and top.dose_mg < floor.value) or short:
            what = f"{top.dose_mg:g} mg over {req.duration_min} min" if top.dose_mg is not None else ""
            text, source = _with_exception(p, floor, f"{floor.message}: {what}.")
            out.append(Finding(floor.key, WARNING, text, source, floor.sourced.tag))
    bolus = limits["bolus_max"]
    if p.route in bolus.applies_to and top.dose_mg is not None and req.weight_kg:
        per_kg = round(top.dose_mg / req.weight_kg, 4)
        if per_kg > bolus.value + 1e-9:
            out.append(
                Finding(
                    bolus.key,
                    severity[bolus.hard],
                    f"{bolus.message} ({per_kg:g} mg/kg).",
                    bolus.sourced.source,
                    bolus.sourced.tag,
                )
            )
    for limit in limits.values():
        mg_max = limit.unit == "mg" and limit.kind == "max" and p.route in limit.applies_to
        if mg_max and top.dose_mg is not None and top.dose_mg > limit.value + 1e-9:
            out.append(
                Finding(
                    limit.key,
                    severity[limit.hard],
                    f"{limit.message} ({top.dose_mg:g} mg).",
                    limit.sourced.source,
                    limit.sourced.tag,
                )
            )
    out += _ceilings(req, sessions)
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


@dataclass(frozen=True)
class Allowance:
    """What a plan allows at the bedside without a prescriber's written override: the protocol's
    own maximum, or the plan's dose where a prescriber already overrode it on the plan."""

    setting: str
    protocol_name: str
    plan_weight_kg: float | None = None  # what the plan's mg and mg/h were computed for
    rate_mg_per_kg_h: float | None = None
    rate_mg_per_h: float | None = None
    session_mg_per_kg: float | None = None
    session_mg: float | None = None


def plan_allowance(
    p: Protocol, plan_dose: float, duration_min: int, plan_weight_kg: float | None = None
) -> Allowance:
    top = max(p.dose_max, plan_dose)
    hours = duration_min / MIN_PER_H
    base = Allowance(p.setting, p.name, plan_weight_kg)
    if p.dose_unit == "mg/kg/h":
        return dataclasses.replace(base, rate_mg_per_kg_h=top)
    if p.dose_unit == "mg/h":
        return dataclasses.replace(base, rate_mg_per_h=top)
    if p.dose_unit == "mg/kg":
        rate = top / hours if p.route == "iv_infusion" and hours > 0 else None
        return dataclasses.replace(base, rate_mg_per_kg_h=rate, session_mg_per_kg=top)
    if p.dose_unit == "mg/kg/day":
        return dataclasses.replace(base, session_mg_per_kg=top)
    if p.dose_unit == "mg":
        return dataclasses.replace(base, session_mg=top * (p.max_doses_per_episode or 1))
    return base
