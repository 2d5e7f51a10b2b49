"""The MLLP listener: bedside monitors connect over TCP and stream framed ORU^R01 messages.

MLLP frames a message as ``0x0B message 0x1C 0x0D``. Bytes outside a frame are discarded; a
start block inside a frame abandons the partial frame (the sender started again); a frame
larger than ``max_message_bytes`` closes the connection. Each monitor keeps one connection and
sends one message at a time (original mode); many monitors are served at once.

For each frame: parse -> ``ingest(batch)`` in a worker thread, which for the real listener
(``database_ingest``) runs ``sessions.monitoring.ingest_device_batch`` inside one transaction that
commits before it returns -> only then the ACK (AA). Anything that keeps the message from
being committed gets a NAK and stores nothing: a parse error (AE or AR with the error's code), a
refusal by the sessions service (AE, 204 for an unknown clinic, patient or session), a database
error (AE 207: the monitor resends, and a resent duplicate is acknowledged again without being
stored twice). No input ends the listener; an unexpected error ends at most one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ketacare.db import transaction, utcnow
from ketacare.interop.hl7v2 import ack
from ketacare.interop.hl7v2.parse import (
    APPLICATION_INTERNAL_ERROR,
    CHARACTER_SETS,
    DATA_TYPE_ERROR,
    SEGMENT_SEQUENCE_ERROR,
    UNKNOWN_KEY_IDENTIFIER,
    MessageHeader,
    ParsedORU,
    ParseError,
    decode,
    parse_oru,
    read_header,
)
from ketacare.sessions.device import DeviceBatch, DeviceRejected, IngestResult

log = logging.getLogger("ketacare.hl7")

START_BLOCK = 0x0B
END_BLOCK = 0x1C
CARRIAGE_RETURN = 0x0D
DEFAULT_PORT = 2575
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
DEFAULT_IDLE_TIMEOUT_S = 900.0  # a monitor sends at least every few minutes; drop half-open links
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_WORKERS = 8
READ_CHUNK_BYTES = 64 * 1024

Ingest = Callable[[DeviceBatch], IngestResult]

# DeviceRejected.code -> (table 0357 code, ERR-2 segment, field).
REJECTION_ERRORS: dict[str, tuple[int, str, int | None]] = {
    "unknown_clinic": (UNKNOWN_KEY_IDENTIFIER, "MSH", 4),
    "unknown_patient": (UNKNOWN_KEY_IDENTIFIER, "PID", 3),
    "no_active_session": (UNKNOWN_KEY_IDENTIFIER, "PID", 3),
    "implausible": (DATA_TYPE_ERROR, "", None),  # the text names the vital; which OBX is not known
    "invalid": (DATA_TYPE_ERROR, "", None),
    "duplicate_race": (APPLICATION_INTERNAL_ERROR, "MSH", 10),  # resent, it is a plain duplicate
}


def frame(message: bytes) -> bytes:
    return bytes([START_BLOCK]) + message + bytes([END_BLOCK, CARRIAGE_RETURN])


class FrameTooLarge(Exception):
    pass


class FrameReader:
    """Incremental MLLP de-framing: ``feed`` bytes as they arrive, get the complete frames.

    A frame ends at the end block; the carriage return after it, like any byte outside a frame,
    is discarded (senders that omit it are understood too).
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.discarded = 0  # bytes outside frames, CRs after end blocks included
        self.abandoned = 0  # partial frames given up because a new start block came
        self._buffer = bytearray()
        self._in_frame = False
        self._scanned = 0  # bytes of the current frame known to hold neither block character

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        self._buffer += data
        while True:
            if not self._in_frame:
                start = self._buffer.find(START_BLOCK)
                if start < 0:
                    self.discarded += len(self._buffer)
                    self._buffer.clear()
                    return frames
                self.discarded += start
                del self._buffer[: start + 1]
                self._in_frame = True
                self._scanned = 0
            end = self._buffer.find(END_BLOCK, self._scanned)
            limit = end if end >= 0 else len(self._buffer)
            restart = self._buffer.find(START_BLOCK, self._scanned, limit)
            if restart >= 0:
                self.abandoned += 1
                self.discarded += restart
                del self._buffer[: restart + 1]
                self._scanned = 0
                continue
            if end < 0:
                self._scanned = len(self._buffer)
                if self._scanned > self.max_frame_bytes:
                    raise FrameTooLarge(f"frame longer than {self.max_frame_bytes} bytes")
                return frames
            if end > self.max_frame_bytes:
                raise FrameTooLarge(f"frame longer than {self.max_frame_bytes} bytes")
            frames.append(bytes(self._buffer[:end]))
            del self._buffer[: end + 1]
            self._in_frame = False


def database_ingest(factory: sessionmaker[Session]) -> Ingest:
    """The real ingest: one transaction per message, committed before this returns."""
    from ketacare.sessions import monitoring

    def ingest(batch: DeviceBatch) -> IngestResult:
        with transaction(factory) as db:
            return monitoring.ingest_device_batch(db, batch)

    return ingest


def new_control_id() -> str:
    return "KC" + uuid.uuid4().hex[:18]


@dataclass
class ListenerStats:
    connections: int = 0
    frames: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: int = 0
    oversized: int = 0


