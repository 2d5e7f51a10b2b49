"""Consultation confirmations by email through the SMTP server in the settings (off when
``smtp_host`` is empty). Sent after the request's transaction has committed; a failure is
logged without the address and never undoes the booking, whose page already shows the
reference and the cancel link."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from ketacare.config import Settings

log = logging.getLogger("ketacare.directory")


def confirmation(
    settings: Settings, to: str, reference: str, clinic: str, when: str, cancel_url: str
) -> None:
    if not settings.smtp_host:
        return
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = f"Consultation request {reference} at {clinic}"
    message.set_content(
        f"Your consultation request is booked.\n\n"
        f"Reference: {reference}\nClinic: {clinic}\nTime: {when}\n\n"
        f"To cancel, open this link before the consultation starts:\n{cancel_url}\n\n"
        "The clinic will contact you to confirm. KetaCare is decision support, not medical advice.\n"
    )
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("confirmation email for %s not sent: %s", reference, type(exc).__name__)
