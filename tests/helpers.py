"""Small helpers shared by tests: counting rows and reading the audit trail."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from typing import Any

import pyotp
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ketacare.audit import service as audit_service
from ketacare.audit.models import AuditEntry

PASSWORD = "correct horse battery staple"

TEST_CLINIC_ZONE = "America/New_York"  # the world's clinic (tests/conftest.py) and the demo's


def clinic_today(zone: str = TEST_CLINIC_ZONE) -> dt.date:
    """Today as the app sees it: the clinic's date, not the machine's (which, in UTC, is already
    tomorrow for five hours every evening in New York)."""
    return dt.datetime.now(zoneinfo.ZoneInfo(zone)).date()


def count(db: Session, model: Any, *where: Any) -> int:
    return int(db.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def audit_entries(db: Session, action: str | None = None, **equal: Any) -> list[AuditEntry]:
    audit_service.append_pending(db)  # entries recorded in this open transaction join at commit
    db.expire_all()
    query = select(AuditEntry).order_by(AuditEntry.seq)
    if action:
        query = query.where(AuditEntry.action == action)
    for name, value in equal.items():
        query = query.where(getattr(AuditEntry, name) == value)
    return list(db.execute(query).scalars())


def is_problem(response: Any, status: int) -> bool:
    return (
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and response.json()["status"] == status
    )


def next_code(user: Any) -> str:
    """A TOTP code not used before. Each 30-second step's code is accepted once, and the server
    accepts the current step and one either side; so take the current step (never the previous
    one: it falls out of the window if the step changes before the server checks it), then the
    next, and wait for a new step when both are used."""
    totp = pyotp.TOTP(user.totp_secret)
    while True:
        now_step = int(time.time()) // totp.interval
        last = getattr(user, "_test_last_step", None)
        step = now_step if last is None else max(last + 1, now_step)
        if step <= now_step + 1:
            break
        time.sleep(totp.interval - time.time() % totp.interval + 0.05)
    user._test_last_step = step
    return totp.at(step * totp.interval)
