"""Scope of practice: the clinic's own rules over the knowledge defaults, and whether a staff
member may prescribe or administer in a state on a day. Never commits; every change is audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import NotFound
from ketacare.knowledge.prescribing import scope_defaults
from ketacare.prescribing import rules
from ketacare.prescribing.credentials import _staff_member, prescriber_facts
from ketacare.prescribing.models import (
    ScopeRule,
)
from ketacare.prescribing.schemas import (
    ScopeRuleIn,
)


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
