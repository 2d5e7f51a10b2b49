"""The confirmation email goes through the SMTP server in the settings (a local aiosmtpd here)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

aiosmtpd = pytest.importorskip("aiosmtpd")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.handlers import Sink  # noqa: E402

from tests.directory.test_front_door_web import visitor  # noqa: E402


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


def test_booking_sends_a_confirmation_with_reference_and_cancel_link(
    app: Any, browser: Any, front: Any
) -> None:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        app.state.settings = app.state.settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_from": "clinic@ketacare.test"}
        )
        b = visitor(browser)
        booked = b.post(
            "/clinics/test/book",
            {"slot_id": str(front["slots"][0].id), "name": "Mail Person", "email": "mail@example.org"},
        )
        assert booked.status_code == 200
    finally:
        controller.stop()
    assert len(inbox.messages) == 1
    envelope = inbox.messages[0]
    assert envelope.rcpt_tos == ["mail@example.org"]
    body = envelope.content.decode()
    assert "Reference: KC-" in body and "/bookings/cancel/" in body
    assert "Mail Person" not in body.split("Subject")[0]


def test_no_smtp_host_means_no_email_and_the_booking_still_stands(browser: Any, front: Any) -> None:
    b = visitor(browser)
    booked = b.post(
        "/clinics/test/book",
        {"slot_id": str(front["slots"][1].id), "name": "No Mail", "email": "n@example.org"},
    )
    assert booked.status_code == 200 and "Consultation requested" in booked.text
