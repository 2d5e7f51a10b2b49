"""What every part of the controlled-substance ledger shares: the rules it reads, access and
time, the actual time of an event, the one function that builds a ledger entry, the initial-
inventory precondition and the clinic's write lock.

Each function runs in the caller's transaction and never commits. A movement is written inside
a savepoint, so a refusal leaves nothing behind even when the caller goes on. Locks are taken in
one order, always: the audit chain's head, then the clinic's ledger head, then lot rows. The
lot's balance changes only by a conditional UPDATE (``WHERE balance_ug >= :amount``) after the
ledger head is held; with ``CHECK (balance_ug >= 0)`` two people can never both draw the last
of a lot, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth import throttle
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.config import Settings
from ketacare.db import lock_keys, utcnow
from ketacare.errors import Forbidden, InvalidInput, PendingAudit
from ketacare.knowledge.ledger import LedgerRules, ledger_rules
from ketacare.ledger import chain, rules
from ketacare.ledger.models import (
    Inventory,
    LedgerEntry,
    Lot,
    Product,
    Registration,
)
from ketacare.ledger.rules import EntryKind

FUTURE_SLACK = dt.timedelta(minutes=1)


def knowledge() -> LedgerRules:
    return ledger_rules()


# --- access and time --------------------------------------------------------------------------


def permissions(actor: Principal) -> frozenset[Permission]:
    return auth.permissions_of(actor)


def now() -> dt.datetime:
    return utcnow()


def attempt_limits(settings: Settings) -> throttle.Limits:
    """The password-attempt limits a witness's password is checked under."""
    return auth.attempt_limits(settings)


def clinic_name(db: Session, clinic_id: int) -> str:
    return auth.clinic(db, clinic_id).name


def record_refusal(db: Session, actor: Principal, exc: InvalidInput) -> None:
    """A form shown again with its errors commits the request: write the audit entries the
    refusal carries (a witness password that did not match) as the error handler would."""
    for item in exc.audit:
        audit.record(
            db,
            actor,
            item.action,
            item.resource_type,
            resource_id=item.resource_id,
            patient_id=item.patient_id,
            outcome=item.outcome,
            detail=item.detail,
        )


def check_permission(actor: Principal, permission: Permission) -> None:
    if permission not in auth.permissions_of(actor):
        raise Forbidden(
            "Your role does not allow this.",
            audit=[PendingAudit("access.denied", "ledger", None, detail=f"needs {permission.value}")],
        )


# (design) A floor for back-dated entries: a typo like year 0001 would otherwise sit forever in an
# append-only table and break every page that converts it to clinic time.
EARLIEST_EVENT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _when(value: dt.datetime | None, field_name: str, now: dt.datetime) -> dt.datetime:
    """The actual time of the event (21 CFR 1304.21: the actual date), never in the future."""
    if value is None:
        return now
    if value > now + FUTURE_SLACK:
        raise InvalidInput(errors={field_name: "This cannot be in the future."})
    if value < EARLIEST_EVENT:
        raise InvalidInput(errors={field_name: "This is before any record KetaCare can hold (2000)."})
    return value.astimezone(dt.UTC)


def _person(db: Session, actor: Principal) -> str:
    if actor.user_id is None:
        raise Forbidden("Ledger entries are made by a person, not an API token.")
    user = auth.staff_user(db, actor, actor.user_id)
    return f"{user.full_name} ({user.username})"


# --- writing entries --------------------------------------------------------------------------


def _entry(
    actor: Principal,
    actor_name: str,
    kind: EntryKind,
    lot: Lot | None,
    registration_id: int,
    occurred_at: dt.datetime,
    **values: Any,
) -> LedgerEntry:
    return LedgerEntry(
        kind=kind.value,
        registration_id=registration_id,
        lot_id=lot.id if lot else None,
        occurred_at=occurred_at,
        actor_id=actor.user_id,
        actor_name=actor_name,
        change_ug=values.pop("change_ug", 0),
        reason=values.pop("reason", ""),
        detail=chain.dump_detail(values.pop("detail", {})),
        **values,
    )


def _has_initial_inventory(db: Session, registration_id: int) -> bool:
    query = select(Inventory.id).where(
        Inventory.registration_id == registration_id, Inventory.kind == "initial"
    )
    return db.execute(query).first() is not None


def _ensure_initial_inventory(db: Session, reg: Registration) -> None:
    if not _has_initial_inventory(db, reg.id):
        raise InvalidInput(
            errors={
                "registration_id": f"Take the initial inventory of {reg.location_name} first "
                "(record zero if nothing is on hand): 21 USC 827(a)(1)."
            }
        )


def _serialise(db: Session, clinic_id: int) -> None:
    """One clinic's ledger writes run one after another from their first read: a check such as
    "is this lot new?" or "is the initial inventory on record?" then holds until commit. (The
    audit chain's lock is taken only at commit, so it no longer orders them.)"""
    lock_keys(db, f"ledger:{clinic_id}")


def _amount_ug(amount: float, unit: str, prod: Product) -> int:
    return rules.amount_ug(amount, unit, prod.strength_mg_per_ml)
