"""What every prescribing use-case shares: a prescription's states and the clinic's today."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.auth.principal import Principal

DRAFT, SIGNED, CANCELLED = "draft", "signed", "cancelled"


def _today(db: Session, actor: Principal, today: dt.date | None) -> dt.date:
    return today if today is not None else clinic_time.today(db, actor.clinic_id)
