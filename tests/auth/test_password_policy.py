"""New passwords as NIST SP 800-63B asks: length not composition, any printable or Unicode
character, and no common, breached or own-name passwords (zxcvbn, offline)."""

from __future__ import annotations

import pytest

from ketacare.auth.passwords import hash_password, password_problem, verify_password

CONTEXT = ["jsmith.north", "Jane Smith", "jane.smith@clinic.example"]


@pytest.mark.parametrize(
    ("password", "refused_with"),
    [
        ("short1!", "at least 12"),  # length (design default 12; NIST: at least 8)
        ("password1234", "common"),  # breached/common list
        ("Password123!", "common"),  # composition does not help
        ("iloveyou2024", "common"),
        ("qwertyuiop12", "common"),
        ("jsmith.north-2026", "your name"),  # the username
        ("JaneSmith harbour", "your name"),  # the person's name, any case
        ("smith lighthouse meadow", "your name"),
        ("with\x00control chars", "control"),
        ("x" * 257, "at most 256"),
    ],
)
def test_refused(password: str, refused_with: str) -> None:
    problem = password_problem(password, CONTEXT)
    assert problem is not None and refused_with in problem.lower().replace("commonly used", "common"), problem


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",  # spaces allowed, no composition rules
        "ketacare-demo-password",  # the demo's password stays acceptable
        "  leading and trailing spaces  ",
        "größe über straße möwe",  # Unicode
        "x7$Qz!pL@2vR#m9w" * 4,  # 64 characters allowed
    ],
)
def test_accepted(password: str) -> None:
    assert password_problem(password, CONTEXT) is None


def test_unicode_is_compared_after_nfkc_normalisation() -> None:
    stored = hash_password("ｃａｆé lighthouse")  # full-width letters
    assert verify_password(stored, "café lighthouse")
