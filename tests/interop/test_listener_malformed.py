"""A corpus of bad input fed to a real listener over a real TCP socket: every bad message gets
a NAK or a closed connection, nothing bad reaches the ingest, and the listener keeps serving."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections.abc import Callable

import pytest

from ketacare.interop.hl7v2.mllp import END_BLOCK, START_BLOCK, frame
from ketacare.interop.hl7v2.monitor import MonitorConnection, Reply, read_reply, send_messages
from tests.interop.conftest import Address, RecordingIngest, valid_message

MAX_BYTES = 64 * 1024
GOOD = valid_message("CORPUS-OK")
MSH = "MSH|^~\\&|BED-1|north|||20260302140000||ORU^R01|BAD-{n}|P|2.5.1"
PID = "PID|||NSP-000001"
OBR = "OBR|1||||||20260302140000"
OBX = "OBX|1|NM|8480-6^^LN||120|mm[Hg]|||||F"


def hl7(*segments: str, n: int = 1) -> bytes:
    return frame("\r".join(s.replace("{n}", str(n)) for s in segments).encode() + b"\r")


# name -> bytes on the wire. Each is followed, on the same connection, by a valid message.
CORPUS: dict[str, bytes] = {
    "missing PID": hl7(MSH, OBR, OBX),
    "missing OBX": hl7(MSH, PID, OBR),
    "missing OBR": hl7(MSH, PID, OBX),
    "missing MSH": hl7(PID, OBR, OBX),
    "MSH only": hl7(MSH),
    "two messages in one frame": hl7(MSH, PID, OBR, OBX, MSH, PID, OBR, OBX),
    "a batch header": hl7("BHS|^~\\&|BED-1|north", MSH, PID, OBR, OBX, "BTS|1"),
    "bad OBX-14 timestamp": hl7(MSH, PID, OBR, OBX + "|||2026-03-02T14:00"),
    "timestamp with 13th month": hl7(MSH, PID, OBR, OBX + "|||20261302140000"),
    "timestamp too coarse": hl7(MSH, PID, "OBR|1||||||20260302", OBX),
    "three encoding characters": hl7(MSH.replace("^~\\&", "^~\\"), PID, OBR, OBX),
    "repeated encoding characters": hl7(MSH.replace("^~\\&", "^^^^"), PID, OBR, OBX),
    "letters as encoding characters": hl7(MSH.replace("^~\\&", "abcd"), PID, OBR, OBX),
    "newline as field separator": hl7(MSH.replace("|", "\n"), PID, OBR, OBX),
    "unsupported version": hl7(MSH.replace("2.5.1", "2.1"), PID, OBR, OBX),
    "ADT instead of ORU": hl7(MSH.replace("ORU^R01", "ADT^A08"), PID, OBR, OBX),
    "training processing id": hl7(MSH.replace("|P|", "|T|"), PID, OBR, OBX),
    "no control id": hl7(MSH.replace("BAD-{n}", ""), PID, OBR, OBX),
    "empty PID-3": hl7(MSH, "PID|||", OBR, OBX),
    "text as a value": hl7(MSH, PID, OBR, OBX.replace("|120|", "|one hundred|")),
    "unknown result status": hl7(MSH, PID, OBR, OBX.replace("|F", "|Z")),
    "nothing maps": hl7(MSH, PID, OBR, "OBX|1|NM|99999^Unknown^99LOCAL||5"),
    "lower-case segment": hl7(MSH, "pid|||1", OBR, OBX),
    "non-UTF-8 bytes": frame(b"MSH|^~\\&|BED-1|north|||1||ORU^R01|X|P|2.5.1\rPID|||M\xfcller\xff\xfe\r"),
    "undeclared character set": hl7(MSH + "||||||EBCDIC", PID, OBR, OBX),
    "NUL bytes": frame(b"MSH|^~\\&|BED-1|north|||1||ORU^R01|X|P|2.5.1\x00\rPID|||1\r"),
    "empty frame": frame(b""),
    "frame of blank lines": frame(b"\r\n\r\n  \r"),
    "random binary in a frame": frame(
        bytes(random.Random(7).randrange(256) for _ in range(3000))
        .replace(bytes([START_BLOCK]), b"")
        .replace(bytes([END_BLOCK]), b"")
    ),
    "garbage between frames": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + hl7(MSH, OBR, OBX),
    "nested start bytes": bytes([START_BLOCK]) + b"MSH|^~\\&|half" + bytes([START_BLOCK]) + hl7(MSH, PID)[1:],
    "unterminated frame then nothing": bytes([START_BLOCK]) + b"MSH|^~\\&|BED-1|north",
    "stray end blocks": b"\x1c\x0d\x1c\x0d" + hl7(MSH, PID, OBR),
}

# Oversized input: the listener closes the connection (no NAK, nothing stored).
OVERSIZED: dict[str, bytes] = {
    "huge message": hl7(MSH, PID, OBR, *(["OBX|1|ST|99^note^L||" + "x" * 1000] * 100)),
    "endless frame": bytes([START_BLOCK]) + b"x" * (MAX_BYTES + 1),
}


def replies_until_good(connection: MonitorConnection) -> list[Reply]:
    """Replies to the corpus entry, then the valid message's ACK (the last one)."""
    replies = []
    while True:
        reply = connection.receive()
        replies.append(reply)
        if reply.control_id == "CORPUS-OK":
            return replies


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_input_gets_a_nak_and_the_connection_keeps_serving(
    name: str, serve: Callable[..., Address], recording: RecordingIngest
) -> None:
    host, port = serve(recording, max_message_bytes=MAX_BYTES)
    with MonitorConnection(host, port, timeout_s=20) as connection:
        connection.send_raw(CORPUS[name] + frame(GOOD.encode()))
        replies = replies_until_good(connection)
    *naks, ack = replies
    assert ack.ack_code == "AA"
    assert all(r.ack_code in ("AE", "AR") for r in naks), [r.raw for r in naks]
    assert all(r.error_code in {"100", "101", "102", "103", "200", "201", "202", "203"} for r in naks)
    assert all(r.text for r in naks)
    assert recording.control_ids == ["CORPUS-OK"]


