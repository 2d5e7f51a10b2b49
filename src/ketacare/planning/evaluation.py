"""Evaluating a plan before it is written: the dose check, the PK check, eligibility, the cost
estimate and the series and booster rules, all in one Evaluation. Services never commit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.auth.principal import Principal
from ketacare.knowledge.dose_limits import planning_defaults
from ketacare.knowledge.protocols import Protocol
from ketacare.patients import service as patients
from ketacare.planning import boosters, costing, dosing, pk
from ketacare.planning.models import (
    ResponseAssessment,
)
from ketacare.planning.schemas import (
    PlanIn,
)
from ketacare.planning.setup import clinical_defaults, price_list, protocol
from ketacare.screening import service as screening

# --- evaluating a plan -------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    record: patients.PatientRecord
    eligibility: screening.Eligibility
    protocol: Protocol
    calc: dosing.DoseCalculation
    pk: pk.PkCheck
    estimate: costing.Estimate
    series: boosters.Verdict
    booster: boosters.Verdict


def _assessments(db: Session, patient_id: int) -> list[boosters.Assessment]:
    rows = db.execute(
        select(ResponseAssessment)
        .where(ResponseAssessment.patient_id == patient_id)
        .order_by(ResponseAssessment.id)
    ).scalars()
    return [
        boosters.Assessment(r.plan_id, r.assessed_on, r.baseline_nrs, r.followup_nrs, r.pgic, r.relief_days)
        for r in rows
    ]


def _dosings(p: Protocol, calc: dosing.DoseCalculation, duration_min: int) -> list[pk.SessionDosing]:
    """One simulation per distinct session dose (titration steps), labelled by session numbers."""
    groups: dict[float, list[int]] = {}
    for s in calc.sessions:
        if s.dose_mg is not None:
            groups.setdefault(s.dose_mg, []).append(s.number)
    out = []
    route = "iv_infusion" if p.route == "iv_infusion" else p.route
    for mg, numbers in groups.items():
        first = calc.sessions[numbers[0] - 1]
        span = f"session {numbers[0]}" if len(numbers) == 1 else f"sessions {numbers[0]}-{numbers[-1]}"
        per_dose = mg / p.doses_per_day if p.dose_unit == "mg/kg/day" and p.doses_per_day else mg
        out.append(
            pk.SessionDosing(
                f"{span}: {first.dose:g} {p.dose_unit} ({per_dose:g} mg)",
                route,
                per_dose,
                float(duration_min),
            )
        )
    return out


def evaluate(
    db: Session, actor: Principal, patient_id: int, data: PlanIn, *, today: dt.date | None = None
) -> Evaluation:
    today = today or clinic_time.today(db, actor.clinic_id)
    p = protocol(db, actor.clinic_id, data.protocol_key)
    record = patients.record(db, actor, patient_id)
    weight = record.latest_weight
    duration = data.session_duration_min if data.session_duration_min is not None else p.duration_min
    clinic = clinical_defaults(db, actor.clinic_id)
    calc = dosing.calculate(
        dosing.DoseRequest(
            protocol=p,
            dose=data.dose,
            dose_unit=data.dose_unit,
            sessions=data.sessions,
            duration_min=duration,
            concentration_mg_per_ml=data.concentration_mg_per_ml,
            weight_kg=weight.weight_kg if weight else None,
            weight_measured_on=weight.measured_on if weight else None,
            today=today,
            titration_start=data.titration_start,
            override_reason=data.dose_override_reason,
            clinic=clinic,
            age_years=patients.age_years(record.patient.date_of_birth, today),
        )
    )
    hdhf = dosing.high_dose_high_frequency(calc, p, clinic.high_frequency_sessions)
    elig = screening.eligibility(db, actor, patient_id, high_dose_high_frequency=hdhf)
    defaults = planning_defaults()
    check = (
        pk.check(
            _dosings(p, calc, duration),
            weight_kg=weight.weight_kg or 70.0,
            age_y=patients.age_years(record.patient.date_of_birth, today),
            sex=record.patient.sex,
            psychotomimetic_long_min=clinic.psychotomimetic_long_min,
            population_size=defaults.population_size,
            seed=patient_id,
            long_min_note=clinic.note("psychotomimetic_long_min"),
        )
        if calc.sessions and weight is not None
        else pk.PkCheck(False, "No doses to simulate until the dose problems are fixed.", (), (), {})
    )
    estimate = costing.estimate(
        price_list(db, actor.clinic_id),
        costing.EstimateInput(
            route=p.route,
            session_minutes=tuple(duration for _ in calc.sessions),
            session_mg=tuple(s.dose_mg for s in calc.sessions),
            premedication=bool(data.premedication),
        ),
    )
    history = _assessments(db, patient_id)
    return Evaluation(
        record,
        elig,
        p,
        calc,
        check,
        estimate,
        boosters.next_series_allowed(history),
        boosters.booster_allowed(history),
    )
