"""Take-home prescriptions: draft, check, sign, cancel, print and send, and a patient's
prescribing page. Never commits; every change and every read of patient data is audited."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import Conflict, Forbidden, InvalidInput, NotFound, PendingAudit
from ketacare.knowledge.prescribing import prescribing_rules, product_by_key, scope_defaults
from ketacare.patients import service as patients
from ketacare.planning import clinical_defaults_service as clinical_defaults
from ketacare.prescribing import epcs, rules
from ketacare.prescribing.common import CANCELLED, DRAFT, SIGNED, _today
from ketacare.prescribing.credentials import _staff_member, prescriber_facts
from ketacare.prescribing.encounters import _encounters, _pdmp_checks
from ketacare.prescribing.models import (
    Encounter,
    PdmpCheck,
    Prescription,
    PrescriptionCancellation,
)
from ketacare.prescribing.pdf import RxDocument, render_pdf
from ketacare.prescribing.rx_settings import settings_in_force
from ketacare.prescribing.schemas import (
    CancelIn,
    DraftUpdateIn,
    PrescriptionIn,
    SignIn,
)
from ketacare.prescribing.scope import _scope_facts
from ketacare.prescribing.supplies import _cancellations, session_doses, supplies
from ketacare.safety import holds_service
from ketacare.screening.eligibility import MedicationFact


def _rx(db: Session, actor: Principal, rx_id: int, action: str, *, for_update: bool = False) -> Prescription:
    query = select(Prescription).where(Prescription.id == rx_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    rx = db.execute(query).scalar_one_or_none()
    if rx is None or rx.clinic_id != actor.clinic_id:
        raise NotFound(
            "No such prescription in your clinic.",
            audit=[
                PendingAudit(
                    action,
                    "prescription",
                    str(rx_id),
                    None,
                    "denied",
                    "no such prescription" if rx is None else "prescription of another clinic",
                )
            ],
        )
    patients.visible_patient(db, actor, rx.patient_id, action)
    return rx


def status_of(rx: Prescription, cancellation: PrescriptionCancellation | None) -> str:
    if cancellation is not None:
        return CANCELLED
    return SIGNED if rx.signed_at is not None else DRAFT


def _medications(record: patients.PatientRecord) -> tuple[MedicationFact, ...]:
    return tuple(
        MedicationFact(m.name, m.drug_class, m.dose_amount, m.dose_unit, m.doses_per_day)
        for m in record.medications
    )


def _has_address(record: patients.PatientRecord) -> bool:
    p = record.patient
    return bool(p.address_line and p.city and p.state and p.postal_code)


def issue_date(rx: Prescription, today: dt.date) -> dt.date:
    """A signed prescription keeps its date; a draft is dated the day it is signed."""
    return rx.issued_on if rx.signed_at is not None else today


def _draft(rx: Prescription, issued_on: dt.date) -> rules.Draft:
    product = product_by_key()[rx.product_key]
    return rules.Draft(
        product=product,
        quantity=rx.quantity,
        days_supply=rx.days_supply,
        refills=rx.refills,
        issued_on=issued_on,
        compounded_ack=rx.compounded_ack,
        mme_justification=rx.mme_justification,
    )


def _encounter_fact(db: Session, rx: Prescription) -> rules.Encounter | None:
    if rx.encounter_id is None:
        return None
    e = db.get(Encounter, rx.encounter_id)
    if e is None:
        return None
    return rules.Encounter(e.kind, e.modality, e.occurred_on, e.patient_state)


def _evaluate(
    db: Session, actor: Principal, rx: Prescription, record: patients.PatientRecord, today: dt.date
) -> rules.Evaluation:
    settings = settings_in_force(db, actor.clinic_id)
    issued_on = issue_date(rx, today)
    window = int(prescribing_rules().monthly_window_days.value)
    since = today - dt.timedelta(days=window - 1)
    session_mg = sum(d.mg for d in session_doses(db, actor, rx.patient_id, since) if d.on <= today)
    in_person = [
        e.occurred_on
        for e in _encounters(db, actor.clinic_id, rx.patient_id)
        if e.kind == rules.IN_PERSON and e.occurred_on <= issued_on
    ]
    pdmp = [
        c.checked_on for c in _pdmp_checks(db, actor.clinic_id, rx.patient_id) if c.checked_on <= issued_on
    ]
    patient = rules.PatientFacts(
        home_state=record.patient.state,
        has_address=_has_address(record),
        medications=_medications(record),
        last_pdmp_on=max(pdmp) if pdmp else None,
        in_person_evaluation_on=max(in_person) if in_person else None,
        holds=tuple(holds_service.hold_reasons(db, actor.clinic_id, rx.patient_id)),
        prior=tuple(
            s for s in supplies(db, actor.clinic_id, rx.patient_id, exclude=rx.id) if s.issued_on <= issued_on
        ),
        session_mg_last_window=session_mg,
        weight_kg=weight.weight_kg if (weight := record.latest_weight) is not None else None,
    )
    encounter = _encounter_fact(db, rx)
    prescriber = prescriber_facts(db, actor.clinic_id, rx.prescriber_id)
    state = encounter.patient_state if encounter and encounter.patient_state else patient.home_state
    scope = (
        rules.scope_allows(
            _scope_facts(db, actor.clinic_id), scope_defaults(), prescriber.role, rules.PRESCRIBE, state
        )
        if state
        else None
    )
    ceilings = rules.home_ceilings(clinical_defaults.in_force(db, actor.clinic_id))
    return rules.evaluate(
        _draft(rx, issued_on), prescriber, encounter, patient, settings, today, scope, ceilings
    )


def _check_encounter(db: Session, actor: Principal, patient_id: int, encounter_id: int | None) -> None:
    if encounter_id is None:
        return
    e = db.get(Encounter, encounter_id)
    if e is None or e.clinic_id != actor.clinic_id or e.patient_id != patient_id:
        raise InvalidInput(errors={"encounter_id": "No such encounter with this patient."})


def create_draft(
    db: Session, actor: Principal, patient_id: int, data: PrescriptionIn, today: dt.date | None = None
) -> Prescription:
    """A draft prescription; what it still needs before signing shows in its checks."""
    patients.visible_patient(db, actor, patient_id, "prescription.create")
    on = _today(db, actor, today)
    product = product_by_key().get(data.product_key)
    errors = rules.input_errors(product, data.quantity, data.days_supply, data.refills, on)
    if errors or product is None:
        raise InvalidInput(errors=errors)
    _check_encounter(db, actor, patient_id, data.encounter_id)
    rx = Prescription(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        prescriber_id=actor.user_id,
        encounter_id=data.encounter_id,
        product_key=product.key,
        product_name=product.name,
        drug=product.drug,
        route=product.route,
        dosage_form=product.dosage_form,
        strength_mg=product.strength_mg,
        unit=product.unit,
        compounded=product.compounded,
        quantity=data.quantity,
        days_supply=data.days_supply,
        directions=data.directions,
        refills=data.refills,
        issued_on=on,
        mme_justification=(data.mme_justification or "").strip() or None,
        created_by_id=actor.user_id,
    )
    _set_ack(rx, actor, data.compounded_ack)
    db.add(rx)
    db.flush()
    audit.record(
        db,
        actor,
        "prescription.create",
        "prescription",
        resource_id=rx.id,
        patient_id=patient_id,
        detail=f"{product.key} x {data.quantity:g}, {data.days_supply} days, {data.refills} refills",
    )
    return rx


def _set_ack(rx: Prescription, actor: Principal, text: str | None) -> None:
    ack = (text or "").strip() or None
    if ack == rx.compounded_ack:
        return
    rx.compounded_ack = ack
    rx.compounded_ack_by_id = actor.user_id if ack else None
    rx.compounded_ack_at = utcnow() if ack else None


def _unsigned(rx: Prescription, what: str) -> None:
    if rx.signed_at is not None:
        raise Conflict(f"A signed prescription is never changed ({what}): cancel it and write a new one.")


def _author_only(rx: Prescription, actor: Principal, what: str) -> None:
    """A draft carries its author's name to the signature: only the author changes it."""
    if rx.prescriber_id != actor.user_id:
        raise Forbidden(f"Only the prescriber who wrote this draft may {what} it.")


