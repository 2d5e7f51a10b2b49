from __future__ import annotations

import pytest
from pydantic import ValidationError

from ketacare.config import Environment, load_settings


@pytest.mark.parametrize("secret", ["", "changeme", "short"])
def test_production_refuses_missing_or_placeholder_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="KETACARE_SECRET_KEY"):
        load_settings(environment=Environment.production, secret_key=secret)


def test_development_accepts_any_secret() -> None:
    assert load_settings(environment=Environment.development, secret_key="dev").idle_timeout_minutes == 15


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KETACARE_ENVIRONMENT", "test")
    monkeypatch.setenv("KETACARE_IDLE_TIMEOUT_MINUTES", "5")
    monkeypatch.setenv("KETACARE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    settings = load_settings()
    assert settings.idle_timeout_minutes == 5 and not settings.is_sqlite


def test_bad_values_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        load_settings(environment=Environment.test, clinic_time_zone="Mars/Olympus")
    with pytest.raises(ValidationError):
        load_settings(environment=Environment.test, idle_timeout_minutes=0)
