"""Settings from environment variables ``KETACARE_*`` (pydantic-settings).

Settings are read when the application or command starts, never at import time, so tests
and commands can build their own.
"""

from __future__ import annotations

import enum
import ipaddress
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
    # Password attempts (NIST SP 800-63B section 5.2.2): after login_max_failures_per_user
    # consecutive failures an account's next attempt waits login_first_delay_seconds, doubling
    # after each further failure up to login_max_delay_seconds (a delay, never a lock);
    # an address that logged in to the account in the last login_known_address_days days
    # only counts its own failures, so an attacker elsewhere cannot keep the user out. After
    # login_max_consecutive_failures (NIST: at most 100) only known addresses are checked until a
    # success or a password reset. An address gets login_max_failures_per_address failures (any
    # account) per login_throttle_window_minutes.
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_first_delay_seconds: int = Field(default=30, ge=1, le=3600)
    login_max_delay_seconds: int = Field(default=900, ge=1, le=24 * 3600)
    login_max_consecutive_failures: int = Field(default=100, ge=1, le=100)
    login_known_address_days: int = Field(default=30, ge=0, le=3650)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_throttle_window_minutes: int = Field(default=15, ge=1)
    # Proxies (IP addresses or networks, comma-separated) whose X-Forwarded-For is believed; a
    # request from any other peer is known by the peer's own address.
    trusted_proxies: str = ""
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
    # The audit and ledger chains: the HMAC key (else the file <data dir>/chain_key; required in
    # production and demo, a public development key otherwise), the append-only file of signed
    # checkpoints (empty = <data dir>/chain-anchors.jsonl), and how often a commit anchors the
    # chains it extended (0 = only at verify and backup; unset = 300 s, off in tests).
    chain_key: str = ""
    anchor_file: Path | None = None
    anchor_interval_seconds: int | None = Field(default=None, ge=0)

    @field_validator("clinic_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                try:
                    ipaddress.ip_network(item.strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"not an IP address or network: {item.strip()!r}") from exc
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(item.strip(), strict=False)
            for item in self.trusted_proxies.split(",")
            if item.strip()
        )

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
    def resolved_anchor_file(self) -> Path:
        return (self.anchor_file or self.data_dir / "chain-anchors.jsonl").resolve()

    @property
    def resolved_anchor_interval_seconds(self) -> int:
        if self.anchor_interval_seconds is not None:
            return self.anchor_interval_seconds
        return 0 if self.environment == Environment.test else 300

    @property
    def chain_key_file(self) -> Path:
        return (self.data_dir / "chain_key").resolve()

    @property
    def server_lock_file(self) -> Path:
        """Held by a running server; restore on SQLite refuses while it is."""
        return (self.data_dir / "ketacare-server.lock").resolve()

    def resolved_chain_key(self) -> bytes:
        """The chain key; raises ChainKeyMissing where one is required but absent or too short."""
        from ketacare.integrity import DEVELOPMENT_KEY, MIN_KEY_LENGTH, ChainKeyMissing

        value = self.chain_key.strip()
        if not value and self.chain_key_file.exists():
            value = self.chain_key_file.read_text().strip()
        if value:
            if len(value) < MIN_KEY_LENGTH:
                raise ChainKeyMissing(f"the chain key is shorter than {MIN_KEY_LENGTH} characters")
            return value.encode()
        if self.environment in (Environment.test, Environment.development):
            return DEVELOPMENT_KEY
        raise ChainKeyMissing(
            "KETACARE_CHAIN_KEY is not set and there is no key file at "
            f"{self.chain_key_file}; create one (python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))' > chain_key; chmod 600 chain_key) and keep a copy "
            "away from the database and its backups"
        )

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
