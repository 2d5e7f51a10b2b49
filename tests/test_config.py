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


STRONG = "s" * 40


def test_production_requires_a_chain_key_kept_outside_the_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ketacare.app import create_app
    from ketacare.integrity import DEVELOPMENT_KEY, ChainKeyMissing

    production = load_settings(environment=Environment.production, secret_key=STRONG, data_dir=tmp_path)
    with pytest.raises(ChainKeyMissing, match="KETACARE_CHAIN_KEY"):
        production.resolved_chain_key()
    with pytest.raises(ChainKeyMissing):
        create_app(production)  # the app refuses to start without it
    with pytest.raises(ChainKeyMissing, match="shorter"):
        load_settings(
            environment=Environment.production, secret_key=STRONG, chain_key="short"
        ).resolved_chain_key()
    (tmp_path / "chain_key").write_text("f" * 48 + "\n")
    assert production.resolved_chain_key() == b"f" * 48  # the key file in the data directory
    keyed = load_settings(environment=Environment.production, secret_key=STRONG, chain_key="k" * 40)
    assert keyed.resolved_chain_key() == b"k" * 40  # the variable wins
    for environment in (Environment.test, Environment.development):
        derived = load_settings(environment=environment, data_dir=tmp_path / "none")
        assert derived.resolved_chain_key() == DEVELOPMENT_KEY
    demo = load_settings(environment=Environment.demo, secret_key=STRONG, data_dir=tmp_path / "none")
    with pytest.raises(ChainKeyMissing):
        demo.resolved_chain_key()  # `ketacare demo` writes a key file; a bare demo has none


def test_anchor_settings_default_to_the_data_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(environment=Environment.development, data_dir=tmp_path)
    assert settings.resolved_anchor_file == (tmp_path / "chain-anchors.jsonl").resolve()
    assert settings.resolved_anchor_interval_seconds == 300
    assert load_settings(environment=Environment.test).resolved_anchor_interval_seconds == 0
