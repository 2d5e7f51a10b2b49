"""The consent of a plan: its text, generated when the plan is written, reading it, the
patient's signature and checking both hashes. Services never commit."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.errors import Conflict, Forbidden, InvalidInput
from ketacare.patients import service as patients
from ketacare.planning.common import _plan
from ketacare.planning.evaluation import Evaluation
from ketacare.planning.models import (
    Consent,
    TreatmentPlan,
)
from ketacare.planning.schemas import (
    SignIn,
)

CONSENT_RISKS = (
    (
        "Sedation and dissociation (feeling detached, perceptual changes) during and after the session; "
        "with esketamine, sedation in 48-61% and dissociation in 61-75% of patients.",
        "Spravato label (SPRAVATO-PI) [V]",
    ),
    (
        "A rise in blood pressure; with esketamine it peaks about 40 minutes after the dose and lasts about "
        "4 hours, and 8-19% had a rise of 40 mmHg systolic or more.",
        "Spravato label (SPRAVATO-PI) [V]",
    ),
    ("Nausea and vomiting, sleepiness, hallucinations.", "UIC Drug Information Group review 2022 [V]"),
    (
        "With repeated treatment: liver and bladder (urinary) problems; liver tests and bladder symptom "
        "questions may be needed.",
        "ASRA-2018 testing (grade C); FDA 2023 warning on compounded ketamine (bladder symptoms) [V]",
    ),
    ("Misuse: ketamine is a Schedule III controlled substance with abuse potential.", "Spravato label [V]"),
    (
        "No driving or operating machinery until the next day after restful sleep; "
        "an adult must take you home.",
        "Spravato label and REMS [V]",
    ),
)


def _consent_text(plan: TreatmentPlan, ev: Evaluation) -> str:
    p = ev.protocol
    patient = ev.record.patient
    grade = plan.evidence_grade or "none on record"
    lines = [
        "CONSENT TO OFF-LABEL KETAMINE TREATMENT",
        "",
        f"Patient: {patient.given_name} {patient.family_name} ({patient.record_number}), "
        f"born {patient.date_of_birth.isoformat()}",
        f"Plan #{plan.id}: {p.name} (protocol {p.key} version {p.version})",
        f"Indication: {plan.indication or 'not recorded'}; evidence grade {grade} (ASRA-2018).",
        "Ketamine is not approved by the FDA for pain. Using it for pain is off-label."
        + (
            " The evidence for your condition is weak or absent (grade C or D)."
            if plan.evidence_grade != "B"
            else " For CRPS the evidence is moderate (grade B), for up to 12 weeks."
        ),
        "",
        "WHAT IS PLANNED",
        f"Route: {plan.route.replace('_', ' ')}. Dose: {plan.dose:g} {plan.dose_unit}"
        + (f", titrated from {plan.titration_start:g}" if plan.titration_start else "")
        + f", {plan.sessions} session(s) of {plan.session_duration_min} min "
        f"every {plan.interval_days} day(s) "
        f"from {plan.start_date.isoformat()}.",
        f"Weight used: {plan.weight_kg:g} kg (measured {plan.weight_measured_on.isoformat()}). "
        f"Largest session: {plan.max_session_mg if plan.max_session_mg is not None else '-'} mg; "
        f"whole series: {plan.series_mg if plan.series_mg is not None else '-'} mg.",
        f"Premedication: {', '.join(plan.premedication) or 'none'}. Monitoring: {p.monitoring}.",
        "",
        "RISKS",
        *[f"- {text} ({source})" for text, source in CONSENT_RISKS],
        "",
        "ALTERNATIVES",
        "- Continuing or adjusting your current medicines and therapies.",
        "- Physical therapy, psychological therapy (CBT), sleep, exercise, diet and stress care "
        "(your care plan).",
        "- Oral or intranasal ketamine may be tried instead of repeated infusions in people who respond "
        "(ASRA-2018) [V].",
        "- Not having ketamine treatment.",
        "",
        "COSTS",
        f"Estimated total: ${ev.estimate.total_usd:,.2f} from the clinic's price list "
        "(an estimate, not a promise). "
        "Most insurers treat ketamine for pain as experimental (Aetna CPB 0938) [V].",
        "",
        "You may stop at any time. Ask us anything before you sign.",
    ]
    return "\n".join(lines)


def _generate_consent(db: Session, plan: TreatmentPlan, ev: Evaluation) -> Consent:
    text = _consent_text(plan, ev)
    row = Consent(
        plan_id=plan.id,
        patient_id=plan.patient_id,
        text=text,
        content_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    db.add(row)
    db.flush()
    return row


def consent(db: Session, actor: Principal, plan_id: int) -> tuple[TreatmentPlan, Consent]:
    plan = _plan(db, actor, plan_id, "consent.read")
    row = db.execute(select(Consent).where(Consent.plan_id == plan.id)).scalar_one()
    audit.record(db, actor, "consent.read", "consent", resource_id=row.id, patient_id=plan.patient_id)
    return plan, row


def signature_hash(row: Consent) -> str:
    assert row.signed_at is not None and row.signed_on is not None
    payload = "|".join(
        [
            row.content_sha256,
            row.signed_name or "",
            row.signed_on.isoformat(),
            row.signed_at.astimezone(dt.UTC).isoformat(),
            str(row.signed_by_id),
        ]
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def sign_consent(db: Session, actor: Principal, plan_id: int, data: SignIn) -> Consent:
    plan = _plan(db, actor, plan_id, "consent.sign")
    if actor.role != Role.patient or actor.patient_id != plan.patient_id:
        raise Forbidden("Only the patient signs their own consent.")
    row = db.execute(select(Consent).where(Consent.plan_id == plan.id)).scalar_one()
    if row.signed_at is not None:
        raise Conflict("This consent was signed already; a signed consent is never changed.")
    patient = patients.visible_patient(db, actor, plan.patient_id, "consent.sign")
    errors: dict[str, str] = {}
    expected = f"{patient.given_name} {patient.family_name}".casefold().split()
    if data.typed_name.casefold().split() != expected:
        errors["typed_name"] = "Type your full name as on your record (given name, then family name)."
    if data.signed_on != clinic_time.today(db, actor.clinic_id):
        errors["signed_on"] = "Use today's date."
    if not data.agree:
        errors["agree"] = "Tick the box to confirm you read and agree to the consent."
    if hashlib.sha256(row.text.encode()).hexdigest() != row.content_sha256:
        errors["consent"] = "The consent text does not match its hash: ask the clinic."
    if errors:
        raise InvalidInput(errors=errors)
    row.signed_name = data.typed_name.strip()
    row.signed_on = data.signed_on
    row.signed_at = dt.datetime.now(dt.UTC)
    row.signed_by_id = actor.user_id
    row.signature_sha256 = signature_hash(row)
    db.flush()
    audit.record(
        db,
        actor,
        "consent.sign",
        "consent",
        resource_id=row.id,
        patient_id=plan.patient_id,
        detail=f"content {row.content_sha256[:16]} signature {row.signature_sha256[:16]}",
    )
    return row


def verify_consent(row: Consent) -> bool:
    if hashlib.sha256(row.text.encode()).hexdigest() != row.content_sha256:
        return False
    return row.signed_at is None or row.signature_sha256 == signature_hash(row)


def consent_signed(db: Session, plan_id: int) -> bool:
    return (
        db.execute(
            select(Consent.id).where(Consent.plan_id == plan_id, Consent.signed_at.is_not(None))
        ).first()
        is not None
    )
