"""Password-attempt rules, table-driven (NIST SP 800-63B section 5.2.2: rate limiting, at most
100 consecutive failures, waiting periods that increase; no lock an attacker can hold), and
the client address behind trusted proxies."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest

from ketacare.auth import throttle
from ketacare.web.forwarded import client_address

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
LIMITS = throttle.Limits(
    free_failures=5,
    first_delay_seconds=30,
    max_delay_seconds=900,
    max_consecutive_failures=100,
    address_failures=20,
    window=dt.timedelta(minutes=15),
    known_address_days=30,
)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0), (4, 0), (5, 30), (6, 60), (7, 120), (9, 480), (10, 900), (40, 900), (99, 900)],
)
def test_delay_doubles_after_the_free_failures_up_to_the_ceiling(failures: int, delay: int) -> None:
    assert throttle.delay_seconds(failures, LIMITS) == delay


def _history(failures: int, seconds_ago: float, known: bool = False, by_address: int = 0) -> throttle.History:
    return throttle.History(failures, NOW - dt.timedelta(seconds=seconds_ago), known, by_address)


@pytest.mark.parametrize(
    ("history", "reason", "retry"),
    [
        (_history(4, 1), None, None),  # free attempts
        (_history(5, 10), "delay", 20),  # 30 s after the 5th failure
        (_history(5, 31), None, None),  # waited long enough: checked
        (_history(8, 100), "delay", 140),  # 240 s after the 8th
        (_history(99, 10_000), None, None),  # delays, never a lock, below NIST's 100
        (_history(100, 10_000), "ceiling", None),  # NIST SP 800-63B: no more than 100
        (_history(100, 10_000, known=True), None, None),  # a known address still gets in
        (_history(0, 1, by_address=20), "address", 900),  # the address's own limit
        (_history(0, 1, by_address=19), None, None),
    ],
)
def test_refusal(history: throttle.History, reason: str | None, retry: int | None) -> None:
    found = throttle.refusal(history, LIMITS, NOW)
    assert (found.reason if found else None) == reason
    assert (found.retry_after_seconds if found else None) == retry
    if found:
        assert "too many" in throttle.message(found).lower()


PROXY = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "networks", "expected"),
    [
        ("203.0.113.5", None, PROXY, "203.0.113.5"),
        ("203.0.113.5", "198.51.100.1", PROXY, "203.0.113.5"),  # not a trusted peer: header ignored
        ("203.0.113.5", "198.51.100.1", [], "203.0.113.5"),  # no proxies configured
        ("10.0.0.2", "198.51.100.1", PROXY, "198.51.100.1"),
        ("10.0.0.2", "1.2.3.4, 198.51.100.1", PROXY, "198.51.100.1"),  # a forged first entry
        ("10.0.0.2", "198.51.100.1, 10.0.0.3", PROXY, "198.51.100.1"),  # two proxies
        ("10.0.0.2", "not-an-address", PROXY, "10.0.0.2"),
        ("10.0.0.2", None, PROXY, "10.0.0.2"),
        ("::1", "2001:db8::7", PROXY, "2001:db8::7"),
        (None, "198.51.100.1", PROXY, "unknown"),
    ],
)
def test_client_address_behind_trusted_proxies(
    peer: str | None, forwarded: str | None, networks: list[ipaddress.IPv4Network], expected: str
) -> None:
    assert client_address(peer, forwarded, networks) == expected
