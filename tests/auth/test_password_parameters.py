"""The production password hasher: Argon2id with RFC 9106's second recommended profile (the
suite itself hashes with cheap parameters, see tests/conftest.py)."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.profiles import RFC_9106_LOW_MEMORY


def test_production_hashes_use_argon2id_with_the_rfc_9106_low_memory_profile(
    _cheap_password_hashes: PasswordHasher,
) -> None:
    real = _cheap_password_hashes
    assert real.type is Type.ID
    assert real.time_cost >= RFC_9106_LOW_MEMORY.time_cost
    assert real.memory_cost >= RFC_9106_LOW_MEMORY.memory_cost
    assert real.hash("a long enough passphrase").startswith("$argon2id$v=19$m=65536,t=3")
