"""One ORU^R01 message -> one DeviceBatch, and every refusal with its HL7 table 0357 code."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ketacare.interop.hl7v2 import monitor
from ketacare.interop.hl7v2.parse import ParseError, decode, parse_oru, parse_timestamp, read_header

T0 = dt.datetime(2026, 3, 2, 14, 5, tzinfo=dt.UTC)
MSH = "MSH|^~\\&|BEDSIDE-7|North|KETACARE|North|20260302140500||ORU^R01^ORU_R01|MSG0001|P|2.5.1"
PID = "PID|||NSP-000042^^^NSP^MR~999^^^SSN||Doe^Jane"
OBR = "OBR|1|||182777000^monitoring of patient^SCT|||20260302140500"


def message(*segments: str) -> str:
    return "\r".join(segments) + "\r"


def obx(
    n: int, code: str, value: str, unit: str = "", status: str = "F", time: str = "", extra: str = ""
) -> str:
    return f"OBX|{n}|NM|{code}||{value}|{unit}|||||{status}|||{time}{extra}"


def refusal(text: str) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse_oru(text)
    return caught.value


def test_a_monitor_message_in_mdc_codes_becomes_a_batch() -> None:
    point = monitor.VitalsPoint(T0, {"sbp": 131.0, "dbp": 82.0, "hr": 77.0, "spo2": 97.0, "temp_c": 36.8})
    text = monitor.build_oru(
        clinic_slug="north",
        record_number="NSP-000042",
        device_id="BED-7",
        control_id="C-1",
        observed_at=point.observed_at,
        vitals=point.values,
    )
    parsed = parse_oru(text)
    batch = parsed.batch
    assert (batch.clinic_slug, batch.record_number, batch.device_id, batch.control_id, batch.source) == (
        "north",
        "NSP-000042",
        "BED-7",
        "C-1",
        "hl7",
    )
    assert {o.kind: o.value for o in batch.observations} == point.values
    assert {o.observed_at for o in batch.observations} == {T0}
    assert parsed.skipped == ()


def test_a_loinc_message_becomes_the_same_batch() -> None:
    values = {"sbp": 118.0, "dbp": 70.0, "map": 86.0, "hr": 64.0, "spo2": 99.0, "rr": 12.0, "temp_c": 36.5}
    mdc, loinc = (
        parse_oru(
            monitor.build_oru(
                clinic_slug="north",
                record_number="NSP-1",
                device_id="BED-1",
                control_id="C",
                observed_at=T0,
                vitals=values,
                coding=coding,
            )
        ).batch
        for coding in ("mdc", "loinc")
    )
    assert mdc == loinc


def test_header_fields_give_clinic_patient_and_device() -> None:
    parsed = parse_oru(message(MSH, PID, OBR, obx(1, "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "120")))
    assert parsed.batch.clinic_slug == "north"  # MSH-4 lower-cased: slugs are lower case
    assert parsed.batch.record_number == "NSP-000042"  # PID-3, first repetition, first component
    assert parsed.batch.device_id == "BEDSIDE-7"
    assert parsed.header.control_id == "MSG0001"


def test_the_equipment_identifier_in_obx18_wins_over_msh3() -> None:
    text = message(MSH, PID, OBR, obx(1, "150021^^MDC", "120", extra="||||0800190A1B2C^B1X5_GE"))
    assert parse_oru(text).batch.device_id == "0800190A1B2C"


def test_msh3_universal_id_is_used_when_the_namespace_is_empty() -> None:
    text = message(MSH.replace("BEDSIDE-7", "^0011223344556677^EUI-64"), PID, OBR, obx(1, "150021^^MDC", "1"))
    assert parse_oru(text).batch.device_id == "0011223344556677"


def test_observation_time_comes_from_obx14_with_its_offset() -> None:
    text = message(MSH, PID, OBR, obx(1, "8480-6^^LN", "120", time="20260302090500-0500"))
    assert parse_oru(text).batch.observations[0].observed_at == dt.datetime(2026, 3, 2, 14, 5, tzinfo=dt.UTC)


def test_observation_time_falls_back_to_obr7_and_no_offset_means_utc() -> None:
    text = message(MSH, PID, OBR, obx(1, "8480-6^^LN", "120"))
    assert parse_oru(text).batch.observations[0].observed_at == dt.datetime(2026, 3, 2, 14, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("202603021405", dt.datetime(2026, 3, 2, 14, 5, tzinfo=dt.UTC)),
        ("20260302140509.25", dt.datetime(2026, 3, 2, 14, 5, 9, 250000, tzinfo=dt.UTC)),
        ("20260302140509+0130", dt.datetime(2026, 3, 2, 12, 35, 9, tzinfo=dt.UTC)),
        (
            "20260302000000-0030",
            dt.datetime(2026, 3, 2, 0, 30, tzinfo=dt.UTC),
        ),  # the hl7 package gets this wrong
    ],
)
def test_timestamps(value: str, expected: dt.datetime) -> None:
    assert parse_timestamp(value, "OBX", 14) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026",
        "20260302",
        "2026030214",
        "20261302140500",
        "20260230140500",
        "20260302246000",
        "2026-03-02",
        "20260302140500+2500",
        "20260302140500+0075",
        "20260302140500Z",
        "00010101000000+0100",
        "now",
    ],
)
def test_bad_or_too_coarse_timestamps_are_data_type_errors(value: str) -> None:
    error = refusal(message(MSH, PID, OBR, obx(1, "8480-6^^LN", "120", time=value)))
    assert (error.code, error.segment, error.field, error.ack_code) == (102, "OBX", 14, "AE")


def test_values_convert_kpa_and_fahrenheit() -> None:
    text = message(
        MSH,
        PID,
        OBR,
        obx(1, "8480-6^^LN", "16", "kPa^kilopascal^UCUM"),
        obx(2, "8310-5^^LN", "98.6", "[degF]^^UCUM"),
    )
    values = {o.kind: o.value for o in parse_oru(text).batch.observations}
    assert values["sbp"] == pytest.approx(120.0, abs=0.1)
    assert values["temp_c"] == pytest.approx(37.0)


def test_unknown_codes_units_statuses_and_sentinels_are_skipped_the_rest_kept() -> None:
    text = message(
        MSH,
        PID,
        OBR,
        obx(1, "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "120"),
        obx(2, "150488^MDC_BLD_PERF_INDEX^MDC", "3.4"),  # perfusion index: not a vital we record
        obx(3, "150456^MDC_PULS_OXIM_SAT_O2^MDC", "8388607"),  # 11073 NaN: probe off
        obx(4, "147842^MDC_ECG_HEART_RATE^MDC", "80", status="X"),  # cannot be obtained
        obx(5, "151562^MDC_RESP_RATE^MDC", "14", "cm[H2O]"),  # a unit that does not fit
        "OBX|6||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",  # device hierarchy row
        "OBX|7|CWE|8480-6^^LN||high",
        obx(8, "150022^^MDC", ""),
    )
    parsed = parse_oru(text)
    assert [(o.kind, o.value) for o in parsed.batch.observations] == [("sbp", 120.0)]
    assert len(parsed.skipped) == 7
    assert any("OBX 2" in s and "not a vital" in s for s in parsed.skipped)


def test_structured_numeric_and_st_values() -> None:
    text = message(
        MSH,
        PID,
        OBR,
        "OBX|1|SN|8480-6^^LN||=^121|||||F",
        "OBX|2|ST|8867-4^^LN||77|||||R",
        "OBX|3|SN|9279-1^^LN||>^40|||||F",
    )
    parsed = parse_oru(text)
    assert [(o.kind, o.value) for o in parsed.batch.observations] == [("sbp", 121.0), ("hr", 77.0)]
    assert "limit" in parsed.skipped[0]


def test_line_feeds_and_crlf_end_segments_too() -> None:
    segments = (MSH, PID, OBR, obx(1, "8480-6^^LN", "120"))
    for ending in ("\n", "\r\n"):
        assert len(parse_oru(ending.join(segments) + ending).batch.observations) == 1


def test_other_encoding_characters_are_understood() -> None:
    text = message(
        "MSH#$*@%#MON#north#KC#north#20260302140500##ORU$R01#X1#P#2.5.1",
        "PID###NSP-000042$$$NSP$MR",
        "OBR#1######20260302140500",
        "OBX#1#NM#8480-6$$LN##120#mm[Hg]#####F",
    )
    parsed = parse_oru(text)
    assert parsed.batch.record_number == "NSP-000042"
    assert parsed.batch.observations[0].value == 120.0


def test_declared_latin1_is_decoded_and_undeclared_non_utf8_is_refused() -> None:
    latin = message(MSH + "||||||8859/1", "PID|||NSP-1||Müller^Jürgen", OBR, obx(1, "8480-6^^LN", "120"))
    assert parse_oru(decode(latin.encode("latin-1"))).batch.record_number == "NSP-1"
    with pytest.raises(ParseError) as caught:
        decode(latin.replace("8859/1", "").encode("latin-1"))
    assert (caught.value.code, caught.value.ack_code, caught.value.field) == (102, "AR", 18)
    with pytest.raises(ParseError) as caught:
        decode(message(MSH + "||||||ISO IR87", PID).encode())
    assert caught.value.code == 103


@pytest.mark.parametrize(
    ("text", "code", "ack_code", "where"),
    [
        ("", 100, "AR", "MSH"),
        ("PID|||1\rOBX|1|NM|8480-6^^LN||120", 100, "AR", "MSH"),
        ("MSH|^~\\&", 101, "AR", "MSH"),
        (message(MSH.replace("^~\\&", "^~\\"), PID), 102, "AR", "MSH"),  # three encoding characters
        (message(MSH.replace("^~\\&", "^^\\&"), PID), 102, "AR", "MSH"),  # repeated
        (message(MSH.replace("^~\\&", "^~A&"), PID), 102, "AR", "MSH"),  # alphanumeric
        (message(MSH.replace("|^~\\&|", " ^~\\& "), PID), 102, "AR", "MSH"),  # whitespace separator
        (message(MSH.replace("ORU^R01^ORU_R01", "ADT^A01"), PID), 200, "AR", "MSH"),
        (message(MSH.replace("ORU^R01^ORU_R01", "ORU^R30"), PID), 201, "AR", "MSH"),
        (message(MSH.replace("ORU^R01^ORU_R01", ""), PID), 101, "AR", "MSH"),
        (message(MSH.replace("|MSG0001|", "||"), PID), 101, "AR", "MSH"),
        (message(MSH.replace("|P|", "|T|"), PID), 202, "AR", "MSH"),
        (message(MSH.replace("2.5.1", "3.0"), PID), 203, "AR", "MSH"),
        (message(MSH.replace("2.5.1", ""), PID), 101, "AR", "MSH"),
        (
            message(MSH.replace("|North|KETACARE", "||KETACARE"), PID, OBR, obx(1, "8480-6^^LN", "1")),
            101,
            "AR",
            "MSH",
        ),
        (message(MSH, OBR, obx(1, "8480-6^^LN", "120")), 100, "AE", "PID"),
        (message(MSH, PID, OBR), 100, "AE", "OBX"),
        (message(MSH, PID, obx(1, "8480-6^^LN", "120")), 100, "AE", "OBX"),  # OBX before any OBR
        (message(MSH, OBR, PID, obx(1, "8480-6^^LN", "120")), 100, "AE", "PID"),
        (message(MSH, PID, PID, OBR, obx(1, "8480-6^^LN", "120")), 100, "AE", "PID"),
        (message(MSH, PID, OBR, obx(1, "8480-6^^LN", "120"), MSH), 100, "AE", "MSH"),
        (message(MSH, "PID|||^^^NSP", OBR, obx(1, "8480-6^^LN", "120")), 101, "AE", "PID"),
        (message(MSH, PID, OBR, "this is not a segment"), 100, "AE", ""),
        (message(MSH, PID, OBR, "pid|||1"), 100, "AE", ""),
        (message(MSH, PID, OBR, obx(1, "8480-6^^LN", "12O")), 102, "AE", "OBX"),
        (message(MSH, PID, OBR, obx(1, "8480-6^^LN", "1e3")), 102, "AE", "OBX"),
        (message(MSH, PID, OBR, obx(1, "8480-6^^LN", "NaN")), 102, "AE", "OBX"),
        (message(MSH, PID, OBR, obx(1, "8480-6^^LN", "120", status="Q")), 103, "AE", "OBX"),
        (message(MSH, PID, OBR, obx(1, "1234-5^Unknown^LN", "120")), 103, "AE", "OBX"),
        (message(MSH, PID, OBR.replace("20260302140500", ""), obx(1, "8480-6^^LN", "120")), 101, "AE", "OBX"),
        (message(MSH, PID, OBR, obx(1, "8480-6^^LN", "120") + "\x00"), 102, "AR", ""),
    ],
)
def test_refusals_carry_an_hl7_error_code(text: str, code: int, ack_code: str, where: str) -> None:
    error = refusal(text)
    assert (error.code, error.ack_code, error.segment) == (code, ack_code, where), error.message
    assert error.message


def test_read_header_reads_what_it_can_of_a_broken_message() -> None:
    header = read_header("MSH|^~\\&|MON|north|||x||ORU^R01|ID-9|P|2.5.1\rgarbage")
    assert header is not None and header.control_id == "ID-9" and header.encoding_valid
    broken = read_header("MSH|AAAA|MON|north|||x||ORU^R01|ID-9|P|2.5.1")
    assert broken is not None and broken.control_id == "ID-9" and not broken.encoding_valid
    assert read_header("PID|1") is None
    assert read_header("") is None


VALID = message(
    MSH, PID, OBR, obx(1, "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "120", "mmHg", time="20260302140500")
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_parses_or_raises_parse_error(text: str) -> None:
    try:
        parse_oru(text)
    except ParseError as error:
        assert error.code in (100, 101, 102, 103, 200, 201, 202, 203)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(0, 40), st.text(max_size=6))
def test_a_mutated_valid_message_parses_or_raises_parse_error(at: int, cut: int, insert: str) -> None:
    text = VALID[:at] + insert + VALID[at + cut :]
    try:
        parsed = parse_oru(text)
    except ParseError:
        return
    for observation in parsed.batch.observations:
        assert observation.observed_at.tzinfo is dt.UTC


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_parse_error(raw: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_oru(decode(b"MSH|^~\\&|M|n|||1||ORU^R01|1|P|2.5.1\r" + raw))


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\d{12,14}(\.\d{1,4})?([+-]\d{4})?", fullmatch=True))
def test_any_timestamp_shaped_string_parses_to_utc_or_raises_parse_error(value: str) -> None:
    try:
        stamp = parse_timestamp(value, "OBX", 14)
    except ParseError as error:
        assert error.code == 102
        return
    assert stamp.tzinfo is dt.UTC
