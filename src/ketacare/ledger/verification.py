"""The chain check, on request and as the public directory's compliance signal (counts and
yes/no only, never a patient)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ketacare import clinic_time, integrity
from ketacare.audit import service as audit
from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.ledger import chain, rules
from ketacare.ledger.common import check_permission
from ketacare.ledger.models import (
    Inventory,
    LedgerHead,
    LossReport,
    Registration,
)

# --- verification -----------------------------------------------------------------------------


def verify(db: Session, actor: Principal) -> chain.VerifyResult:
    check_permission(actor, Permission.ledger_read)
    result = chain.verify_clinic(db, actor.clinic_id, integrity.configured_anchors())
    audit.record(
        db,
        actor,
        "ledger.verify",
        "ledger",
        outcome="success" if result.ok else "failure",
        detail=result.problem or f"{result.checked} entries intact",
    )
    return result


# --- what the public directory may say (counts and yes/no only, never a patient) ---------------


@dataclass(frozen=True)
class ComplianceSignal:
    compliant: bool | None  # None: the clinic keeps no ledger in KetaCare
    detail: str


# The public directory asks on every search: re-walk a clinic's chain only when its head moved
# (or at most every VERIFY_TTL_S seconds, so a change made behind the ledger's back shows).
_VERIFIED: dict[int, tuple[str, float, bool]] = {}
VERIFY_TTL_S = 600.0


def _verified(db: Session, clinic_id: int) -> bool:
    head = db.get(LedgerHead, clinic_id)
    key = f"{head.seq}:{head.last_hash}" if head is not None else "none"
    cached = _VERIFIED.get(clinic_id)
    if cached is not None and cached[0] == key and time.monotonic() - cached[1] < VERIFY_TTL_S:
        return cached[2]
    ok = chain.verify_clinic(db, clinic_id).ok
    _VERIFIED[clinic_id] = (key, time.monotonic(), ok)
    return ok


def compliance_signal(db: Session, clinic_id: int) -> ComplianceSignal:
    """Whether the clinic's controlled-substance records are in order: an initial inventory for
    every registration, no biennial inventory late, the ledger's chain and balances intact, no
    expired lot left in stock uncounted, no theft/loss notice or Form 106 overdue."""
    regs = list(db.execute(select(Registration).where(Registration.clinic_id == clinic_id)).scalars())
    if not regs:
        return ComplianceSignal(None, "no controlled-substance ledger kept on KetaCare")
    today = clinic_time.today(db, clinic_id)
    problems: list[str] = []
    for reg in regs:
        taken = [
            (k, t)
            for k, t in db.execute(
                select(Inventory.kind, Inventory.taken_at)
                .where(Inventory.registration_id == reg.id)
                .order_by(Inventory.taken_at)
            ).all()
        ]
        if not any(k == "initial" for k, _ in taken):
            problems.append("an initial inventory is missing")
        elif rules.biennial_due(taken[-1][1].date(), today).status == "late":
            problems.append("a biennial inventory is late")
    if not _verified(db, clinic_id):
        problems.append("the ledger does not verify")
    overdue = db.execute(
        select(func.count(LossReport.id)).where(
            LossReport.clinic_id == clinic_id,
            LossReport.reportable.is_(True),
            ((LossReport.notice_sent_at.is_(None)) & (LossReport.notice_due_on < today))
            | ((LossReport.form106_filed_at.is_(None)) & (LossReport.form106_due_on < today)),
        )
    ).scalar_one()
    if overdue:
        problems.append("a theft or loss report is overdue")
    if problems:
        return ComplianceSignal(False, "; ".join(sorted(set(problems))))
    return ComplianceSignal(True, "inventories on time, ledger verifies, no overdue theft/loss report")
