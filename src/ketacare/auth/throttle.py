"""Rules for password attempts (pure: no I/O, no clock), after NIST SP 800-63B section 5.2.2.

Failed attempts are rate-limited, never turned into a lock an attacker can hold: an account's
consecutive failures earn a delay that doubles up to a ceiling, and an address
that logged in to the account before only answers for its own failures, so guessing from
elsewhere cannot keep the account's owner out. NIST's ceiling of 100 consecutive failures
closes the account to unknown addresses only. One address may fail a fixed number of times per
window, whatever the accounts.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    free_failures: int  # consecutive failures before the first delay
    first_delay_seconds: int
    max_delay_seconds: int
    max_consecutive_failures: int  # NIST SP 800-63B 5.2.2: no more than 100
    address_failures: int  # per address and window, any account
    window: dt.timedelta
    known_address_days: int  # a success from an address this recent makes it known


@dataclass(frozen=True)
class History:
    """What the attempts table says about one account seen from one address."""

    consecutive_failures: int  # since the account's last success; from this address if known
    last_failure_at: dt.datetime | None
    known_address: bool  # this address logged in to the account recently
    address_failures: int  # failures from this address in the window, any account


@dataclass(frozen=True)
class Refusal:
    reason: str  # "delay", "address" or "ceiling"
    retry_after_seconds: int | None


def delay_seconds(consecutive_failures: int, limits: Limits) -> int:
    """The wait after the last failure before the next attempt is checked: none for the first
    ``free_failures``, then ``first_delay_seconds``, doubling after each further failure up to
    ``max_delay_seconds``."""
    extra = consecutive_failures - limits.free_failures
    if extra < 0:
        return 0
    if extra >= limits.max_delay_seconds.bit_length():
        return limits.max_delay_seconds
    return min(limits.first_delay_seconds << extra, limits.max_delay_seconds)


def refusal(history: History, limits: Limits, now: dt.datetime) -> Refusal | None:
    """Why this attempt is not checked now, or None when it may be."""
    if history.address_failures >= limits.address_failures:
        return Refusal("address", int(limits.window.total_seconds()))
    if not history.known_address and history.consecutive_failures >= limits.max_consecutive_failures:
        return Refusal("ceiling", None)
    wait = delay_seconds(history.consecutive_failures, limits)
    if wait and history.last_failure_at is not None:
        remaining = (history.last_failure_at + dt.timedelta(seconds=wait) - now).total_seconds()
        if remaining > 0:
            return Refusal("delay", max(1, math.ceil(remaining)))
    return None


def message(found: Refusal) -> str:
    if found.reason == "address":
        minutes = max(1, (found.retry_after_seconds or 60) // 60)
        return (
            "Too many failed log-in attempts from your network. Wait "
            f"{minutes} minutes and try again, or ask your clinic admin for help."
        )
    if found.reason == "ceiling":
        return (
            "This account has had too many failed log-in attempts from unfamiliar places. Log in "
            "from a device you have used before, or ask your clinic admin to reset your password."
        )
    seconds = found.retry_after_seconds or 1
    wait = f"{seconds} seconds" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"
    return f"Too many failed attempts for this account. Wait {wait} and try again."
