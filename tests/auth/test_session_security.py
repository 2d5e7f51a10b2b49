"""Idle logout, CSRF protection and log-in throttling."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from ketacare.auth.models import LoginSession
from ketacare.db import utcnow
from ketacare.patients.models import Patient
from tests.helpers import PASSWORD, audit_entries, count, is_problem


def _age_sessions(db, minutes: int) -> None:  # type: ignore[no-untyped-def]
    db.execute(update(LoginSession).values(last_seen_at=utcnow() - dt.timedelta(minutes=minutes)))
    db.commit()


def test_idle_session_is_logged_out(as_role, db) -> None:
    nurse = as_role("nurse")
    _age_sessions(db, 16)
    page = nurse.get("/patients", follow_redirects=False)
    assert page.status_code == 303
    assert "reason=idle" in page.headers["location"]
    login_page = nurse.get(page.headers["location"])
    assert "without activity" in login_page.text
    assert audit_entries(db, "auth.idle_logout")
    db.expire_all()
    assert db.query(LoginSession).one().end_reason == "idle"


def test_idle_htmx_request_redirects_the_whole_page(as_role, db) -> None:
    nurse = as_role("nurse")
    _age_sessions(db, 16)
    fragment = nurse.get(
        "/patients",
        params={"q": "x"},
        headers={"HX-Request": "true", "Referer": "http://testserver/patients"},
    )
    assert fragment.status_code == 401
    assert fragment.headers["HX-Redirect"].startswith("/login?next=/patients")


def test_expired_form_post_returns_to_the_page_not_the_post_address(as_role, world, db) -> None:
    nurse = as_role("nurse")
    _age_sessions(db, 16)
    page = f"http://testserver/patients/{world.patient_a.id}"
    response = nurse.post(
        f"/patients/{world.patient_a.id}/allergies",
        {"substance": "Latex"},
        headers={"Referer": page},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"/login?next=/patients/{world.patient_a.id}&")


def test_idle_session_api_gets_401_problem(as_role, db) -> None:
    nurse = as_role("nurse")
    _age_sessions(db, 16)
    assert is_problem(nurse.api("GET", "/api/v1/patients"), 401)


def test_recent_activity_keeps_session(as_role, db) -> None:
    nurse = as_role("nurse")
    _age_sessions(db, 14)
    assert nurse.get("/patients", follow_redirects=False).status_code == 200


def test_form_without_csrf_token_is_rejected_and_changes_nothing(as_role, db) -> None:
    nurse = as_role("nurse")
    before = count(db, Patient)
    response = nurse.client.post(
        "/patients",
        data={"given_name": "Eve", "family_name": "Forger", "date_of_birth": "1990-01-01", "sex": "female"},
    )
    assert response.status_code == 403
    assert "security token" in response.text
    assert count(db, Patient) == before


def test_forged_csrf_token_is_rejected(as_role, db) -> None:
    nurse = as_role("nurse")
    nurse.csrf = "f" * 64
    response = nurse.post(
        "/patients",
        {"given_name": "Eve", "family_name": "Forger", "date_of_birth": "1990-01-01", "sex": "female"},
    )
    assert response.status_code == 403
    assert count(db, Patient, Patient.family_name == "Forger") == 0


def test_api_json_write_needs_csrf_header_with_cookie_session(as_role, db) -> None:
    nurse = as_role("nurse")
    body = {"given_name": "Eve", "family_name": "Forger", "date_of_birth": "1990-01-01", "sex": "female"}
    no_header = nurse.client.post("/api/v1/patients", json=body)
    assert is_problem(no_header, 403)
    assert nurse.api("POST", "/api/v1/patients", json=body).status_code == 201


def test_login_form_itself_needs_csrf(browser, world) -> None:
    b = browser()
    response = b.client.post("/login", data={"username": "nurse.t", "password": PASSWORD})
    assert response.status_code == 403


def test_throttled_after_five_failures_even_with_right_password(browser, world, db) -> None:
    b = browser()
    b.refresh_csrf()
    for _ in range(5):
        assert b.post("/login", {"username": "nurse.t", "password": "not the password"}).status_code == 401
    blocked = b.post("/login", {"username": "nurse.t", "password": PASSWORD})
    assert blocked.status_code == 429
    assert "Too many" in blocked.text
    assert count(db, LoginSession) == 0
    assert audit_entries(db, "auth.login", outcome="throttled")


def test_throttle_is_per_user(browser, world) -> None:
    b = browser()
    b.refresh_csrf()
    for _ in range(5):
        b.post("/login", {"username": "nurse.t", "password": "not the password"})
    b.login(world.users["researcher"])
    assert b.get("/").status_code == 200