def update_draft(db: Session, actor: Principal, rx_id: int, data: DraftUpdateIn) -> Prescription:
    rx = _rx(db, actor, rx_id, "prescription.update", for_update=True)
    _unsigned(rx, "update")
    _author_only(rx, actor, "change")
    fields = data.model_fields_set
    if "encounter_id" in fields:
        _check_encounter(db, actor, rx.patient_id, data.encounter_id)
        rx.encounter_id = data.encounter_id
    if "compounded_ack" in fields:
        _set_ack(rx, actor, data.compounded_ack)
    if "mme_justification" in fields:
        rx.mme_justification = (data.mme_justification or "").strip() or None
    db.flush()
    audit.record(
        db,
        actor,
        "prescription.update",
        "prescription",
        resource_id=rx.id,
        patient_id=rx.patient_id,
        detail="changed: " + (", ".join(sorted(fields)) or "nothing"),
    )
    return rx


def discard_draft(db: Session, actor: Principal, rx_id: int) -> int:
    rx = _rx(db, actor, rx_id, "prescription.discard", for_update=True)
    _unsigned(rx, "discard")
    _author_only(rx, actor, "discard")
    patient_id = rx.patient_id
    db.delete(rx)
    db.flush()
    audit.record(db, actor, "prescription.discard", "prescription", resource_id=rx_id, patient_id=patient_id)
    return patient_id


