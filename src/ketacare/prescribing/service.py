"""Prescribing use-cases: prescribers' credentials and scope of practice, the clinic's settings,
encounters and PDMP checks, take-home prescriptions (draft, check, sign, cancel, print, send),
and the ketamine a patient has had (sessions and prescriptions). Never commits; every change
and every read of patient data is audited."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.clinic_settings import Value, shown
from ketacare.db import utcnow
from ketacare.errors import Conflict, Forbidden, InvalidInput, NotFound, PendingAudit
from ketacare.knowledge.prescribing import dea_rule, prescribing_rules, product_by_key, scope_defaults
from ketacare.patients import service as patients
from ketacare.planning import clinical_defaults_service as clinical_defaults
from ketacare.prescribing import epcs, rules
from ketacare.prescribing.identifiers import check_dea, last_name, npi_error
from ketacare.prescribing.models import (
    BoardCertification,
    DeaRegistration,
    Encounter,
    PdmpCheck,
    PrescriberProfile,
    Prescription,
    PrescriptionCancellation,
    RxSettingsRow,
    ScopeRule,
    StateLicence,
)
from ketacare.prescribing.pdf import RxDocument, render_pdf
from ketacare.prescribing.schemas import (
    BoardIn,
    CancelIn,
    DeaIn,
    DraftUpdateIn,
    EncounterIn,
    LicenceIn,
    NpiIn,
    PdmpIn,
    PrescriptionIn,
    RxSettingsIn,
    ScopeRuleIn,
    SignIn,
)
from ketacare.prescribing.settings import SPEC_BY_KEY, SPECS, RxSettings, resolve
from ketacare.safety import holds_service
from ketacare.screening.eligibility import MedicationFact
from ketacare.sessions import administration as session_administration

DRAFT, SIGNED, CANCELLED = "draft", "signed", "cancelled"
CREDENTIALED_ROLES = (Role.prescriber.value, Role.nurse.value)


def _today(db: Session, actor: Principal, today: dt.date | None) -> dt.date:
    return today if today is not None else clinic_time.today(db, actor.clinic_id)


# --- settings ----------------------------------------------------------------------------------


def _settings_row(db: Session, clinic_id: int) -> RxSettingsRow | None:
    return db.execute(select(RxSettingsRow).where(RxSettingsRow.clinic_id == clinic_id)).scalar_one_or_none()


def settings_overrides(db: Session, clinic_id: int) -> dict[str, Value]:
    row = _settings_row(db, clinic_id)
    return {s.key: (getattr(row, s.key) if row is not None else None) for s in SPECS}


def settings_in_force(db: Session, clinic_id: int) -> RxSettings:
    return resolve(settings_overrides(db, clinic_id))


def save_settings(db: Session, actor: Principal, data: RxSettingsIn) -> RxSettings:
    """Set the fields present (null resets to the knowledge default); one audit entry per change."""
    legal_end = prescribing_rules().flexibility_end
    if data.flexibility_end is not None and data.flexibility_end > legal_end:
        # A clinic may stop relying on the DEA flexibility earlier, never later than the rule
        # in force; when DEA extends it, the knowledge file changes.
        raise InvalidInput(
            errors={"flexibility_end": f"The DEA flexibility runs to {legal_end.isoformat()} at the latest."}
        )
    row = _settings_row(db, actor.clinic_id)
    if row is None:
        row = RxSettingsRow(clinic_id=actor.clinic_id)
        db.add(row)
    changes = []
    for spec in SPECS:
        if spec.key not in data.model_fields_set:
            continue
        new = getattr(data, spec.key)
        old = getattr(row, spec.key, None)
        if old == new:
            continue
        setattr(row, spec.key, new)
        was = shown(old) if old is not None else f"default ({shown(spec.knowledge_value)})"
        now = shown(new) if new is not None else f"default ({shown(spec.knowledge_value)})"
        changes.append(f"{spec.key}: {was} -> {now}")
    row.updated_by_id, row.updated_at = actor.user_id, utcnow()
    db.flush()
    audit.record_many(
        db,
        actor,
        [audit.AuditEvent("prescribing.settings.save", "rx_settings", row.id, detail=c) for c in changes],
    )
    return settings_in_force(db, actor.clinic_id)


@dataclass(frozen=True)
class SettingRow:
    key: str
    label: str
    unit: str
    value: str
    origin: str
    knowledge_value: str
    source: str
    tag: str
    range_label: str
    used_by: str
    kind: str
    own_value: str


def settings_table(db: Session, clinic_id: int) -> list[SettingRow]:
    overrides = settings_overrides(db, clinic_id)
    in_force = resolve(overrides)
    return [
        SettingRow(
            key=s.key,
            label=s.label,
            unit=s.unit,
            value=shown(getattr(in_force, s.key)),
            origin=in_force.origin(s.key),
            knowledge_value=shown(s.knowledge_value),
            source=s.source(),
            tag=s.tag(),
            range_label=s.range_label(),
            used_by=s.used_by,
            kind=s.kind,
            own_value="" if overrides[s.key] is None else shown(overrides[s.key]),
        )
        for s in SPECS
    ]


# --- credentials -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffCredentials:
    user: auth.StaffEntry
    licences: list[StateLicence]
    deas: list[DeaRegistration]
    npi: str | None
    boards: list[BoardCertification]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def _credentialed(db: Session, actor: Principal, user_id: int) -> auth.StaffEntry:
    user = auth.staff_user(db, actor, user_id)
    if user.role not in CREDENTIALED_ROLES:
        raise NotFound("Credentials are kept for prescribers and nurses of your clinic.")
    return auth.StaffEntry(user.id, user.full_name, user.role, user.is_active)


def _staff_member(db: Session, clinic_id: int, user_id: int) -> auth.StaffEntry | None:
    return next((s for s in auth.staff_directory(db, clinic_id) if s.id == user_id), None)


CredentialT = TypeVar("CredentialT", StateLicence, DeaRegistration, BoardCertification)


def _rows(db: Session, model: type[CredentialT], user_id: int) -> list[CredentialT]:
    return list(db.execute(select(model).where(model.user_id == user_id).order_by(model.id)).scalars())


def _profile(db: Session, user_id: int) -> PrescriberProfile | None:
    return db.execute(
        select(PrescriberProfile).where(PrescriberProfile.user_id == user_id)
    ).scalar_one_or_none()


def _problems(
    user: auth.StaffEntry,
    lic: list[StateLicence],
    deas: list[DeaRegistration],
    npi: str | None,
    today: dt.date,
) -> list[str]:
    found = []
    if not lic:
        found.append("No state licence on record.")
    elif all(x.expires_on < today for x in lic):
        found.append("Every state licence has expired.")
    if user.role == Role.prescriber.value:
        if not deas:
            found.append("No DEA registration on record.")
        elif all(x.expires_on < today for x in deas):
            found.append("Every DEA registration has expired.")
        if not npi:
            found.append("No NPI on record.")
    return found


def credentials_of(
    db: Session, actor: Principal, user_id: int, today: dt.date | None = None
) -> StaffCredentials:
    user = _credentialed(db, actor, user_id)
    lic = _rows(db, StateLicence, user.id)
    deas = _rows(db, DeaRegistration, user.id)
    boards = _rows(db, BoardCertification, user.id)
    profile = _profile(db, user.id)
    npi = profile.npi if profile else None
    return StaffCredentials(
        user, lic, deas, npi, boards, _problems(user, lic, deas, npi, _today(db, actor, today))
    )


def staff_credentials(db: Session, actor: Principal, today: dt.date | None = None) -> list[StaffCredentials]:
    on = _today(db, actor, today)
    staff = [
        s for s in auth.staff_directory(db, actor.clinic_id) if s.role in CREDENTIALED_ROLES and s.is_active
    ]
    return [credentials_of(db, actor, s.id, on) for s in staff]


def prescriber_facts(db: Session, clinic_id: int, user_id: int) -> rules.Prescriber:
    user = _staff_member(db, clinic_id, user_id)
    if user is None:
        raise NotFound("No such prescriber in your clinic.")
    profile = _profile(db, user_id)
    return rules.Prescriber(
        user_id=user.id,
        name=user.full_name,
        role=user.role,
        licences=tuple(
            rules.Licence(x.state, x.number, x.expires_on) for x in _rows(db, StateLicence, user_id)
        ),
        deas=tuple(
            rules.DeaRegistration(x.state, x.number, x.expires_on)
            for x in _rows(db, DeaRegistration, user_id)
        ),
        npi=profile.npi if profile else None,
        boards=tuple(
            rules.BoardCertification(x.board, x.specialty, x.expires_on)
            for x in _rows(db, BoardCertification, user_id)
        ),
    )


def add_licence(db: Session, actor: Principal, user_id: int, data: LicenceIn) -> StateLicence:
    user = _credentialed(db, actor, user_id)
    taken = db.execute(
        select(StateLicence.id).where(
            StateLicence.user_id == user.id,
            StateLicence.state == data.state,
            StateLicence.number == data.number,
        )
    ).first()
    if taken:
        raise InvalidInput(errors={"number": f"Licence {data.number} ({data.state}) is already on record."})
    row = StateLicence(
        clinic_id=actor.clinic_id, user_id=user.id, recorded_by_id=actor.user_id, **data.model_dump()
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "credential.licence.add",
        "state_licence",
        resource_id=row.id,
        detail=f"user {user.id}: {data.state} {data.number} to {data.expires_on}",
    )
    return row


def add_dea(db: Session, actor: Principal, user_id: int, data: DeaIn) -> DeaRegistration:
    user = _credentialed(db, actor, user_id)
    if user.role != Role.prescriber.value:
        raise InvalidInput(errors={"number": "DEA registrations are recorded for prescribers."})
    result = check_dea(data.number, user.full_name)
    if not result.ok:
        raise InvalidInput(errors={"number": result.error or "Not a valid DEA number."})
    rule = dea_rule()
    reason = (data.name_mismatch_reason or "").strip() or None
    if result.name_letter_matches is False and (
        reason is None or len(reason) < rule.mismatch_reason_min_chars
    ):
        surname = last_name(user.full_name) or "?"
        raise InvalidInput(
            errors={
                "name_mismatch_reason": (
                    f"The second letter {result.number[1]} is not the first letter of {surname}: "
                    f"{rule.second_letter.source} [{rule.second_letter.tag}]. Check the number, or say why "
                    "it differs (e.g. a name change since registration)."
                )
            }
        )
    if db.execute(
        select(DeaRegistration.id).where(
            DeaRegistration.user_id == user.id, DeaRegistration.state == data.state
        )
    ).first():
        raise InvalidInput(
            errors={"state": f"A DEA registration in {data.state} is already on record: remove it first."}
        )
    row = DeaRegistration(
        clinic_id=actor.clinic_id,
        user_id=user.id,
        number=result.number,
        state=data.state,
        expires_on=data.expires_on,
        name_mismatch_reason=reason if result.name_letter_matches is False else None,
        recorded_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "credential.dea.add",
        "dea_registration",
        resource_id=row.id,
        detail=f"user {user.id}: {result.number} ({data.state}) to {data.expires_on}",
    )
    return row


def set_npi(db: Session, actor: Principal, user_id: int, data: NpiIn) -> PrescriberProfile:
    user = _credentialed(db, actor, user_id)
    npi = (data.npi or "").strip() or None
    if npi is not None:
        error = npi_error(npi)
        if error:
            raise InvalidInput(errors={"npi": error})
    profile = _profile(db, user.id)
    if profile is None:
        profile = PrescriberProfile(clinic_id=actor.clinic_id, user_id=user.id)
        db.add(profile)
    old = profile.npi
    profile.npi, profile.updated_by_id, profile.updated_at = npi, actor.user_id, utcnow()
    db.flush()
    audit.record(
        db,
        actor,
        "credential.npi.set",
        "prescriber_profile",
        resource_id=profile.id,
        detail=f"user {user.id}: {old or 'none'} -> {npi or 'none'}",
    )
    return profile


def add_board(db: Session, actor: Principal, user_id: int, data: BoardIn) -> BoardCertification:
    user = _credentialed(db, actor, user_id)
    row = BoardCertification(
        clinic_id=actor.clinic_id, user_id=user.id, recorded_by_id=actor.user_id, **data.model_dump()
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "credential.board.add",
        "board_certification",
        resource_id=row.id,
        detail=f"user {user.id}: {data.board} ({data.specialty})",
    )
    return row


CREDENTIAL_KINDS = ("licence", "dea", "board")


def _credential(
    db: Session, kind: str, credential_id: int
) -> StateLicence | DeaRegistration | BoardCertification | None:
    if kind == "licence":
        return db.get(StateLicence, credential_id)
    if kind == "dea":
        return db.get(DeaRegistration, credential_id)
    if kind == "board":
        return db.get(BoardCertification, credential_id)
    raise NotFound(f"No credential kind {kind!r}.")


def remove_credential(db: Session, actor: Principal, kind: str, credential_id: int) -> int:
    """Remove a credential entered in error or no longer held; returns the user's id."""
    row = _credential(db, kind, credential_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound("No such credential in your clinic.")
    user_id = int(row.user_id)
    db.delete(row)
    audit.record(
        db, actor, f"credential.{kind}.remove", kind, resource_id=credential_id, detail=f"user {user_id}"
    )
    return user_id


# --- scope of practice -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScopeLine:
    id: int | None
    role: str
    activity: str
    state: str
    allowed: bool
    origin: str  # clinic or knowledge
    source: str
    tag: str


def _scope_rows(db: Session, clinic_id: int) -> list[ScopeRule]:
    return list(
        db.execute(
            select(ScopeRule)
            .where(ScopeRule.clinic_id == clinic_id)
            .order_by(ScopeRule.role, ScopeRule.activity, ScopeRule.state)
        ).scalars()
    )


def _scope_facts(db: Session, clinic_id: int) -> list[rules.ScopeRule]:
    return [rules.ScopeRule(r.role, r.activity, r.state, r.allowed) for r in _scope_rows(db, clinic_id)]


def scope_table(db: Session, clinic_id: int) -> list[ScopeLine]:
    own = [
        ScopeLine(r.id, r.role, r.activity, r.state, r.allowed, "clinic", "the clinic's own rule", "design")
        for r in _scope_rows(db, clinic_id)
    ]
    defaults = [
        ScopeLine(
            None,
            d.role,
            d.activity,
            rules.ALL_STATES,
            d.allowed,
            "knowledge",
            d.sourced.source,
            d.sourced.tag,
        )
        for d in scope_defaults()
    ]
    return own + defaults


def save_scope_rule(db: Session, actor: Principal, data: ScopeRuleIn) -> ScopeRule:
    row = db.execute(
        select(ScopeRule).where(
            ScopeRule.clinic_id == actor.clinic_id,
            ScopeRule.role == data.role.value,
            ScopeRule.activity == data.activity.value,
            ScopeRule.state == data.state,
        )
    ).scalar_one_or_none()
    if row is None:
        row = ScopeRule(
            clinic_id=actor.clinic_id, role=data.role.value, activity=data.activity.value, state=data.state
        )
        db.add(row)
    row.allowed, row.recorded_by_id, row.recorded_at = data.allowed, actor.user_id, utcnow()
    db.flush()
    audit.record(
        db,
        actor,
        "prescribing.scope.save",
        "scope_rule",
        resource_id=row.id,
        detail=f"{data.role.value} {data.activity.value} {data.state}: "
        + ("allowed" if data.allowed else "not allowed"),
    )
    return row


def remove_scope_rule(db: Session, actor: Principal, rule_id: int) -> None:
    row = db.get(ScopeRule, rule_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound("No such scope rule in your clinic.")
    detail = f"{row.role} {row.activity} {row.state}"
    db.delete(row)
    audit.record(db, actor, "prescribing.scope.remove", "scope_rule", resource_id=rule_id, detail=detail)


@dataclass(frozen=True)
class Permit:
    allowed: bool
    reasons: tuple[str, ...]


def may(db: Session, clinic_id: int, user_id: int, activity: str, state: str, on: dt.date) -> Permit:
    """Whether a staff member may prescribe (or administer) in ``state`` on ``on``: the clinic's
    scope rules and a valid licence there; to prescribe also a valid DEA registration there.
    For other features (a session's administration, the ledger) as well as for prescriptions."""
    user = _staff_member(db, clinic_id, user_id)
    if user is None:
        return Permit(False, ("No such staff member in this clinic.",))
    allowed, source, tag = rules.scope_allows(
        _scope_facts(db, clinic_id), scope_defaults(), user.role, activity, state
    )
    reasons = [] if allowed else [f"A {user.role} may not {activity} in {state} ({source} [{tag}])."]
    facts = prescriber_facts(db, clinic_id, user_id)
    if not any(x.state == state and x.expires_on >= on for x in facts.licences):
        reasons.append(f"No valid licence in {state}.")
    if activity == rules.PRESCRIBE and not any(x.state == state and x.expires_on >= on for x in facts.deas):
        reasons.append(f"No valid DEA registration in {state}.")
    return Permit(not reasons, tuple(reasons))


@dataclass(frozen=True)
class Expiring:
    user_id: int
    name: str
    kind: str
    detail: str
    expires_on: dt.date
    expired: bool


def expiring_credentials(db: Session, actor: Principal, today: dt.date | None = None) -> list[Expiring]:
    """Licences, DEA registrations and board certifications of active staff that have expired or
    expire within the clinic's alert window; plus prescribers missing a credential."""
    on = _today(db, actor, today)
    window = settings_in_force(db, actor.clinic_id).credential_alert_days
    limit = on + dt.timedelta(days=window)
    found: list[Expiring] = []
    for c in staff_credentials(db, actor, on):
        name = c.user.full_name
        items: list[tuple[str, str, dt.date | None]] = [
            *(("licence", f"{x.state} {x.number}", x.expires_on) for x in c.licences),
            *(("DEA", f"{x.state} {x.number}", x.expires_on) for x in c.deas),
            *(("board", f"{x.board} ({x.specialty})", x.expires_on) for x in c.boards),
        ]
        for kind, detail, expires_on in items:
            if expires_on is not None and expires_on <= limit:
                found.append(Expiring(c.user.id, name, kind, detail, expires_on, expires_on < on))
        for problem in c.problems:
            if problem.startswith("No "):
                found.append(Expiring(c.user.id, name, "missing", problem, on, True))
    return sorted(found, key=lambda e: (e.expires_on, e.name))


def flexibility_alert(db: Session, clinic_id: int, today: dt.date) -> str | None:
    s = settings_in_force(db, clinic_id)
    left = (s.flexibility_end - today).days
    if left < 0:
        return (
            f"The DEA telemedicine flexibility ended on {s.flexibility_end.isoformat()}: telehealth "
            "prescriptions need an in-person evaluation on record."
        )
    if left <= s.flexibility_alert_days:
        return (
            f"The DEA telemedicine flexibility ends on {s.flexibility_end.isoformat()}, in {left} days "
            f"({SPEC_BY_KEY['flexibility_end'].source()}). Arrange in-person evaluations for "
            "telehealth patients."
        )
    return None


# --- encounters and PDMP checks ----------------------------------------------------------------


def record_encounter(
    db: Session, actor: Principal, patient_id: int, data: EncounterIn, today: dt.date | None = None
) -> Encounter:
    patient = patients.visible_patient(db, actor, patient_id, "prescribing.encounter.add")
    if data.occurred_on > _today(db, actor, today):
        raise InvalidInput(errors={"occurred_on": "An encounter is recorded after it happened."})
    row = Encounter(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        prescriber_id=actor.user_id,
        kind=data.kind.value,
        modality=data.modality.value,
        occurred_on=data.occurred_on,
        patient_state=data.patient_state or patient.state,
        note=data.note,
        recorded_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "prescribing.encounter.add",
        "encounter",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{row.kind} {row.modality} on {row.occurred_on} in {row.patient_state or '?'}",
    )
    return row


def _encounters(db: Session, clinic_id: int, patient_id: int) -> list[Encounter]:
    return list(
        db.execute(
            select(Encounter)
            .where(Encounter.clinic_id == clinic_id, Encounter.patient_id == patient_id)
            .order_by(Encounter.occurred_on.desc(), Encounter.id.desc())
        ).scalars()
    )


def record_pdmp(
    db: Session, actor: Principal, patient_id: int, data: PdmpIn, today: dt.date | None = None
) -> PdmpCheck:
    patients.visible_patient(db, actor, patient_id, "prescribing.pdmp.add")
    if data.checked_on > _today(db, actor, today):
        raise InvalidInput(errors={"checked_on": "A PDMP check is recorded after it was made."})
    row = PdmpCheck(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        checked_on=data.checked_on,
        state=data.state,
        findings=data.findings.value,
        note=data.note,
        checked_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "prescribing.pdmp.add",
        "pdmp_check",
        resource_id=row.id,
        patient_id=patient_id,
        detail=f"{data.state} on {data.checked_on}: {data.findings.value}",
    )
    return row


def _pdmp_checks(db: Session, clinic_id: int, patient_id: int) -> list[PdmpCheck]:
    return list(
        db.execute(
            select(PdmpCheck)
            .where(PdmpCheck.clinic_id == clinic_id, PdmpCheck.patient_id == patient_id)
            .order_by(PdmpCheck.checked_on.desc(), PdmpCheck.id.desc())
        ).scalars()
    )


# --- what a patient has had --------------------------------------------------------------------


@dataclass(frozen=True)
class SessionDose:
    session_id: int
    plan_id: int
    on: dt.date
    route: str
    drug: str
    mg: float


@dataclass(frozen=True)
class SupplyDose:
    prescription_id: int
    product_name: str
    route: str
    issued_on: dt.date
    end: dt.date
    mg_per_day: float
    mg_to_date: float
    cancelled: bool


def session_doses(
    db: Session, actor: Principal, patient_id: int, since: dt.date | None = None
) -> list[SessionDose]:
    """Ketamine (and esketamine) given in each started session, from the session record."""
    zone = zoneinfo.ZoneInfo(auth.clinic(db, actor.clinic_id).time_zone)
    found = []
    for given in session_administration.ketamine_given(db, actor, patient_id):
        on = given.started_at.astimezone(zone).date()
        if since is not None and on < since:
            continue
        if given.total_mg > 0:
            found.append(
                SessionDose(given.session_id, given.plan_id, on, given.route, given.drug, given.total_mg)
            )
    return sorted(found, key=lambda d: (d.on, d.session_id))


def _cancellations(db: Session, ids: Sequence[int]) -> dict[int, PrescriptionCancellation]:
    if not ids:
        return {}
    rows = db.execute(
        select(PrescriptionCancellation).where(PrescriptionCancellation.prescription_id.in_(ids))
    )
    return {c.prescription_id: c for c in rows.scalars()}


def _signed(db: Session, clinic_id: int, patient_id: int) -> list[Prescription]:
    return list(
        db.execute(
            select(Prescription)
            .where(
                Prescription.clinic_id == clinic_id,
                Prescription.patient_id == patient_id,
                Prescription.signed_at.is_not(None),
            )
            .order_by(Prescription.issued_on, Prescription.id)
        ).scalars()
    )


def _supply(rx: Prescription, cancellation: PrescriptionCancellation | None) -> rules.Supply:
    return rules.Supply(
        id=rx.id,
        product_key=rx.product_key,
        route=rx.route,
        issued_on=rx.issued_on,
        days_supply=rx.days_supply,
        refills=rx.refills,
        mg_per_day=round(rx.quantity * rx.strength_mg / rx.days_supply, 2),
        ended_on=cancellation.cancelled_on if cancellation else None,
    )


def supplies(db: Session, clinic_id: int, patient_id: int, exclude: int | None = None) -> list[rules.Supply]:
    signed = [rx for rx in _signed(db, clinic_id, patient_id) if rx.id != exclude]
    cancelled = _cancellations(db, [rx.id for rx in signed])
    return [_supply(rx, cancelled.get(rx.id)) for rx in signed]


def supply_doses(
    db: Session, actor: Principal, patient_id: int, today: dt.date | None = None
) -> list[SupplyDose]:
    """Each signed take-home prescription as a supply, and what was taken of it up to today at its
    prescribed mg/day (an estimate: KetaCare does not see the pharmacy's fills)."""
    on = _today(db, actor, today)
    signed = _signed(db, actor.clinic_id, patient_id)
    cancelled = _cancellations(db, [rx.id for rx in signed])
    found = []
    for rx in signed:
        s = _supply(rx, cancelled.get(rx.id))
        taken = rules.supply_mg_between(s, s.issued_on, on + dt.timedelta(days=1))
        found.append(
            SupplyDose(
                rx.id,
                rx.product_name,
                rx.route,
                rx.issued_on,
                s.end,
                s.mg_per_day,
                round(taken, 1),
                rx.id in cancelled,
            )
        )
    return found


def patients_with_supplies(db: Session, actor: Principal, since: dt.date) -> list[int]:
    """Patients of the clinic with a signed prescription whose supply may reach ``since`` or later."""
    rows = db.execute(
        select(
            Prescription.patient_id, Prescription.issued_on, Prescription.days_supply, Prescription.refills
        ).where(Prescription.clinic_id == actor.clinic_id, Prescription.signed_at.is_not(None))
    ).all()
    return sorted(
        {
            pid
            for pid, issued, days, refills in rows
            if issued + dt.timedelta(days=days * (1 + refills)) >= since
        }
    )


# --- prescriptions -----------------------------------------------------------------------------


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
