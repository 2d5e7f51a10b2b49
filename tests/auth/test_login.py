from __future__ import annotations

from argon2 import PasswordHasher
from sqlalchemy import select

from ketacare.auth.models import LoginAttempt, LoginSession, User
from tests.helpers import PASSWORD, audit_entries, count


def test_wrong_password_shows_message_and_is_audited(browser, world, db) -> None:
    b = browser()
    b.refresh_csrf()
    response = b.post("/login", {"username": "nurse.t", "password": "wrong password!"})
    assert response.status_code == 401
    assert "username or password is not right" in response.text
    assert 'value="nurse.t"' in response.text  # what was typed is kept
    failures = audit_entries(db, "auth.login", outcome="failure")
    assert [e.username for e in failures] == ["nurse.t"]
    assert count(db, LoginSession) == 0
    assert count(db, LoginAttempt, LoginAttempt.succeeded.is_(False)) == 1


def test_unknown_user_fails_the_same_way(browser, world, db) -> None:
    b = browser()
    b.refresh_csrf()
    response = b.post("/login", {"username": "nobody", "password": PASSWORD})
    assert response.status_code == 401
    assert audit_entries(db, "auth.login", outcome="failure")[0].username == "nobody"


def test_nurse_logs_in_and_out(browser, world, db) -> None:
    b = browser("nurse", world)
    assert b.get("/").status_code == 200
    assert audit_entries(db, "auth.login", outcome="success")[0].username == "nurse.t"
    out = b.post("/logout", follow_redirects=False)
    assert out.status_code == 303
    after = b.get("/patients", follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/login")
    assert audit_entries(db, "auth.logout")


def test_deactivated_account_cannot_log_in(browser, world, db) -> None:
    world.users["nurse"].is_active = False
    db.commit()
    b = browser()
    b.refresh_csrf()
    assert b.post("/login", {"username": "nurse.t", "password": PASSWORD}).status_code == 401


def test_password_rehashed_when_parameters_change(browser, world, db) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    world.users["nurse"].password_hash = weak
    db.commit()
    browser("nurse", world)
    db.expire_all()
    stored = db.execute(select(User.password_hash).where(User.username == "nurse.t")).scalar_one()
    assert stored != weak and stored.startswith("$argon2id$")


def test_open_redirect_refused(browser, world) -> None:
    b = browser()
    b.refresh_csrf()
    response = b.post(
        "/login",
        {"username": "nurse.t", "password": PASSWORD, "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"
