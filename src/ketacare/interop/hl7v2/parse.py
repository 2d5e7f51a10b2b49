"""One HL7 v2 ORU^R01 message -> one ``sessions.device.DeviceBatch``. Pure functions.

What is read (docs/hl7.md has the full profile):

- MSH-3 sending application -> device id (OBX-18 equipment instance wins when present);
  MSH-4 sending facility -> clinic slug (lower-cased); MSH-9 must be ORU^R01; MSH-10 control id
  (duplicates are ignored by it); MSH-11 must be P (production); MSH-12 a 2.3 to 2.9 version;
  MSH-18 character set (empty = UTF-8, ``8859/1`` = Latin-1, ``ASCII``).
- PID-3, first repetition, first component -> the patient's record number in that clinic.
- OBX: OBX-3 observation identifier (LOINC or IEEE 11073 MDC, ``codes.py``), OBX-5 numeric
  value (NM, or ST holding a number, or SN with no comparator), OBX-6 unit (converted),
  OBX-11 result status (X, D, W, I, N, O skipped), OBX-14 observation time (else OBR-7),
  OBX-18 equipment instance identifier.

Timestamps without a UTC offset are taken as UTC. An OBX whose identifier, unit or value type
KetaCare does not know is skipped and listed in ``ParsedORU.skipped``; a message in which no
OBX maps at all is refused. Every refusal is a ``ParseError`` carrying an HL7 table 0357 code.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import hl7  # type: ignore[import-untyped]

from ketacare.interop.hl7v2 import codes
from ketacare.sessions.device import DeviceBatch, DeviceObservation

# HL7 table 0357, message error condition codes (v2.5.1).
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_PROCESSING_ID = 202
UNSUPPORTED_VERSION_ID = 203
UNKNOWN_KEY_IDENTIFIER = 204
APPLICATION_INTERNAL_ERROR = 207
ERROR_TEXT = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION_ID: "Unsupported version id",
    UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}

DEFAULT_FIELD_SEPARATOR = "|"
DEFAULT_ENCODING_CHARACTERS = "^~\\&"
SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2", "2.9"}
)
# HL7 table 0085 (observation result status). Stored: final, results entered (what monitors
# send for unverified device data), corrected, preliminary, partial, some results. Skipped:
# cannot obtain, deleted, wrong, pending, not asked, order detail.
STORED_STATUSES = frozenset({"", "F", "R", "C", "P", "S", "A"})
SKIPPED_STATUSES = frozenset({"X", "D", "W", "I", "N", "O"})
NUMERIC_VALUE_TYPES = frozenset({"NM", "ST", "SN", ""})
CHARACTER_SETS = {
    "": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "ASCII": "ascii",
    "8859/1": "latin-1",
}

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_TIMESTAMP = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})(?P<h>\d{2})(?P<mi>\d{2})"
    r"(?:(?P<s>\d{2})(?:\.(?P<frac>\d{1,4}))?)?"
    r"(?:(?P<sign>[+-])(?P<oh>\d{2})(?P<om>\d{2}))?"
)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ParseError(ValueError):
    """A message KetaCare refuses, with what the NAK's ERR segment says about it.

    ``code`` is from HL7 table 0357; ``segment``/``sequence``/``field`` locate the problem
    (ERR-2); ``reject`` makes the NAK an AR (the message as a whole cannot be taken: header,
    encoding, type, version) instead of an AE (its content is wrong).
    """

    def __init__(
        self,
        code: int,
        message: str,
        segment: str = "",
        field: int | None = None,
        *,
        sequence: int = 1,
        reject: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.segment = segment
        self.field = field
        self.sequence = sequence
        self.reject = reject

    @property
    def ack_code(self) -> str:
        return "AR" if self.reject else "AE"


@dataclass(frozen=True)
class MessageHeader:
    """MSH as sent (fields still escaped), enough to address an acknowledgement."""

    field_separator: str
    encoding_characters: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    control_id: str
    processing_id: str
    version: str
    character_set: str

    @property
    def encoding_valid(self) -> bool:
        return encoding_problem(self.field_separator, self.encoding_characters) is None


@dataclass(frozen=True)
class ParsedORU:
    header: MessageHeader
    batch: DeviceBatch
    skipped: tuple[str, ...]  # one line per OBX not stored, and why


def encoding_problem(field_separator: str, encoding_characters: str) -> str | None:
    """Why MSH-1/MSH-2 cannot be used, or None. v2.7+ may add a fifth (truncation) character."""
    chars = field_separator + encoding_characters
    if len(encoding_characters) not in (4, 5):
        return f"MSH-2 must hold 4 encoding characters, not {encoding_characters!r}"
    if len(set(chars)) != len(chars):
        return f"MSH-1 and MSH-2 must be distinct characters, not {chars!r}"
    if any(c.isalnum() or c.isspace() or not c.isprintable() for c in chars):
        return f"MSH-1 and MSH-2 must be printable punctuation, not {chars!r}"
    return None


def read_header(text: str) -> MessageHeader | None:
    """MSH of a message, read without trusting the rest; None when there is no MSH at all.

    Used to answer even a message that cannot be parsed: its control id and encoding characters.
    """
    text = text.lstrip()
    if not text.startswith("MSH") or len(text) < 8:
        return None
    field_separator = text[3]
    first = re.split(r"[\r\n]", text, maxsplit=1)[0]
    fields = first.split(field_separator)

    # fields[0] = "MSH", fields[1] = MSH-2, fields[n - 1] = MSH-n from MSH-3 on.
    def msh(n: int) -> str:
        index = n - 1
        return fields[index] if 0 < index < len(fields) else ""

    encoding = msh(2)
    component = encoding[0] if encoding else "^"

    def first_component(value: str) -> str:
        return value.split(component)[0].strip() if component not in (field_separator, "") else value

    return MessageHeader(
        field_separator=field_separator,
        encoding_characters=encoding,
        sending_application=msh(3),
        sending_facility=msh(4),
        receiving_application=msh(5),
        receiving_facility=msh(6),
        message_type=msh(9),
        control_id=msh(10).strip(),  # ST: echoed in MSA-2 exactly as sent
        processing_id=first_component(msh(11)),
        version=first_component(msh(12)),
        character_set=first_component(msh(18)),
    )


def decode(raw: bytes) -> str:
    """The message's text in the character set MSH-18 declares (UTF-8 when it declares none)."""
    header = read_header(raw.decode("latin-1"))
    declared = header.character_set.upper() if header else ""
    codec = CHARACTER_SETS.get(declared)
    if codec is None:
        raise ParseError(
            TABLE_VALUE_NOT_FOUND,
            f"character set {declared!r} in MSH-18 is not supported (use UNICODE UTF-8, 8859/1 or ASCII)",
            "MSH",
            18,
            reject=True,
        )
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise ParseError(
            DATA_TYPE_ERROR,
            f"byte {exc.start} is not valid {declared or 'UTF-8'}; declare the character set in MSH-18",
            "MSH",
            18,
            reject=True,
        ) from exc


