"""Demo screening: referrals and screening answers for some patients, so eligibility shows every state.

(design) The answers are chosen for a realistic-looking demo, never facts about anyone.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Protocol

from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.knowledge.contraindications import contraindications, prior_therapy_rule, risk_factors
from ketacare.screening.models import ScreeningAssessment


class DemoClinic(Protocol):
    id: int
    slug: str


ALL_NO = {c.key: "no" for c in contraindications()} | {r.key: "no" for r in risk_factors()}


def screening_row(patient_id: int, today: dt.date, **answers: str) -> ScreeningAssessment:
    prior = [k for k, _ in prior_therapy_rule().options[:3]]
    return ScreeningAssessment(
        patient_id=patient_id,
        referred_on=today - dt.timedelta(days=14),
        referral_source="Dr. Referrer, primary care",
        answers={**ALL_NO, **answers},
        prior_therapies=prior,
        sbp_mmhg=128.0,
        dbp_mmhg=82.0,
        ecg_on=today - dt.timedelta(days=10),
        lft_on=today - dt.timedelta(days=10),
    )


def seed(db: Session, rng: random.Random, clinic: DemoClinic, patient_ids: list[int]) -> None:
    today = clinic_time.today(db, clinic.id)
    # Patient A: clear to plan; B: a relative caution to override; a few others in other states.
    rows = [screening_row(patient_ids[0], today), screening_row(patient_ids[1], today, raised_iop="yes")]
    if len(patient_ids) > 4:
        rows.append(screening_row(patient_ids[2], today, active_psychosis="yes"))
        rows.append(screening_row(patient_ids[3], today, cardiovascular_risk="yes"))
    for pid in patient_ids[4:12]:
        rows.append(screening_row(pid, today, substance_misuse=rng.choice(["no", "no", "yes"])))
    db.add_all(rows)
    db.flush()
