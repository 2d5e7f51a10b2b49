"""ACK and NAK messages: v2.5.1, the sender's encoding mirrored, ERR with a table 0357 code."""

from __future__ import annotations

import datetime as dt

import hl7  # type: ignore[import-untyped]
import pytest

from ketacare.interop.hl7v2 import ack
from ketacare.interop.hl7v2.parse import ParseError, read_header

NOW = dt.datetime(2026, 3, 2, 14, 5, 30, tzinfo=dt.UTC)
SENT = "MSH|^~\\&|BED-7^0011^EUI-64|north|KC-APP|KC-FAC|20260302140500||ORU^R01^ORU_R01|MSG-77|P|2.4\rPID|||1"


def parsed(text: str) -> hl7.Message:
    assert text.endswith("\r")
    return hl7.parse(text)


def test_ack_answers_the_sender_with_its_control_id() -> None:
    header = read_header(SENT)
    assert header is not None
    reply = parsed(ack.accept(header, control_id="KC1", now=NOW))
    msh = reply.segment("MSH")
    assert str(msh(3)) == "KC-APP" and str(msh(4)) == "KC-FAC"  # we are who they sent to
    assert str(msh(5)) == "BED-7^0011^EUI-64" and str(msh(6)) == "north"  # back to the sender
    assert str(msh(7)) == "20260302140530+0000"
    assert str(msh(9)) == "ACK^R01^ACK"
    assert (str(msh(10)), str(msh(11)), str(msh(12))) == ("KC1", "P", "2.5.1")
    assert [str(s[0][0]) for s in reply] == ["MSH", "MSA"]
    assert str(reply.segment("MSA")(1)) == "AA" and str(reply.segment("MSA")(2)) == "MSG-77"


def test_nak_carries_an_err_segment() -> None:
    header = read_header(SENT)
    error = ParseError(204, "No patient '1' in clinic 'north'.", "PID", 3)
    reply = parsed(ack.refuse(header, error, control_id="KC2", now=NOW))
    assert str(reply.segment("MSA")(1)) == "AE" and str(reply.segment("MSA")(2)) == "MSG-77"
    err = reply.segment("ERR")
    assert str(err(2)) == "PID^1^3"
    assert str(err(3)) == "204^Unknown key identifier^HL70357"
    assert str(err(4)) == "E"
    assert err.extract_field(1, 8) == "No patient '1' in clinic 'north'."


def test_a_rejected_message_gets_ar() -> None:
    error = ParseError(203, "version '3.0' is not supported", "MSH", 12, reject=True)
    reply = parsed(ack.refuse(read_header(SENT), error, control_id="KC3", now=NOW))
    assert str(reply.segment("MSA")(1)) == "AR"
    assert str(reply.segment("ERR")(3)).startswith("203^")


def test_error_text_is_escaped_and_kept_on_one_line() -> None:
    error = ParseError(102, "OBX-5 'a|b^c~d\\e&f' is\rnot a number", "OBX", 5, sequence=4)
    text = ack.refuse(read_header(SENT), error, control_id="KC4", now=NOW)
    assert text.count("\r") == 3  # MSH, MSA, ERR, each ended by CR: no CR inside a field
    err = parsed(text).segment("ERR")
    assert err.extract_field(1, 8) == "OBX-5 'a|b^c~d\\e&f' is not a number"
    assert str(err(2)) == "OBX^4^5"


def test_the_senders_encoding_characters_are_mirrored() -> None:
    sent = "MSH#$*@%#MON$X#north#KC#F#1##ORU$R01#ID$9#P#2.5.1"
    header = read_header(sent)
    assert header is not None
    text = ack.refuse(header, ParseError(100, "odd # $ text", "PID"), control_id="K", now=NOW)
    assert text.startswith("MSH#$*@%#KC#F#MON$X#north#")
    reply = hl7.parse(text)
    assert str(reply.segment("MSA")(2)) == "ID$9"  # the sender's control id, as sent
    assert reply.segment("ERR").extract_field(1, 8) == "odd # $ text"
    assert str(reply.segment("ERR")(3)) == "100$Segment sequence error$HL70357"


def test_a_truncation_character_is_not_mirrored_into_a_2_5_1_reply() -> None:
    header = read_header("MSH|^~\\&#|MON|north|||1||ORU^R01|ID|P|2.7")
    assert ack.accept(header, control_id="K", now=NOW).startswith("MSH|^~\\&|")  # type: ignore[arg-type]


def test_unusable_encoding_falls_back_to_the_default_and_echoes_safely() -> None:
    header = read_header("MSH|AAAA|MON|north|||1||ORU^R01|ID^9|P|2.5.1")
    assert header is not None and not header.encoding_valid
    error = ParseError(102, "MSH-2 must be distinct", "MSH", 2, reject=True)
    reply = hl7.parse(ack.refuse(header, error, control_id="K", now=NOW))
    assert str(reply.segment("MSH")(2)) == "^~\\&"
    assert str(reply.segment("MSA")(1)) == "AR"
    assert str(reply.segment("MSA")(2)) == "ID9"  # the component separator of ours is dropped


def test_a_message_without_msh_still_gets_a_nak() -> None:
    reply = hl7.parse(ack.refuse(None, ParseError(100, "no MSH", reject=True), control_id="K", now=NOW))
    assert str(reply.segment("MSA")(1)) == "AR" and str(reply.segment("MSA")(2)) == ""
    assert str(reply.segment("MSH")(9)) == "ACK"


def test_declared_character_set_is_echoed() -> None:
    header = read_header("MSH|^~\\&|MON|north|||1||ORU^R01|ID|P|2.5.1||||||8859/1")
    text = ack.accept(header, control_id="K", now=NOW)  # type: ignore[arg-type]
    assert str(hl7.parse(text).segment("MSH")(18)) == "8859/1"


def test_unknown_acknowledgement_codes_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="acknowledgement code"):
        ack.acknowledgement(read_header(SENT), "CA", control_id="K", now=NOW)
