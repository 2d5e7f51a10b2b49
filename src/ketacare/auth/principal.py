"""Who is acting: a logged-in user or a scoped API token, with their clinic and address."""

from __future__ import annotations

from dataclasses import dataclass, field

from ketacare.auth.roles import Role


@dataclass(frozen=True)
class Principal:
    user_id: int | None
    username: str
    role: Role | None  # None for an API token, which acts through its scopes
    clinic_id: int
    client_addr: str | None = None
    patient_id: int | None = None
    login_session_id: int | None = None
    api_token_id: int | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def via_token(self) -> bool:
        return self.api_token_id is not None
