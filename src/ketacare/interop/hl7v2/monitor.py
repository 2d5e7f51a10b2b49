"""A simulated bedside monitor: realistic ORU^R01 messages sent over MLLP, one at a time.

Used by the tests, the benchmark, the browser tests, ``ketacare hl7 send`` and the live demo.
``trajectory`` makes a plausible course of vitals during a ketamine infusion (baseline, a
gentle systolic rise that peaks about 40 minutes in, optionally a systolic spike that crosses
the alarm threshold and an SpO2 dip); ``build_oru`` writes one message in IEEE 11073 (MDC)
codes as an IHE PCD gateway does, or in LOINC; ``send_messages`` sends and waits for each ACK.
"""

from __future__ import annotations

import datetime as dt
import random
import socket
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ketacare.interop.hl7v2.mllp import FrameReader, frame

DEFAULT_BASELINE: dict[str, float] = {
    "sbp": 124.0,
    "dbp": 78.0,
    "hr": 72.0,
    "spo2": 98.0,
    "rr": 14.0,
    "temp_c": 36.7,
}

# kind -> (OBX-3, OBX-6) in each coding. MDC as an IHE PCD / GE-style gateway sends it.
MDC_CODING: dict[str, tuple[str, str]] = {
    "sbp": ("150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "266016^MDC_DIM_MMHG^MDC"),
    "dbp": ("150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "266016^MDC_DIM_MMHG^MDC"),
    "map": ("150023^MDC_PRESS_BLD_NONINV_MEAN^MDC", "266016^MDC_DIM_MMHG^MDC"),
    "hr": ("147842^MDC_ECG_HEART_RATE^MDC", "264864^MDC_DIM_BEAT_PER_MIN^MDC"),
    "spo2": ("150456^MDC_PULS_OXIM_SAT_O2^MDC", "262688^MDC_DIM_PERCENT^MDC"),
    "rr": ("151562^MDC_RESP_RATE^MDC", "264928^MDC_DIM_RESP_PER_MIN^MDC"),
    "temp_c": ("150364^MDC_TEMP_BODY^MDC", "268192^MDC_DIM_DEGC^MDC"),
}
LOINC_CODING: dict[str, tuple[str, str]] = {
    "sbp": ("8480-6^Systolic blood pressure^LN", "mm[Hg]^mm[Hg]^UCUM"),
    "dbp": ("8462-4^Diastolic blood pressure^LN", "mm[Hg]^mm[Hg]^UCUM"),
    "map": ("8478-0^Mean blood pressure^LN", "mm[Hg]^mm[Hg]^UCUM"),
    "hr": ("8867-4^Heart rate^LN", "/min^/min^UCUM"),
    "spo2": ("59408-5^Oxygen saturation in Arterial blood by Pulse oximetry^LN", "%^%^UCUM"),
    "rr": ("9279-1^Respiratory rate^LN", "/min^/min^UCUM"),
    "temp_c": ("8310-5^Body temperature^LN", "Cel^Cel^UCUM"),
    "etco2": (
        "19889-5^Carbon dioxide [Partial pressure] in Exhaled gas --at end expiration^LN",
        "mm[Hg]^mm[Hg]^UCUM",
    ),
}
CODINGS = {"mdc": MDC_CODING, "loinc": LOINC_CODING}


@dataclass(frozen=True)
class VitalsPoint:
    observed_at: dt.datetime
    values: dict[str, float]


def trajectory(
    start: dt.datetime,
    count: int,
    *,
    interval_s: float = 60.0,
    seed: int = 0,
    baseline: Mapping[str, float] | None = None,
    sbp_rise_mmhg: float = 15.0,
    peak_minutes: float = 40.0,
    sbp_spike_at: int | None = None,
    spike_sbp: float = 190.0,
    spo2_dip_at: int | None = None,
    spo2_dip_points: int = 3,
    dip_spo2: float = 89.0,
) -> list[VitalsPoint]:
    """``count`` readings ``interval_s`` apart from ``start``, deterministic for a seed.

    Systolic pressure rises linearly by ``sbp_rise_mmhg`` until ``peak_minutes`` and stays there
    (esketamine's label describes a peak about 40 minutes after the dose); diastolic follows at
    half the rise and heart rate a little. ``sbp_spike_at`` makes that reading ``spike_sbp``
    (above the clinic default alarm of 180 mmHg); ``spo2_dip_at`` starts ``spo2_dip_points``
    readings at ``dip_spo2`` (below 92% sustained for more than a minute at 60-s intervals).
    """
    rng = random.Random(seed)
    base = dict(DEFAULT_BASELINE if baseline is None else baseline)
    points: list[VitalsPoint] = []
    for i in range(count):
        minutes = i * interval_s / 60.0
        rise = sbp_rise_mmhg * min(minutes / peak_minutes, 1.0) if peak_minutes > 0 else sbp_rise_mmhg
        sbp = base["sbp"] + rise + rng.gauss(0, 2.0)
        dbp = base["dbp"] + rise / 2 + rng.gauss(0, 1.5)
        if sbp_spike_at is not None and i == sbp_spike_at:
            sbp, dbp = spike_sbp, max(dbp, 100.0)
        spo2 = min(100.0, base["spo2"] + rng.gauss(0, 0.6))
        if spo2_dip_at is not None and spo2_dip_at <= i < spo2_dip_at + spo2_dip_points:
            spo2 = dip_spo2
        values = {
            "sbp": round(sbp),
            "dbp": round(dbp),
            "map": round(dbp + (sbp - dbp) / 3),
            "hr": round(base["hr"] + rise / 3 + rng.gauss(0, 2.0)),
            "spo2": round(spo2),
            "rr": round(base["rr"] + rng.gauss(0, 1.0)),
            "temp_c": round(base["temp_c"] + rng.gauss(0, 0.05), 1),
        }
        points.append(
            VitalsPoint(
                start + dt.timedelta(seconds=i * interval_s), {k: float(v) for k, v in values.items()}
            )
        )
    return points


def _ts(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S") + "+0000"


def _number(value: float) -> str:
    return f"{round(value, 1):g}"


def build_oru(
    *,
    clinic_slug: str,
    record_number: str,
    device_id: str,
    control_id: str,
    observed_at: dt.datetime,
    vitals: Mapping[str, float],
    coding: str = "mdc",
) -> str:
    """One ORU^R01 (v2.5.1, UTF-8) with an OBX per vital, segments ended by CR."""
    table = CODINGS[coding]
    stamp = _ts(observed_at)
    segments = [
        f"MSH|^~\\&|{device_id}|{clinic_slug}|KETACARE|{clinic_slug}|{stamp}||ORU^R01^ORU_R01|{control_id}|P|2.5.1"
        "|||AL|NE||UNICODE UTF-8",
        f"PID|||{record_number}^^^{clinic_slug}^MR",
        "PV1||I",
        f"OBR|1|{control_id}^{device_id}||182777000^monitoring of patient^SCT|||{stamp}",
    ]
    for number, (kind, value) in enumerate(vitals.items(), start=1):
        identifier, unit = table[kind]
        segments.append(
            f"OBX|{number}|NM|{identifier}|1.{number}|{_number(value)}|{unit}|||||F|||{stamp}||||{device_id}"
        )
    return "\r".join(segments) + "\r"


def messages_for(
    points: Iterable[VitalsPoint],
    *,
    clinic_slug: str,
    record_number: str,
    device_id: str,
    coding: str = "mdc",
    control_prefix: str | None = None,
) -> list[tuple[str, str]]:
    """(control id, message) for each reading; control ids unique per run unless a prefix is given."""
    prefix = control_prefix or uuid.uuid4().hex[:8]
    return [
        (
            control_id := f"{prefix}-{number:06d}",
            build_oru(
                clinic_slug=clinic_slug,
                record_number=record_number,
                device_id=device_id,
                control_id=control_id,
                observed_at=point.observed_at,
                vitals=point.values,
                coding=coding,
            ),
        )
        for number, point in enumerate(points)
    ]


@dataclass(frozen=True)
class Reply:
    ack_code: str  # MSA-1: AA, AE or AR
    control_id: str  # MSA-2: the control id of the message acknowledged
    error_code: str  # ERR-3.1, '' on AA
    text: str  # ERR-8
    raw: str


def read_reply(message: bytes) -> Reply:
    text = message.decode("utf-8", errors="replace")
    segments = [s for s in text.replace("\n", "\r").split("\r") if s]
    fs = text[3] if text.startswith("MSH") and len(text) > 3 else "|"
    fields: dict[str, list[str]] = {}
    for segment in segments:
        fields.setdefault(segment[:3], segment.split(fs))
    msa = fields.get("MSA", [])
    err = fields.get("ERR", [])

    def at(values: list[str], index: int) -> str:
        return values[index] if index < len(values) else ""

    return Reply(
        ack_code=at(msa, 1),
        control_id=at(msa, 2),
        error_code=at(err, 3).split("^")[0],
        text=at(err, 8),
        raw=text,
    )


class MonitorConnection:
    """One monitor's TCP connection: send a message, wait for its acknowledgement."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 30.0) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout_s)
        self._frames = FrameReader()
        self._pending: list[bytes] = []

    def __enter__(self) -> MonitorConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close()

    def set_timeout(self, seconds: float) -> None:
        self._socket.settimeout(seconds)

    def send_raw(self, data: bytes) -> None:
        self._socket.sendall(data)

    def receive(self) -> Reply:
        """The next acknowledgement; ConnectionError when the listener closed the connection."""
        while not self._pending:
            data = self._socket.recv(65536)
            if not data:
                raise ConnectionError("the listener closed the connection")
            self._pending.extend(self._frames.feed(data))
        return read_reply(self._pending.pop(0))

    def send(self, message: str) -> Reply:
        self.send_raw(frame(message.encode("utf-8")))
        return self.receive()


@dataclass
class SendReport:
    acknowledged: list[str] = field(default_factory=list)  # control ids answered AA
    refused: dict[str, Reply] = field(default_factory=dict)  # control ids answered AE/AR
    unanswered: list[str] = field(default_factory=list)  # not sent, or no answer (connection lost)
    error: str = ""


def send_messages(
    host: str,
    port: int,
    messages: Sequence[tuple[str, str]],
    *,
    timeout_s: float = 30.0,
    pause_s: float = 0.0,
) -> SendReport:
    """Send each (control id, message) in turn on one connection, waiting for each answer
    (and ``pause_s`` seconds between messages, for a live demo).

    A lost connection ends the run: the rest count as unanswered (a monitor would resend them).
    """
    report = SendReport()
    try:
        connection = MonitorConnection(host, port, timeout_s=timeout_s)
    except OSError as exc:
        report.unanswered = [control_id for control_id, _ in messages]
        report.error = str(exc)
        return report
    with connection:
        for index, (control_id, message) in enumerate(messages):
            if index and pause_s > 0:
                time.sleep(pause_s)
            try:
                reply = connection.send(message)
            except OSError as exc:
                report.unanswered.extend(c for c, _ in messages[index:])
                report.error = str(exc) or type(exc).__name__
                break
            if reply.ack_code == "AA" and reply.control_id == control_id:
                report.acknowledged.append(control_id)
            else:
                report.refused[control_id] = reply
    return report