@pytest.mark.parametrize("name", sorted(OVERSIZED))
def test_oversized_input_closes_the_connection_and_the_listener_keeps_serving(
    name: str, serve: Callable[..., Address], recording: RecordingIngest
) -> None:
    host, port = serve(recording, max_message_bytes=MAX_BYTES)
    with MonitorConnection(host, port, timeout_s=20) as connection:
        with contextlib.suppress(OSError):  # the listener may close while we are still writing
            connection.send_raw(OVERSIZED[name])
        with pytest.raises(OSError):  # ConnectionError: closed, or reset while we wrote
            connection.receive()
    assert send_messages(host, port, [("AFTER", valid_message("AFTER"))]).acknowledged == ["AFTER"]
    assert recording.control_ids == ["AFTER"]


def test_the_whole_corpus_on_one_connection_then_a_new_one(
    serve: Callable[..., Address], recording: RecordingIngest
) -> None:
    host, port = serve(recording, max_message_bytes=MAX_BYTES)
    with MonitorConnection(host, port, timeout_s=20) as connection:
        for name in sorted(CORPUS):
            if name != "unterminated frame then nothing":
                connection.send_raw(CORPUS[name])
        connection.send_raw(frame(GOOD.encode()))
        replies = replies_until_good(connection)
    assert replies[-1].ack_code == "AA"
    assert {r.ack_code for r in replies[:-1]} <= {"AE", "AR"}
    assert send_messages(host, port, [("NEXT", valid_message("NEXT"))]).acknowledged == ["NEXT"]
    assert recording.control_ids == ["CORPUS-OK", "NEXT"]


def test_a_peer_that_vanishes_mid_frame_does_not_disturb_others(
    serve: Callable[..., Address], recording: RecordingIngest
) -> None:
    host, port = serve(recording)
    for _ in range(20):
        with socket.create_connection((host, port)) as raw:
            raw.sendall(bytes([START_BLOCK]) + GOOD.encode()[:50])
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
    assert send_messages(host, port, [("LAST", valid_message("LAST"))]).acknowledged == ["LAST"]


def test_a_nak_names_the_message_it_refuses(
    serve: Callable[..., Address], recording: RecordingIngest
) -> None:
    host, port = serve(recording)
    with MonitorConnection(host, port) as connection:
        reply = connection.send(valid_message("VERSION-9").replace("2.5.1", "9.9"))
    assert (reply.ack_code, reply.control_id, reply.error_code) == ("AR", "VERSION-9", "203")
    assert read_reply(reply.raw.encode()).text == reply.text