@dataclass(frozen=True)
class RxView:
    rx: Prescription
    status: str
    cancellation: PrescriptionCancellation | None
    evaluation: rules.Evaluation
    record: patients.PatientRecord
    prescriber_name: str
    encounter: Encounter | None
    today: dt.date
    issued_on: dt.date

    @property
    def mg_per_day(self) -> float:
        return self.evaluation.mg_per_day


def _view(db: Session, actor: Principal, rx: Prescription, today: dt.date) -> RxView:
    record = patients.record(db, actor, rx.patient_id)
    cancellation = _cancellations(db, [rx.id]).get(rx.id)
    prescriber = _staff_member(db, actor.clinic_id, rx.prescriber_id)
    encounter = db.get(Encounter, rx.encounter_id) if rx.encounter_id else None
    return RxView(
        rx=rx,
        status=status_of(rx, cancellation),
        cancellation=cancellation,
        evaluation=_evaluate(db, actor, rx, record, today),
        record=record,
        prescriber_name=prescriber.full_name if prescriber else "?",
        encounter=encounter,
        today=today,
        issued_on=issue_date(rx, today),
    )


def view(db: Session, actor: Principal, rx_id: int, today: dt.date | None = None) -> RxView:
    rx = _rx(db, actor, rx_id, "prescription.read")
    result = _view(db, actor, rx, _today(db, actor, today))
    audit.record(db, actor, "prescription.read", "prescription", resource_id=rx.id, patient_id=rx.patient_id)
    return result


@dataclass(frozen=True)
class PatientRef:
    id: int
    given_name: str
    family_name: str
    record_number: str
    state: str | None


@dataclass(frozen=True)
class PatientPrescribing:
    patient: PatientRef
    prescriptions: list[tuple[Prescription, str]]  # with draft, signed or cancelled
    encounters: list[Encounter]
    pdmp_checks: list[PdmpCheck]
    staff: dict[int, str]


def patient_prescribing(db: Session, actor: Principal, patient_id: int) -> PatientPrescribing:
    patient = patients.visible_patient(db, actor, patient_id, "prescription.list")
    rows = list(
        db.execute(
            select(Prescription)
            .where(Prescription.clinic_id == actor.clinic_id, Prescription.patient_id == patient_id)
            .order_by(Prescription.issued_on.desc(), Prescription.id.desc())
        ).scalars()
    )
    cancelled = _cancellations(db, [r.id for r in rows])
    audit.record(
        db,
        actor,
        "prescription.list",
        "patient",
        resource_id=patient_id,
        patient_id=patient_id,
        detail=f"{len(rows)} prescriptions",
    )
    return PatientPrescribing(
        patient=PatientRef(
            patient.id, patient.given_name, patient.family_name, patient.record_number, patient.state
        ),
        prescriptions=[(r, status_of(r, cancelled.get(r.id))) for r in rows],
        encounters=_encounters(db, actor.clinic_id, patient_id),
        pdmp_checks=_pdmp_checks(db, actor.clinic_id, patient_id),
        staff={s.id: s.full_name for s in auth.staff_directory(db, actor.clinic_id)},
    )


