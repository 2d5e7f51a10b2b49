"""The simulated monitor's vitals: plausible, deterministic, the shape the demo needs."""

from __future__ import annotations

import datetime as dt

from ketacare.interop.hl7v2 import monitor
from ketacare.interop.hl7v2.parse import parse_oru
from ketacare.knowledge.sessions import session_rules

T0 = dt.datetime(2026, 3, 2, 14, 0, tzinfo=dt.UTC)


def test_a_course_is_plausible_for_the_sessions_service_and_repeatable() -> None:
    points = monitor.trajectory(T0, 240, interval_s=30, seed=5, sbp_spike_at=100, spo2_dip_at=150)
    assert points == monitor.trajectory(T0, 240, interval_s=30, seed=5, sbp_spike_at=100, spo2_dip_at=150)
    plausible = session_rules().plausible
    for point in points:
        for kind, value in point.values.items():
            low, high = plausible[kind]
            assert low <= value <= high, (kind, value)


def test_systolic_rises_gently_to_a_plateau_with_one_spike_and_an_spo2_dip() -> None:
    points = monitor.trajectory(T0, 90, seed=1, sbp_spike_at=60, spo2_dip_at=70, spo2_dip_points=3)
    sbp = [p.values["sbp"] for p in points]
    first_ten, at_peak = sum(sbp[:10]) / 10, sum(sbp[40:50]) / 10
    assert 8 < at_peak - first_ten < 22  # about the 15 mmHg rise to the 40-minute peak
    assert sbp[60] == 190.0 and max(sbp[:60] + sbp[61:]) < 170
    spo2 = [p.values["spo2"] for p in points]
    assert spo2[70:73] == [89.0] * 3 and min(spo2[:70] + spo2[73:]) >= 95
    assert [p.observed_at for p in points[:2]] == [T0, T0 + dt.timedelta(minutes=1)]


def test_messages_have_unique_control_ids_and_parse_back() -> None:
    points = monitor.trajectory(T0, 5)
    messages = monitor.messages_for(points, clinic_slug="north", record_number="NSP-1", device_id="BED-1")
    assert len({c for c, _ in messages}) == 5
    for (control_id, text), point in zip(messages, points, strict=True):
        batch = parse_oru(text).batch
        assert batch.control_id == control_id
        assert {o.kind: o.value for o in batch.observations} == point.values


def test_replies_are_read_back() -> None:
    reply = monitor.read_reply(
        b"MSH|^~\\&|KETACARE||BED||20260302140000+0000||ACK^R01^ACK|K1|P|2.5.1\r"
        b"MSA|AE|C-9\rERR||PID^1^3|204^Unknown key identifier^HL70357|E||||No patient\r"
    )
    assert (reply.ack_code, reply.control_id, reply.error_code, reply.text) == (
        "AE",
        "C-9",
        "204",
        "No patient",
    )
