"""Settings from environment variables ``KETACARE_*`` (pydantic-settings).

Settings are read when the application or command starts, never at import time, so tests
and commands can build their own.
"""

from __future__ import annotations

import enum
import zoneinfo
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "development"})
MIN_SECRET_LENGTH = 32


class Environment(enum.StrEnum):
    development = "development"
    demo = "demo"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KETACARE_", extra="ignore")

    environment: Environment = Environment.production
    data_dir: Path = Path("data")
    database_url: str = ""
    secret_key: str = ""
    idle_timeout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    reauth_window_minutes: int = Field(default=5, ge=1, le=60)
    clinic_time_zone: str = "America/New_York"
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_throttle_window_minutes: int = Field(default=15, ge=1)
    secure_cookies: bool = False
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)
    # Request bodies: larger ones are refused with 413 before they are read. The FHIR NDJSON
    # import (API and upload page) takes files and has its own, larger limit.
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_import_body_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # Outgoing email (consultation confirmations); empty host = email off.
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "KetaCare <no-reply@ketacare.invalid>"
    # FHIR Bulk Data export: where the NDJSON files go (empty = <data dir>/fhir-exports), whether
    # this process runs the background worker (unset = yes, except in tests), how long finished
    # files are kept, how many lines a file holds before the next one starts, and when a running
    # job's worker is presumed dead (no heartbeat) so the job is queued again.
    fhir_export_dir: Path | None = None
    fhir_export_worker: bool | None = None
    fhir_export_retention_hours: int = Field(default=24, ge=1, le=24 * 90)
    fhir_export_file_max_lines: int = Field(default=100_000, ge=1)
    fhir_export_stale_after_seconds: int = Field(default=120, ge=5)

    @field_validator("clinic_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        weak = self.secret_key.strip().lower() in PLACEHOLDER_SECRETS or (
            len(self.secret_key) < MIN_SECRET_LENGTH
        )
        if weak and self.environment == Environment.production:
            raise ValueError(
                "KETACARE_SECRET_KEY is missing, a placeholder, or shorter than "
                f"{MIN_SECRET_LENGTH} characters; set a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ketacare.sqlite3').resolve()}"

    @property
    def resolved_fhir_export_dir(self) -> Path:
        return (self.fhir_export_dir or self.data_dir / "fhir-exports").resolve()

    @property
    def runs_fhir_export_worker(self) -> bool:
        if self.fhir_export_worker is not None:
            return self.fhir_export_worker
        return self.environment != Environment.test

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
