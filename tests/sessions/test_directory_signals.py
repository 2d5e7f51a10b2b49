"""What sessions tell the public directory (issue 4): sessions delivered, adverse-event reporting."""

from __future__ import annotations

from typing import Any

from ketacare.directory import service as directory
from tests.directory.conftest import make_profile
from tests.sessions.conftest import discharged


def test_sessions_delivered_feed_the_vetting_score(as_role: Any, browser: Any, world: Any, db: Any) -> None:
    make_profile(db, world.clinic.id)
    db.commit()
    before = next(c for c in directory.all_clinics(db) if c.clinic_id == world.clinic.id)
    item = next(
        i for c in before.score.criteria for i in c.items if i.label == "Sessions delivered on KetaCare"
    )
    assert item.earned is None and before.sessions_delivered == 0
    discharged(as_role, world, db)
    after = next(c for c in directory.all_clinics(db) if c.clinic_id == world.clinic.id)
    item = next(
        i for c in after.score.criteria for i in c.items if i.label == "Sessions delivered on KetaCare"
    )
    assert after.sessions_delivered == 1 and item.earned is not None and item.earned > 0
    ae = next(
        i for c in after.score.criteria for i in c.items if i.label == "Adverse-event reporting on record"
    )
    assert ae.earned is None and "too few to judge" in ae.detail  # 1 session: not judged yet
    page = browser().get(f"/clinics/{world.clinic.slug}")
    assert "1 completed session(s)" in page.text
