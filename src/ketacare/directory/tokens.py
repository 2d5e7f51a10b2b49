"""Signed, expiring tokens (HMAC-SHA256 with the secret key): the cancel link and the
assessment carried from the result page to the booking form without storing it.

A token is ``base64url(payload JSON).base64url(HMAC)``; the payload holds a purpose and an
expiry, so a cancel token cannot be replayed as an assessment and an old one is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


class BadToken(ValueError):
    """The token was altered, is for another purpose, or has expired."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret_key: str, purpose: str, body: str) -> str:
    key = hashlib.sha256(f"ketacare-directory:{purpose}:{secret_key}".encode()).digest()
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def sign(secret_key: str, purpose: str, data: dict[str, Any], expires_at: float) -> str:
    body = _b64(json.dumps({"d": data, "exp": int(expires_at)}, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret_key, purpose, body)}"


def verify(secret_key: str, purpose: str, token: str, now: float) -> dict[str, Any]:
    body, _, mac = token.partition(".")
    if not body or not mac or not hmac.compare_digest(mac.encode(), _mac(secret_key, purpose, body).encode()):
        raise BadToken()
    try:
        payload = json.loads(_unb64(body))
    except ValueError as exc:
        raise BadToken() from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("d"), dict):
        raise BadToken()
    if not isinstance(payload.get("exp"), int | float):
        raise BadToken()
    if now > float(payload["exp"]):
        raise BadToken(expired=True)
    data: dict[str, Any] = payload["d"]
    return data
