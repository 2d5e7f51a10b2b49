"""Questionnaire links and reminders by e-mail through the SMTP server in the settings (off when
``smtp_host`` is empty). Sent after the transaction that issued the link has committed; a
failure is logged without the address and leaves the follow-up for the next run."""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

from ketacare.config import Settings

log = logging.getLogger("ketacare.outcomes")


@dataclass(frozen=True)
class Outgoing:
    follow_up_id: int
    to: str
    url: str
    reminder: bool


def send(settings: Settings, message: Outgoing) -> bool:
    if not settings.smtp_host:
        return False
    mail = EmailMessage()
    mail["From"] = settings.smtp_from
    mail["To"] = message.to
    mail["Subject"] = (
        "Reminder: your short pain questionnaire" if message.reminder else "Your short pain questionnaire"
    )
    mail.set_content(
        "Your clinic asks how your pain has been. The questionnaire takes about a minute and needs\n"
        f"no password:\n\n{message.url}\n\n"
        "The link works once and expires; if it has expired, ask your clinic for a new one.\n"
        "Answers you save as a draft are kept.\n"
    )
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
            smtp.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("follow-up %s e-mail not sent: %s", message.follow_up_id, type(exc).__name__)
        return False
    return True
