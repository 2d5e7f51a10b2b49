"""Questionnaire links and reminders go through the SMTP server in the settings (a local aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

import pytest

aiosmtpd = pytest.importorskip("aiosmtpd")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.handlers import Sink  # noqa: E402

from ketacare.outcomes import mail, service  # noqa: E402
from tests.conftest import SECRET_KEY  # noqa: E402
from tests.outcomes.conftest import series  # noqa: E402


class Inbox(Sink):
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_due_link_and_reminder_are_emailed(db, world, nurse, settings) -> None:  # type: ignore[no-untyped-def]
    world.patient_a.email = "ada@example.org"
    end = dt.date(2026, 3, 1)
    series(db, nurse, world.patient_a.id, end)
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
        day1 = dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC)
        for message in service.send_due(db, SECRET_KEY, "https://clinic.test", day1):
            assert mail.send(smtp, message)
        for message in service.send_due(db, SECRET_KEY, "https://clinic.test", day1 + dt.timedelta(days=3)):
            assert mail.send(smtp, message)
    finally:
        controller.stop()
    assert [m.rcpt_tos for m in inbox.messages] == [["ada@example.org"], ["ada@example.org"]]
    first, reminder = (m.content.decode() for m in inbox.messages)
    assert "https://clinic.test/q/" in first and "Subject: Your short pain questionnaire" in first
    assert "Subject: Reminder:" in reminder


def test_without_smtp_nothing_is_sent(settings) -> None:  # type: ignore[no-untyped-def]
    assert mail.send(settings, mail.Outgoing(1, "a@example.org", "https://x/q/t", False)) is False