def content_digest(rx: Prescription) -> str:
    """SHA-256 over what the prescription says: signing fixes it."""
    content = {
        "id": rx.id,
        "patient_id": rx.patient_id,
        "prescriber_id": rx.prescriber_id,
        "product": rx.product_key,
        "drug": rx.drug,
        "route": rx.route,
        "dosage_form": rx.dosage_form,
        "strength_mg": rx.strength_mg,
        "unit": rx.unit,
        "quantity": rx.quantity,
        "days_supply": rx.days_supply,
        "directions": rx.directions,
        "refills": rx.refills,
        "issued_on": rx.issued_on.isoformat(),
        "encounter_id": rx.encounter_id,
        "compounded_ack": rx.compounded_ack,
        "mme_justification": rx.mme_justification,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def sign(db: Session, actor: Principal, rx_id: int, data: SignIn, today: dt.date | None = None) -> RxView:
    """Sign a draft whose checks have no block, with its warnings acknowledged. From then on the
    prescription never changes (the database refuses it too)."""
    rx = _rx(db, actor, rx_id, "prescription.sign", for_update=True)
    _unsigned(rx, "sign again")
    if rx.prescriber_id != actor.user_id:
        raise Forbidden("Only the prescriber who wrote the prescription signs it.")
    on = _today(db, actor, today)
    product = product_by_key()[rx.product_key]
    errors = rules.input_errors(product, rx.quantity, rx.days_supply, rx.refills, on)
    if errors:
        raise InvalidInput("The prescription cannot be signed as written.", errors=errors)
    rx.issued_on = on
    result = _view(db, actor, rx, on)
    blocks, warnings = result.evaluation.blocks, result.evaluation.warnings
    if blocks:
        raise InvalidInput(
            "The prescription cannot be signed yet: " + "; ".join(c.label for c in blocks) + ".",
            errors={c.key: c.message for c in blocks},
        )
    if warnings and not data.acknowledge_warnings:
        raise InvalidInput(
            "Acknowledge the warnings to sign.",
            errors={
                "acknowledge_warnings": "Review and acknowledge: "
                + "; ".join(c.label for c in warnings)
                + "."
            },
        )
    rx.signed_at, rx.signed_by_id = utcnow(), actor.user_id
    rx.warnings_acknowledged = bool(warnings)
    rx.checks_at_signing = [dataclasses.asdict(c) for c in result.evaluation.checks]
    rx.content_sha256 = content_digest(rx)
    db.flush()
    audit.record(
        db,
        actor,
        "prescription.sign",
        "prescription",
        resource_id=rx.id,
        patient_id=rx.patient_id,
        detail=f"{rx.content_sha256}; {len(warnings)} warnings acknowledged",
    )
    return dataclasses.replace(result, status=SIGNED)


def cancel(
    db: Session, actor: Principal, rx_id: int, data: CancelIn, today: dt.date | None = None
) -> PrescriptionCancellation:
    rx = _rx(db, actor, rx_id, "prescription.cancel")
    if rx.signed_at is None:
        raise Conflict("A draft is discarded, not cancelled.")
    if _cancellations(db, [rx.id]):
        raise Conflict("This prescription is already cancelled.")
    row = PrescriptionCancellation(
        prescription_id=rx.id,
        reason=data.reason,
        cancelled_on=_today(db, actor, today),
        cancelled_by_id=actor.user_id,
    )
    db.add(row)
    try:
        db.flush()
    except IntegrityError as exc:
        raise Conflict("This prescription is already cancelled.") from exc
    audit.record(
        db,
        actor,
        "prescription.cancel",
        "prescription",
        resource_id=rx.id,
        patient_id=rx.patient_id,
        detail=data.reason,
    )
    return row


def _address(record: patients.PatientRecord) -> str:
    p = record.patient
    parts = [p.address_line or "", " ".join(x for x in (p.city, p.state, p.postal_code) if x)]
    return ", ".join(x for x in parts if x)


def _document(db: Session, actor: Principal, v: RxView) -> RxDocument:
    rx = v.rx
    state = v.evaluation.state
    facts = prescriber_facts(db, actor.clinic_id, rx.prescriber_id)
    dea = next((x for x in facts.deas if x.state == state), None) if state else None
    licence = next((x for x in facts.licences if x.state == state), None) if state else None
    clinic = auth.clinic(db, actor.clinic_id)
    p = v.record.patient
    r = prescribing_rules()
    return RxDocument(
        prescription_id=rx.id,
        status=v.status,
        clinic_name=clinic.name,
        prescriber_name=v.prescriber_name,
        prescriber_dea=dea.number if dea else "not on record",
        prescriber_npi=facts.npi or "not on record",
        prescriber_licence=f"{licence.state} {licence.number}" if licence else "not on record",
        patient_name=f"{p.given_name} {p.family_name}",
        patient_date_of_birth=p.date_of_birth,
        patient_address=_address(v.record) or "not on record",
        drug=rx.drug,
        product_name=rx.product_name,
        strength=f"{rx.strength_mg:g} mg per {rx.unit}",
        dosage_form=rx.dosage_form,
        route=rx.route,
        quantity=f"{rx.quantity:g} {rx.unit}",
        days_supply=rx.days_supply,
        directions=rx.directions,
        refills=rx.refills,
        issued_on=v.issued_on,
        signed_at=rx.signed_at,
        content_sha256=rx.content_sha256,
        compounded_warning=r.compounded_warning.text if rx.compounded else None,
        compounded_ack=rx.compounded_ack,
        cancel_reason=v.cancellation.reason if v.cancellation else None,
        schedule_note=f"Schedule III controlled substance ({r.scheduling.source}).",
        epcs_note=r.epcs.text,
    )


def pdf(db: Session, actor: Principal, rx_id: int, today: dt.date | None = None) -> bytes:
    rx = _rx(db, actor, rx_id, "prescription.print")
    v = _view(db, actor, rx, _today(db, actor, today))
    audit.record(
        db,
        actor,
        "prescription.print",
        "prescription",
        resource_id=rx.id,
        patient_id=rx.patient_id,
        detail=v.status,
    )
    return render_pdf(_document(db, actor, v))


def transmit(db: Session, actor: Principal, rx_id: int) -> epcs.Receipt:
    """Hand a signed prescription to the EPCS gateway (none is configured unless a vendor's is)."""
    rx = _rx(db, actor, rx_id, "prescription.transmit")
    if rx.signed_at is None or rx.content_sha256 is None:
        raise Conflict("Only a signed prescription can be sent.")
    v = _view(db, actor, rx, rx.issued_on)
    if v.status == CANCELLED:
        raise Conflict("A cancelled prescription is not sent.")
    doc = _document(db, actor, v)
    outgoing = epcs.OutgoingPrescription(
        prescription_id=rx.id,
        content_sha256=rx.content_sha256,
        patient_name=doc.patient_name,
        patient_date_of_birth=doc.patient_date_of_birth,
        patient_address=doc.patient_address,
        prescriber_name=doc.prescriber_name,
        prescriber_dea=doc.prescriber_dea,
        prescriber_npi=doc.prescriber_npi,
        drug=rx.drug,
        product_name=rx.product_name,
        strength=doc.strength,
        dosage_form=rx.dosage_form,
        quantity=doc.quantity,
        days_supply=rx.days_supply,
        directions=rx.directions,
        refills=rx.refills,
        issued_on=rx.issued_on,
    )
    gateway = epcs.gateway()
    try:
        receipt = gateway.send(outgoing)
    except epcs.EpcsNotConfigured as exc:
        exc.audit.append(
            PendingAudit(
                "prescription.transmit", "prescription", str(rx.id), rx.patient_id, "refused", gateway.name
            )
        )
        raise
    audit.record(
        db,
        actor,
        "prescription.transmit",
        "prescription",
        resource_id=rx.id,
        patient_id=rx.patient_id,
        detail=f"{receipt.gateway}: {receipt.reference}",
    )
    return receipt
