"""Prescribers' and nurses' credentials: state licences, DEA registrations (with the check digit
and the name letter), NPI and board certifications; what each lacks, what expires soon, and the
DEA telemedicine flexibility alert. Never commits; every change is audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.db import utcnow
from ketacare.errors import InvalidInput, NotFound
from ketacare.knowledge.prescribing import dea_rule
from ketacare.prescribing import rules
from ketacare.prescribing.common import _today
from ketacare.prescribing.identifiers import check_dea, last_name, npi_error
from ketacare.prescribing.models import (
    BoardCertification,
    DeaRegistration,
    PrescriberProfile,
    StateLicence,
)
from ketacare.prescribing.rx_settings import settings_in_force
from ketacare.prescribing.schemas import (
    BoardIn,
    DeaIn,
    LicenceIn,
    NpiIn,
)
from ketacare.prescribing.settings import SPEC_BY_KEY

CREDENTIALED_ROLES = (Role.prescriber.value, Role.nurse.value)


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


# --- what expires, and the DEA telemedicine flexibility ---------------------------------------


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
