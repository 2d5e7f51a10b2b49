"""Real listener, real socket, real database, the real sessions service: what is acknowledged is
committed (seen from another connection), refusals store nothing, duplicates are stored once."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, select

from ketacare.db import make_engine, make_sessionmaker
from ketacare.interop.hl7v2 import monitor
from ketacare.interop.hl7v2.mllp import database_ingest
from ketacare.interop.hl7v2.monitor import MonitorConnection, send_messages
from ketacare.sessions.models import Alarm
from tests.interop.conftest import T0, Address, valid_message
from tests.interop.seed import counts, seed_running_sessions, stored_control_ids, vitals

NOTHING = {"vitals": 0, "messages": 0, "alarms": 0}


@pytest.fixture
def observer(scratch_engine: Engine) -> Iterator[Engine]:
    """A second engine on the same database: sees only what was committed."""
    engine = make_engine(scratch_engine.url.render_as_string(hide_password=False))
    yield engine
    engine.dispose()


@pytest.fixture
def address(scratch_engine: Engine, serve: Callable[..., Address]) -> Address:
    seed_running_sessions(scratch_engine, patients=2)
    return serve(database_ingest(make_sessionmaker(scratch_engine)))


def test_each_ack_comes_after_its_commit(address: Address, observer: Engine) -> None:
    points = monitor.trajectory(T0, 8, seed=3)
    messages = monitor.messages_for(
        points, clinic_slug="north", record_number="NSP-000001", device_id="BED-1"
    )
    with MonitorConnection(*address) as connection:
        for number, (control_id, text) in enumerate(messages, start=1):
            reply = connection.send(text)
            assert (reply.ack_code, reply.control_id) == ("AA", control_id)
            assert stored_control_ids(observer)[-1] == control_id  # already visible elsewhere
            assert counts(observer)["vitals"] == 7 * number
    stored = Counter((kind, at) for _, kind, _, at in vitals(observer))
    assert stored == Counter((kind, p.observed_at) for p in points for kind in p.values)


def test_loinc_coded_messages_are_stored_too(address: Address, observer: Engine) -> None:
    points = monitor.trajectory(T0, 2)
    messages = monitor.messages_for(
        points, clinic_slug="north", record_number="NSP-000002", device_id="BED-2", coding="loinc"
    )
    assert send_messages(*address, messages).acknowledged == [c for c, _ in messages]
    assert counts(observer)["vitals"] == 14


def test_a_resent_message_is_acknowledged_again_and_stored_once(address: Address, observer: Engine) -> None:
    message = valid_message("DUP-1")
    with MonitorConnection(*address) as connection:
        replies = [connection.send(message) for _ in range(3)]
    assert [r.ack_code for r in replies] == ["AA", "AA", "AA"]
    assert counts(observer) == {"vitals": 3, "messages": 1, "alarms": 0}


@pytest.mark.parametrize(
    ("message", "error_code", "words"),
    [
        (valid_message("U-1", record="NSP-999999"), "204", "No patient"),
        (valid_message("U-2", clinic="nowhere"), "204", "No clinic"),
        (valid_message("U-3").replace("|122|", "|400|"), "102", "plausible"),
    ],
)
def test_refused_messages_store_nothing(
    address: Address, observer: Engine, message: str, error_code: str, words: str
) -> None:
    with MonitorConnection(*address) as connection:
        reply = connection.send(message)
    assert (reply.ack_code, reply.error_code) == ("AE", error_code)
    assert words in reply.text
    assert counts(observer) == NOTHING


def test_a_systolic_spike_raises_an_alarm_committed_before_the_ack(
    address: Address, observer: Engine
) -> None:
    points = monitor.trajectory(T0, 3, sbp_spike_at=2)
    messages = monitor.messages_for(
        points, clinic_slug="north", record_number="NSP-000001", device_id="BED-1"
    )
    report = send_messages(*address, messages)
    assert len(report.acknowledged) == 3
    with observer.connect() as conn:
        alarms = conn.execute(select(Alarm.rule_key, Alarm.value, Alarm.observed_at)).all()
    assert ("sbp_high", 190.0, points[2].observed_at) in [tuple(a) for a in alarms]


def test_a_locked_database_gets_nak_207_and_the_resend_is_stored_once(
    scratch_engine: Engine, serve: Callable[..., Address], observer: Engine
) -> None:
    if scratch_engine.dialect.name != "sqlite":
        pytest.skip("the lock is taken with SQLite's BEGIN IMMEDIATE")
    seed_running_sessions(scratch_engine)
    impatient = make_engine(scratch_engine.url.render_as_string(), sqlite_busy_timeout_ms=100)
    address = serve(database_ingest(make_sessionmaker(impatient)))
    message = valid_message("LOCKED-1")
    blocker = sqlite3.connect(str(scratch_engine.url.database), isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: the database is "down"
        with MonitorConnection(*address) as connection:
            refused = connection.send(message)
            blocker.execute("ROLLBACK")
            accepted = connection.send(message)
    finally:
        blocker.close()
        impatient.dispose()
    assert (refused.ack_code, refused.error_code) == ("AE", "207")
    assert accepted.ack_code == "AA"
    assert counts(observer) == {"vitals": 3, "messages": 1, "alarms": 0}
