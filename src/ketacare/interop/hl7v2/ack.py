"""HL7 v2.5.1 original-mode acknowledgements: ACK (MSA-1 AA) and NAK (AE or AR with an ERR).

The reply mirrors the sender: its field separator and encoding characters, its control id in
MSA-2, its sending application and facility as the receiver (MSH-5/6). When the sender's own
encoding characters are unusable the reply falls back to ``|^~\\&`` and drops any of those
characters from what it echoes. Pure functions: the caller passes the clock and the new id.
"""

from __future__ import annotations

import datetime as dt

from ketacare.interop.hl7v2.parse import (
    CHARACTER_SETS,
    DEFAULT_ENCODING_CHARACTERS,
    DEFAULT_FIELD_SEPARATOR,
    ERROR_TEXT,
    MessageHeader,
    ParseError,
)

ACK_VERSION = "2.5.1"
APPLICATION = "KETACARE"
ACCEPT = "AA"
ERROR = "AE"
REJECT = "AR"
MAX_TEXT_LENGTH = 250  # keep ERR-8 short enough for a monitor's log line


def hl7_timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S+0000")


def escape(text: str, field_separator: str, encoding_characters: str) -> str:
    """Text made safe for one HL7 field (escape sequences \\F\\ \\S\\ \\R\\ \\E\\ \\T\\), on one line."""
    component, repetition, escape_char, subcomponent = list(encoding_characters[:4])
    text = " ".join(text.split())  # no CR, LF or tabs inside a field
    text = text.replace(escape_char, f"{escape_char}E{escape_char}")
    for char, code in (
        (field_separator, "F"),
        (component, "S"),
        (repetition, "R"),
        (subcomponent, "T"),
    ):
        text = text.replace(char, f"{escape_char}{code}{escape_char}")
    return text


def _separators(header: MessageHeader | None) -> tuple[str, str, bool]:
    if header is not None and header.encoding_valid:
        # A v2.7+ fifth (truncation) character has no meaning in a 2.5.1 reply: mirror four.
        return header.field_separator, header.encoding_characters[:4], True
    return DEFAULT_FIELD_SEPARATOR, DEFAULT_ENCODING_CHARACTERS, False


def acknowledgement(
    header: MessageHeader | None,
    ack_code: str,
    *,
    control_id: str,
    now: dt.datetime,
    error: ParseError | None = None,
) -> str:
    """The ACK for ``header``'s message: segments joined and ended by CR.

    ``header`` None (no MSH could be read) gives a NAK with an empty MSA-2.
    """
    if ack_code not in (ACCEPT, ERROR, REJECT):
        raise ValueError(f"unknown acknowledgement code {ack_code!r}")
    fs, enc, mirrored = _separators(header)
    component = enc[0]
    unsafe = set(fs + enc + "\r\n")

    def echo(raw: str) -> str:
        # The sender's fields are already escaped in its encoding; echo them as they are when
        # we mirror that encoding, otherwise keep only characters that cannot break ours.
        return raw if mirrored else "".join(c for c in raw if c not in unsafe)

    event = ""
    character_set = ""
    if header is not None:
        parts = header.message_type.split(component) if mirrored else []
        candidate = parts[1] if len(parts) > 1 else ""
        event = candidate if candidate.isalnum() and len(candidate) == 3 else ""
        character_set = header.character_set if header.character_set.upper() in CHARACTER_SETS else ""
    message_type = f"ACK{component}{event}{component}ACK" if event else "ACK"
    msh = [
        "MSH",
        enc,
        echo(header.receiving_application) if header and header.receiving_application else APPLICATION,
        echo(header.receiving_facility) if header else "",
        echo(header.sending_application) if header else "",
        echo(header.sending_facility) if header else "",
        hl7_timestamp(now),
        "",
        message_type,
        escape(control_id, fs, enc),
        "P",
        ACK_VERSION,
    ]
    if character_set:
        msh += ["", "", "", "", "", character_set]
    original_id = echo(header.control_id) if header else ""
    segments = [fs.join(msh), fs.join(["MSA", ack_code, original_id])]
    if error is not None:
        segments.append(_err(error, fs, enc))
    return "\r".join(segments) + "\r"


def _err(error: ParseError, fs: str, enc: str) -> str:
    component = enc[0]
    location = ""
    if error.segment:
        parts = [error.segment, str(error.sequence)]
        if error.field is not None:
            parts.append(str(error.field))
        location = component.join(parts)
    code = component.join([str(error.code), escape(ERROR_TEXT.get(error.code, ""), fs, enc), "HL70357"])
    text = escape(error.message[:MAX_TEXT_LENGTH], fs, enc)
    # ERR-1 (deprecated) empty, ERR-2 location, ERR-3 code, ERR-4 severity E (table 0516), ERR-8.
    return fs.join(["ERR", "", location, code, "E", "", "", "", text])


def accept(header: MessageHeader, *, control_id: str, now: dt.datetime) -> str:
    return acknowledgement(header, ACCEPT, control_id=control_id, now=now)


def refuse(header: MessageHeader | None, error: ParseError, *, control_id: str, now: dt.datetime) -> str:
    """A NAK: AR when the message as a whole was rejected, AE when its content is in error."""
    return acknowledgement(header, error.ack_code, control_id=control_id, now=now, error=error)
