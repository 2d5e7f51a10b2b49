"""The clinic's alarm-settings page: every rule with its value, default, origin and source; a
changed threshold decides the next reading; bad values and non-admins change nothing."""

from __future__ import annotations

import datetime as dt
import html

from sqlalchemy import update

from ketacare.auth.models import LoginSession
from ketacare.db import utcnow
from ketacare.knowledge.sessions import session_rules
from ketacare.sessions.models import Alarm, AlarmSetting
from tests.helpers import audit_entries, count
from tests.sessions.conftest import running


def page_form(**changes: str) -> dict[str, str]:
    """The form as the page fills it: every rule at its default, switched on."""
    knowledge = session_rules()
    form = {a.key: f"{a.value:g}" for a in knowledge.alarms}
    form |= {f"{a.key}__on": "on" for a in knowledge.alarms}
    form["escalation_s"] = str(knowledge.escalation_s)
    form.update(changes)
    return {k: v for k, v in form.items() if v != "off"}


def test_page_lists_every_rule_with_its_source(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    page = as_role("admin").get("/alarm-settings")
    assert page.status_code == 200
    knowledge = session_rules()
    for rule in knowledge.alarms:
        assert f'id="rule-{rule.key}"' in page.text
        assert html.escape(rule.sourced.source) in page.text
    assert page.text.count("clinic default (design), not a guideline value") == sum(
        a.sourced.tag == "design" for a in knowledge.alarms
    )
    assert 'name="escalation_s"' in page.text and f'value="{knowledge.escalation_s}"' in page.text
    assert 'data-own="yes"' not in page.text


def test_changed_threshold_decides_the_next_reading(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse, admin = as_role("nurse"), as_role("admin")
    sid = running(nurse, world, booked)
    before = nurse.api(
        "POST", f"/api/v1/sessions/{sid}/vitals", json={"readings": [{"kind": "sbp", "value": 165}]}
    )
    assert "sbp_high" not in {a["rule"] for a in before.json()["alarms"]}

    saved = admin.post("/alarm-settings", page_form(sbp_high="160"), follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == "/alarm-settings?saved=1"
    # only the changed rule becomes the clinic's own
    rows = db.query(AlarmSetting).filter_by(clinic_id=world.clinic.id).all()
    assert [(r.rule_key, r.value, r.enabled) for r in rows] == [("sbp_high", 160.0, True)]
    page = admin.get("/alarm-settings").text
    assert page.count('data-own="yes"') == 1 and 'value="160"' in page
    entry = audit_entries(db, "session.alarm_settings")[-1]
    assert "sbp_high=160" in entry.detail

    after = nurse.api(
        "POST", f"/api/v1/sessions/{sid}/vitals", json={"readings": [{"kind": "sbp", "value": 165}]}
    )
    raised = [a for a in after.json()["alarms"] if a["rule"] == "sbp_high"]
    assert raised and raised[0]["threshold"] == 160.0


def test_switched_off_rule_stays_quiet(as_role, world, db, booked) -> None:  # type: ignore[no-untyped-def]
    nurse, admin = as_role("nurse"), as_role("admin")
    sid = running(nurse, world, booked)
    assert (
        admin.post("/alarm-settings", page_form(sbp_rise__on="off"), follow_redirects=False).status_code
        == 303
    )
    got = nurse.api(
        "POST", f"/api/v1/sessions/{sid}/vitals", json={"readings": [{"kind": "sbp", "value": 165}]}
    )
    assert got.json()["alarms"] == []
    assert count(db, Alarm, Alarm.session_id == sid) == 0


def test_out_of_range_value_changes_nothing(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    refused = admin.post("/alarm-settings", page_form(sbp_high="500", hr_high="120"))
    assert refused.status_code == 422
    assert 'id="e-sbp_high"' in refused.text and "Choose a value between" in refused.text
    assert 'value="500"' in refused.text  # what was typed is kept
    not_a_number = admin.post("/alarm-settings", page_form(spo2_low="ninety", escalation_s="5"))
    assert not_a_number.status_code == 422
    assert 'id="e-spo2_low"' in not_a_number.text and 'id="e-escalation_s"' in not_a_number.text
    assert count(db, AlarmSetting) == 0
    assert not audit_entries(db, "session.alarm_settings")


def test_unchanged_form_saves_nothing_and_escalation_alone_saves(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    same = admin.post("/alarm-settings", page_form(), follow_redirects=False)
    assert same.headers["location"] == "/alarm-settings?saved=unchanged"
    assert count(db, AlarmSetting) == 0
    assert (
        admin.post("/alarm-settings", page_form(escalation_s="60"), follow_redirects=False).status_code == 303
    )
    rows = db.query(AlarmSetting).all()
    assert [(r.rule_key, r.value) for r in rows] == [("escalation_s", 60.0)]
    assert admin.api("GET", "/api/v1/alarm-settings").json()["escalation_s"] == 60


def test_only_clinic_admins(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    for role in ("nurse", "prescriber", "researcher", "patient_a"):
        client = as_role(role)
        assert client.get("/alarm-settings").status_code == 403
        assert client.post("/alarm-settings", page_form(sbp_high="160")).status_code == 403
    assert count(db, AlarmSetting) == 0


def test_saving_needs_a_recent_password(as_role, world, db) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    db.execute(update(LoginSession).values(reauthenticated_at=utcnow() - dt.timedelta(minutes=30)))
    db.commit()
    assert admin.get("/alarm-settings").status_code == 200  # reading is not sensitive
    refused = admin.post("/alarm-settings", page_form(sbp_high="160"), follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"].startswith("/reauth")
    assert count(db, AlarmSetting) == 0
