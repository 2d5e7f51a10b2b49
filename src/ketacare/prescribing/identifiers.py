"""DEA registration numbers and NPIs: format and check-digit rules. Pure functions.

A number that passes is well-formed, not proven registered: only DEA and NPPES can say that.
Sources and tags are in ``knowledge/data/prescribing.toml`` ([dea_number], [npi]).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ketacare.knowledge.prescribing import dea_rule, npi_rule

DEA_PATTERN = re.compile(r"^[A-Z][A-Z9][0-9]{7}$")
NPI_PATTERN = re.compile(r"^[0-9]{10}$")
# Degrees and titles that follow a name ("Dana Okafor MD"): not the last name.
NAME_SUFFIXES = frozenset(
    {
        "MD",
        "DO",
        "NP",
        "PA",
        "PA-C",
        "RN",
        "APRN",
        "DNP",
        "FNP",
        "FNP-C",
        "CRNA",
        "PHD",
        "MBBS",
        "JR",
        "SR",
        "II",
        "III",
    }
)


@dataclass(frozen=True)
class DeaCheck:
    number: str
    ok: bool
    error: str | None  # why the number is refused
    registrant_type: str | None  # practitioner or mid-level practitioner
    name_letter_matches: bool | None  # None when the second character is the business "9"


def dea_check_digit(six_digits: str) -> int:
    """(d1 + d3 + d5) + 2 x (d2 + d4 + d6); the check digit is the last digit of the sum."""
    d = [int(c) for c in six_digits]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10


def last_name(full_name: str) -> str:
    """The last name in "Dana Okafor MD" or "Okafor, Dana": degrees and suffixes dropped."""
    text = full_name.strip()
    if "," in text:
        head, tail = text.split(",", 1)
        tail_words = [w.strip(".").upper() for w in tail.split()]
        if tail_words and all(w in NAME_SUFFIXES for w in tail_words):
            text = head
        else:
            return head.strip()
    words = [w for w in text.split() if w.strip(".").upper() not in NAME_SUFFIXES]
    return words[-1] if words else ""


def check_dea(number: str, full_name: str) -> DeaCheck:
    """Validate a prescriber's DEA number against the format, the registrant-type letter, the
    check digit and the prescriber's last name."""
    rule = dea_rule()
    value = number.strip().upper()
    if not DEA_PATTERN.match(value):
        return DeaCheck(
            value, False, "A DEA number is two letters and seven digits, e.g. AB1234563.", None, None
        )
    first, second, digits = value[0], value[1], value[2:]
    if first in rule.practitioner_letters:
        registrant = "practitioner"
    elif first in rule.mid_level_letters:
        registrant = "mid-level practitioner"
    else:
        allowed = "/".join(rule.practitioner_letters + rule.mid_level_letters)
        return DeaCheck(
            value,
            False,
            f"The first letter {first} is not a prescriber's registrant type ({allowed}).",
            None,
            None,
        )
    expected = dea_check_digit(digits[:6])
    if int(digits[6]) != expected:
        return DeaCheck(
            value,
            False,
            f"The check digit does not match: the last digit should be {expected} ({rule.check_rule}).",
            registrant,
            None,
        )
    if second == rule.business_second_char:
        return DeaCheck(value, True, None, registrant, None)
    surname = last_name(full_name)
    matches = bool(surname) and surname[0].upper() == second
    return DeaCheck(value, True, None, registrant, matches)


def npi_check_digit(nine_digits: str) -> int:
    """Luhn over the nine digits as if prefixed by 80840: double every second digit from the
    right (the rightmost of the nine included), add the digits, add 24 for the prefix."""
    rule = npi_rule()
    total = rule.prefix_constant
    for i, c in enumerate(reversed(nine_digits)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10


def npi_error(number: str) -> str | None:
    """Why an NPI is refused, or None when it is well formed with a matching check digit."""
    rule = npi_rule()
    value = number.strip()
    if not NPI_PATTERN.match(value):
        return "An NPI is ten digits."
    if value[0] not in rule.first_digits:
        return f"An NPI begins with {' or '.join(rule.first_digits)}."
    expected = npi_check_digit(value[:9])
    if int(value[9]) != expected:
        return (
            f"The check digit does not match: the last digit should be {expected} "
            "(Luhn with the 80840 prefix)."
        )
    return None