def parse_timestamp(value: str, segment: str, field: int, sequence: int = 1) -> dt.datetime:
    """An HL7 TS/DTM to minute precision or finer, as UTC; no offset means UTC."""
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise ParseError(
            DATA_TYPE_ERROR,
            f"{segment}-{field} {value!r} is not a timestamp YYYYMMDDHHMM[SS[.S]][+/-ZZZZ]",
            segment,
            field,
            sequence=sequence,
        )
    g = match.groupdict()
    try:
        offset = dt.timedelta(hours=int(g["oh"] or 0), minutes=int(g["om"] or 0))
        if offset > dt.timedelta(hours=14) or int(g["om"] or 0) >= 60:
            raise ValueError("offset out of range")
        zone = dt.timezone(-offset if g["sign"] == "-" else offset)
        fraction = (g["frac"] or "").ljust(6, "0")
        stamp = dt.datetime(
            int(g["y"]),
            int(g["mo"]),
            int(g["d"]),
            int(g["h"]),
            int(g["mi"]),
            int(g["s"] or 0),
            int(fraction),
            tzinfo=zone,
        ).astimezone(dt.UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 shifted before year 1
        raise ParseError(
            DATA_TYPE_ERROR,
            f"{segment}-{field} {value!r} is not a valid date and time",
            segment,
            field,
            sequence=sequence,
        ) from exc
    return stamp


def _value(segment: Any, field: int, component: int = 1, repetition: int = 1) -> str:
    """One component of one field, unescaped, '' when absent (never raises)."""
    try:
        return str(segment.extract_field(1, field, repetition, component, 1)).strip()
    except Exception:  # the hl7 package raises IndexError, KeyError or worse on odd shapes
        return ""


def _segment_id(segment: Any) -> str:
    try:
        return str(segment[0][0])
    except Exception:
        return ""


def _normalise(text: str) -> str:
    """Segments end in CR; accept LF and CRLF too, drop blank lines and leading whitespace."""
    lines = re.split(r"\r\n|\r|\n", text.strip())
    return "\r".join(line for line in lines if line.strip())


def _check_header(header: MessageHeader | None) -> MessageHeader:
    if header is None:
        raise ParseError(
            SEGMENT_SEQUENCE_ERROR, "the message does not start with an MSH segment", "MSH", reject=True
        )
    problem = encoding_problem(header.field_separator, header.encoding_characters)
    if problem:
        raise ParseError(DATA_TYPE_ERROR, problem, "MSH", 2, reject=True)
    component = header.encoding_characters[0]
    parts = header.message_type.split(component)
    message_code = parts[0].strip()
    event = parts[1].strip() if len(parts) > 1 else ""
    if not message_code:
        raise ParseError(REQUIRED_FIELD_MISSING, "MSH-9 message type is empty", "MSH", 9, reject=True)
    if message_code != "ORU":
        raise ParseError(
            UNSUPPORTED_MESSAGE_TYPE,
            f"message type {message_code!r} is not accepted: send ORU^R01",
            "MSH",
            9,
            reject=True,
        )
    if event != "R01":
        raise ParseError(
            UNSUPPORTED_EVENT_CODE, f"event {event!r} is not accepted: send ORU^R01", "MSH", 9, reject=True
        )
    if not header.control_id:
        raise ParseError(REQUIRED_FIELD_MISSING, "MSH-10 message control id is empty", "MSH", 10, reject=True)
    if header.processing_id != "P":
        raise ParseError(
            UNSUPPORTED_PROCESSING_ID,
            f"processing id {header.processing_id!r}: only production (P) data is stored",
            "MSH",
            11,
            reject=True,
        )
    if not header.version:
        raise ParseError(REQUIRED_FIELD_MISSING, "MSH-12 version id is empty", "MSH", 12, reject=True)
    if header.version not in SUPPORTED_VERSIONS:
        raise ParseError(
            UNSUPPORTED_VERSION_ID,
            f"version {header.version!r} is not supported (2.3 to 2.9)",
            "MSH",
            12,
            reject=True,
        )
    return header


def _check_segments(text: str, field_separator: str) -> None:
    for number, line in enumerate(text.split("\r"), start=1):
        segment_id = line[:3]
        if not _SEGMENT_ID.fullmatch(segment_id) or (len(line) > 3 and line[3] != field_separator):
            raise ParseError(
                SEGMENT_SEQUENCE_ERROR,
                f"line {number} is not an HL7 segment: {line[:20]!r}",
                segment_id if _SEGMENT_ID.fullmatch(segment_id) else "",
                sequence=number,
            )
        if segment_id == "MSH" and number > 1:
            raise ParseError(
                SEGMENT_SEQUENCE_ERROR,
                "one message per frame: a second MSH was found",
                "MSH",
                sequence=number,
            )


def parse_oru(text: str) -> ParsedORU:
    """Read one ORU^R01 message; raise ``ParseError`` for anything KetaCare cannot take."""
    text = _normalise(text)
    header = _check_header(read_header(text))
    if _CONTROL_CHARACTERS.search(text):
        raise ParseError(DATA_TYPE_ERROR, "the message holds control characters", reject=True)
    _check_segments(text, header.field_separator)
    try:
        message = hl7.parse(text)
    except Exception as exc:  # the package's own errors are not all ParseException
        raise ParseError(DATA_TYPE_ERROR, f"the message cannot be parsed: {exc}", reject=True) from exc

    msh = message[0]
    clinic_slug = _value(msh, 4).lower()
    if not clinic_slug:
        raise ParseError(
            REQUIRED_FIELD_MISSING, "MSH-4 sending facility (the clinic) is empty", "MSH", 4, reject=True
        )
    device_id = _value(msh, 3) or _value(msh, 3, 2)

    pid: Any = None
    obr: Any = None
    obr_count = 0
    observations: list[DeviceObservation] = []
    skipped: list[str] = []
    obx_count = 0
    mapped = 0
    equipment = ""
    for segment in list(message)[1:]:
        segment_id = _segment_id(segment)
        if segment_id == "PID":
            if pid is not None:
                raise ParseError(
                    SEGMENT_SEQUENCE_ERROR,
                    "one patient per message: a second PID was found",
                    "PID",
                    sequence=2,
                )
            if obr is not None:
                raise ParseError(SEGMENT_SEQUENCE_ERROR, "PID must come before OBR", "PID")
            pid = segment
        elif segment_id == "OBR":
            if pid is None:
                raise ParseError(SEGMENT_SEQUENCE_ERROR, "PID must come before OBR", "PID")
            obr = segment
            obr_count += 1
        elif segment_id == "OBX":
            obx_count += 1
            if obr is None:
                raise ParseError(
                    SEGMENT_SEQUENCE_ERROR, "OBX must follow an OBR (and a PID)", "OBX", sequence=obx_count
                )
            result = _observation(segment, obr, obx_count, obr_count)
            if isinstance(result, _Skip):
                mapped += result.mapped
                skipped.append(result.reason)
                continue
            mapped += 1
            observation, obx_equipment = result
            observations.append(observation)
            equipment = equipment or obx_equipment

    if pid is None:
        raise ParseError(SEGMENT_SEQUENCE_ERROR, "PID segment missing: the patient is not named", "PID")
    record_number = _value(pid, 3)
    if not record_number:
        raise ParseError(
            REQUIRED_FIELD_MISSING, "PID-3 patient identifier (record number) is empty", "PID", 3
        )
    if obx_count == 0:
        raise ParseError(SEGMENT_SEQUENCE_ERROR, "no OBX segment: nothing was observed", "OBX")
    if mapped == 0:
        raise ParseError(
            TABLE_VALUE_NOT_FOUND,
            "no OBX-3 is a vital sign KetaCare maps (LOINC or IEEE 11073 MDC codes, see docs/hl7.md)",
            "OBX",
            3,
        )
    device_id = equipment or device_id
    if not device_id:
        raise ParseError(
            REQUIRED_FIELD_MISSING, "MSH-3 sending application (the device) is empty", "MSH", 3, reject=True
        )
    batch = DeviceBatch(
        clinic_slug=clinic_slug,
        record_number=record_number,
        device_id=device_id,
        source="hl7",
        control_id=header.control_id,
        observations=tuple(observations),
    )
    return ParsedORU(header=header, batch=batch, skipped=tuple(skipped))


@dataclass(frozen=True)
class _Skip:
    reason: str
    mapped: int  # 1 when OBX-3 was a known vital (the message is about vitals), else 0


def _observation(
    obx: Any, obr: Any, sequence: int, obr_sequence: int
) -> tuple[DeviceObservation, str] | _Skip:
    primary = (_value(obx, 3), _value(obx, 3, 2), _value(obx, 3, 3))
    code = codes.lookup_any([primary]) or codes.lookup_any(
        [(_value(obx, 3, 4), _value(obx, 3, 5), _value(obx, 3, 6))]
    )

    def skip(reason: str, mapped: int = 1) -> _Skip:
        return _Skip(f"OBX {sequence} ({'^'.join(primary)}): {reason}", mapped)

    if code is None:
        return skip("not a vital sign KetaCare maps", 0)
    status = _value(obx, 11).upper()
    if status in SKIPPED_STATUSES:
        return skip(f"result status {status}")
    if status not in STORED_STATUSES:
        raise ParseError(
            TABLE_VALUE_NOT_FOUND,
            f"OBX-11 {status!r} is not a result status (HL7 table 0085)",
            "OBX",
            11,
            sequence=sequence,
        )
    value_type = _value(obx, 2).upper()
    if value_type not in NUMERIC_VALUE_TYPES:
        return skip(f"value type {value_type} is not numeric")
    raw = _value(obx, 5)
    if value_type == "SN" and (number_part := _value(obx, 5, 2)):
        comparator, raw = raw, number_part  # SN: comparator^number
        if comparator not in ("", "="):
            return skip(f"a limit ({comparator}{raw}), not a measurement")
    if not raw:
        return skip("no value")
    if not _NUMBER.fullmatch(raw):
        raise ParseError(DATA_TYPE_ERROR, f"OBX-5 {raw[:30]!r} is not a number", "OBX", 5, sequence=sequence)
    number = float(raw)
    if number in codes.NOT_A_NUMBER_VALUES:
        return skip(f"the device reported no value ({raw})")
    units = [_value(obx, 6), _value(obx, 6, 2)]
    if any(units) and codes.ucum_unit(units) is None:
        units += [_value(obx, 6, 4), _value(obx, 6, 5)]  # the alternate unit, if any
    try:
        value = codes.to_stored_unit(code.kind, number, units)
    except codes.UnitNotUnderstood as exc:
        return skip(str(exc))
    stamp = _value(obx, 14)
    if stamp:
        observed_at = parse_timestamp(stamp, "OBX", 14, sequence)
    elif obr_stamp := _value(obr, 7):
        observed_at = parse_timestamp(obr_stamp, "OBR", 7, obr_sequence)
    else:
        raise ParseError(
            REQUIRED_FIELD_MISSING,
            "no observation time: OBX-14 and OBR-7 are both empty",
            "OBX",
            14,
            sequence=sequence,
        )
    return DeviceObservation(kind=code.kind, value=value, observed_at=observed_at), _value(obx, 18)
