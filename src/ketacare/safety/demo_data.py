"""Demo long-term safety, through the safety use-cases as the nurse would: liver tests (one
normal, one at four times the upper limit of ALT, which places the demo's one hold) and bladder
(LUTS) screens, for patients the sessions demo gave a past series.

Everything here is demo content (design): the values look realistic but describe no one.
"""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.knowledge.safety import safety_rules
from ketacare.safety import service
from ketacare.safety.schemas import BladderScreenIn, LiverTestIn
from ketacare.screening.demo_data import DemoClinic

ALT_ULN = 40.0  # (design) a typical laboratory's upper limit, for the demo only
AST_ULN = 35.0  # (design)


def seed(db: Session, rng: random.Random, clinic: DemoClinic, patient_ids: list[int]) -> None:
    own = random.Random(f"{rng.getstate()!r}/safety/{clinic.slug}")
    user = auth.user_by_username(db, f"nurse.{clinic.slug}")
    nurse = Principal(
        user_id=user.id, username=user.username, role=Role.nurse, clinic_id=clinic.id, client_addr="demo"
    )
    today = clinic_time.today(db, clinic.id)
    # The sessions demo gives its past series to patients from index 12 on (see its pool).
    treated = patient_ids[12:14] if len(patient_ids) > 13 else patient_ids[-2:]
    no = {key: "no" for key, _ in safety_rules().bladder_items}
    normal, held = treated
    service.record_liver_test(
        db,
        nurse,
        normal,
        LiverTestIn(
            drawn_on=today - dt.timedelta(days=own.randrange(20, 40)),
            alt_u_per_l=float(own.randrange(18, 35)),
            alt_uln_u_per_l=ALT_ULN,
            ast_u_per_l=float(own.randrange(15, 30)),
            ast_uln_u_per_l=AST_ULN,
            lab="Demo Reference Laboratory",
        ),
    )
    service.record_bladder_screen(
        db, nurse, normal, BladderScreenIn(screened_on=today - dt.timedelta(days=3), answers=no)
    )
    service.record_liver_test(
        db,
        nurse,
        held,
        LiverTestIn(
            drawn_on=today - dt.timedelta(days=2),
            alt_u_per_l=4 * ALT_ULN,
            alt_uln_u_per_l=ALT_ULN,
            ast_u_per_l=2 * AST_ULN,
            ast_uln_u_per_l=AST_ULN,
            lab="Demo Reference Laboratory",
        ),
    )
    service.record_bladder_screen(
        db, nurse, held, BladderScreenIn(screened_on=today - dt.timedelta(days=2), answers=no)
    )
