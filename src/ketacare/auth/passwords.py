"""Argon2id password hashing with rehash-on-login, and the rules for a new password.

The rules follow NIST SP 800-63B (sections 5.1.1.2 and 3.1.1.2 of revision 4): length, not
composition; every printable character and Unicode allowed (compared after NFKC
normalisation); and a check against common and breached passwords and the person's own
names, done offline by the zxcvbn estimator, whose dictionaries hold the most common passwords
from public breaches.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

_hasher = PasswordHasher()  # argon2-cffi defaults follow RFC 9106's second recommended profile

# (design) NIST SP 800-63B asks for at least 8 characters and to allow at least 64.
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
# (design) zxcvbn scores 0-4; 3 means about 10^8 to 10^10 guesses ("safely unguessable"), so
# common, breached and name-based passwords score lower and are refused.
MIN_ZXCVBN_SCORE = 3


def normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    return _hasher.hash(normalise(password))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_password(password_hash: str, password: str) -> bool:
    """Compared after NFKC normalisation; a password set before normalisation (stored as typed)
    still matches."""
    normal = normalise(password)
    return _verify(password_hash, normal) or (normal != password and _verify(password_hash, password))


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def _context_words(context: Sequence[str | None]) -> list[str]:
    words: list[str] = []
    for item in context:
        if not item:
            continue
        text = item.casefold()
        words.append(text)
        words.extend(part for part in text.replace("@", " ").replace(".", " ").split() if len(part) >= 3)
    return words


def password_problem(password: str, context: Sequence[str | None] = ()) -> str | None:
    """Why a new password is refused, or None. ``context``: the person's username, full name
    and e-mail address, which the password may not be built from."""
    normal = normalise(password)
    if len(normal) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(normal) > MAX_PASSWORD_LENGTH:
        return f"Use at most {MAX_PASSWORD_LENGTH} characters."
    if any(unicodedata.category(ch) == "Cc" for ch in normal):
        return "Use letters, digits, spaces and symbols only (no control characters)."
    words = _context_words(context)
    folded = normal.casefold()
    if any(len(word) >= 3 and word in folded for word in words):
        return "Do not use your name, username or e-mail address in your password."
    found = zxcvbn(normal[:100], user_inputs=words)
    if int(found["score"]) < MIN_ZXCVBN_SCORE:
        warning = str(found["feedback"].get("warning") or "This password is too easy to guess.")
        return f"{warning.rstrip('.')}. Choose a longer phrase of unusual words."
    return None