class MLLPListener:
    def __init__(
        self,
        ingest: Ingest,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        workers: int = DEFAULT_WORKERS,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.ingest = ingest
        self.max_message_bytes = max_message_bytes
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.clock = clock
        self.stats = ListenerStats()
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hl7-ingest")
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the listener is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._on_connection, host, port, limit=READ_CHUNK_BYTES)
        log.info("HL7 MLLP listener on %s:%d", *self.address)
        return self.address

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("start the listener first")
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        # In-flight transactions finish (or roll back) on their own; their ACKs are never sent,
        # so the monitors resend and the duplicates are acknowledged without storing twice.
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        try:
            if len(self._tasks) > self.max_connections:
                log.warning("HL7 connection from %s refused: %d connections open", peer, len(self._tasks) - 1)
                return
            self.stats.connections += 1
            log.info("HL7 connection from %s", peer)
            await self._serve(reader, writer, peer)
        except (ConnectionError, OSError) as exc:
            log.info("HL7 connection from %s lost: %s", peer, exc)
        except Exception:
            log.exception("HL7 connection from %s ended by an unexpected error", peer)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object) -> None:
        frames = FrameReader(self.max_message_bytes)
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout_s):
                    data = await reader.read(READ_CHUNK_BYTES)
            except TimeoutError:
                log.info("HL7 connection from %s idle for %s s: closed", peer, self.idle_timeout_s)
                return
            if not data:
                log.info("HL7 connection from %s closed by the sender", peer)
                return
            try:
                complete = frames.feed(data)
            except FrameTooLarge as exc:
                self.stats.oversized += 1
                log.warning("HL7 connection from %s closed: %s", peer, exc)
                return
            for message in complete:
                reply = await self.handle(message)
                writer.write(reply)
                await writer.drain()

    async def handle(self, message: bytes) -> bytes:
        """The framed reply to one message (ACK after commit, or NAK)."""
        self.stats.frames += 1
        received = time.monotonic()
        header = read_header(message.decode("latin-1"))
        if not message.strip():
            return self._refuse(header, ParseError(SEGMENT_SEQUENCE_ERROR, "empty message", reject=True))
        loop = asyncio.get_running_loop()
        try:
            # Off the event loop: a megabyte of segments takes seconds to parse, and the other
            # monitors' connections must not wait for it.
            parsed = await loop.run_in_executor(self._executor, _parse, message)
        except ParseError as error:
            return self._refuse(header, error)
        except Exception:
            log.exception("HL7 %s: the parser failed", header.control_id if header else "(no MSH)")
            return self._refuse(
                header, ParseError(APPLICATION_INTERNAL_ERROR, "the message could not be read", reject=True)
            )
        header, batch = parsed.header, parsed.batch
        for reason in parsed.skipped:
            log.info("HL7 %s: skipped %s", batch.control_id, reason)
        if not batch.observations:
            log.info("HL7 %s from %s: no observation to store", batch.control_id, batch.device_id)
            return self._accept(header)
        try:
            result = await loop.run_in_executor(self._executor, self.ingest, batch)
        except DeviceRejected as exc:
            code, segment, field = REJECTION_ERRORS.get(exc.code, (APPLICATION_INTERNAL_ERROR, "", None))
            return self._refuse(header, ParseError(code, exc.message, segment, field))
        except SQLAlchemyError as exc:
            log.warning("HL7 %s: database error, nothing stored: %s", batch.control_id, exc)
            return self._refuse(
                header,
                ParseError(APPLICATION_INTERNAL_ERROR, "database unavailable, nothing stored: send again"),
            )
        except Exception:
            log.exception("HL7 %s: ingest failed, nothing stored", batch.control_id)
            return self._refuse(
                header, ParseError(APPLICATION_INTERNAL_ERROR, "internal error, nothing stored: send again")
            )
        if result.duplicate:
            self.stats.duplicates += 1
        log.info(
            "HL7 %s from %s for %s/%s: %d stored%s, %d alarm(s), %.1f ms",
            batch.control_id,
            batch.device_id,
            batch.clinic_slug,
            batch.record_number,
            result.stored,
            " (duplicate)" if result.duplicate else "",
            len(result.alarms_raised),
            (time.monotonic() - received) * 1000,
        )
        return self._accept(header)

    def _accept(self, header: MessageHeader) -> bytes:
        self.stats.accepted += 1
        text = ack.accept(header, control_id=new_control_id(), now=self.clock())
        return frame(_encode(text, header))

    def _refuse(self, header: MessageHeader | None, error: ParseError) -> bytes:
        self.stats.refused += 1
        log.warning(
            "HL7 %s refused (%s %d %s%s): %s",
            header.control_id if header else "(no MSH)",
            error.ack_code,
            error.code,
            error.segment,
            f"-{error.field}" if error.field is not None else "",
            error.message,
        )
        text = ack.refuse(header, error, control_id=new_control_id(), now=self.clock())
        return frame(_encode(text, header))


def _parse(message: bytes) -> ParsedORU:
    return parse_oru(decode(message))


def _encode(text: str, header: MessageHeader | None) -> bytes:
    codec = CHARACTER_SETS.get(header.character_set.upper(), "utf-8") if header else "utf-8"
    return text.encode(codec, errors="replace")


class BackgroundListener:
    """A listener on its own event loop in a daemon thread: for tests, benchmarks and demos."""

    def __init__(self, listener: MLLPListener, host: str = "127.0.0.1", port: int = 0) -> None:
        self.listener = listener
        self._host, self._port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hl7-listener", daemon=True)
        self.address: tuple[str, int] = ("", 0)

    def __enter__(self) -> BackgroundListener:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self.listener.start(self._host, self._port), self._loop)
        self.address = started.result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        closing = asyncio.run_coroutine_threadsafe(self.listener.close(), self._loop)
        try:
            closing.result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
