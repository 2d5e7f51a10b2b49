"""OBX-3 identifiers and OBX-6 units: what maps to which vital, and how units convert."""

from __future__ import annotations

import pytest

from ketacare.interop.hl7v2 import codes
from ketacare.sessions.device import VITAL_UNITS


def test_every_code_names_a_known_vital_a_source_and_a_tag() -> None:
    for entry in codes.OBSERVATION_CODES:
        assert entry.kind in VITAL_UNITS, entry
        assert entry.source.strip(), entry
        assert entry.tag in ("V", "V*", "M"), entry
        assert entry.system in (codes.LOINC, codes.MDC), entry


def test_no_identifier_is_mapped_twice() -> None:
    keys = [(c.system, c.code) for c in codes.OBSERVATION_CODES]
    assert len(keys) == len(set(keys))


def test_every_vital_kind_has_a_loinc_and_a_monitor_code() -> None:
    for kind in VITAL_UNITS:
        systems = {c.system for c in codes.OBSERVATION_CODES if c.kind == kind}
        assert systems == {codes.LOINC, codes.MDC}, kind


@pytest.mark.parametrize(
    ("identifier", "text", "system", "kind"),
    [
        ("8480-6", "Systolic blood pressure", "LN", "sbp"),
        ("8462-4", "", "LN", "dbp"),
        ("59408-5", "", "LN", "spo2"),
        ("2708-6", "", "LN", "spo2"),
        ("8867-4", "", "", "hr"),  # no coding system: a LOINC-shaped code is LOINC
        ("150021", "MDC_PRESS_BLD_NONINV_SYS", "MDC", "sbp"),
        ("150033", "MDC_PRESS_BLD_ART_SYS", "MDC", "sbp"),  # GE label for 150033
        ("147842", "", "MDC", "hr"),
        ("150456", "", "", "spo2"),  # no coding system: a number is an MDC code
        ("151562", "", "mdc", "rr"),
        ("", "MDC_TEMP_BODY", "MDC", "temp_c"),  # only the reference id
        ("MDC_PULS_OXIM_SAT_O2", "", "MDC", "spo2"),
    ],
)
def test_known_identifiers_map(identifier: str, text: str, system: str, kind: str) -> None:
    found = codes.lookup(identifier, text, system)
    assert found is not None and found.kind == kind


@pytest.mark.parametrize(
    ("identifier", "text", "system"),
    [
        ("150021", "NBPs", "99PHI"),  # a local code system: never guessed
        ("8480-6", "", "MDC"),  # a LOINC code under the wrong system
        ("150021", "", "LN"),
        ("12345-6", "Something else", "LN"),
        ("999999", "", "MDC"),
        ("", "", ""),
    ],
)
def test_unknown_or_mislabelled_identifiers_do_not_map(identifier: str, text: str, system: str) -> None:
    assert codes.lookup(identifier, text, system) is None


def test_the_alternate_identifier_is_tried_after_the_primary() -> None:
    found = codes.lookup_any([("NBP-S", "NBP systolic", "99LOCAL"), ("8480-6", "", "LN")])
    assert found is not None and found.kind == "sbp"


@pytest.mark.parametrize(
    ("kind", "value", "units", "expected"),
    [
        ("sbp", 120.0, ["mm[Hg]"], 120.0),
        ("sbp", 120.0, ["266016", "MDC_DIM_MMHG"], 120.0),
        ("sbp", 16.0, ["kPa"], 16.0 * 1000 / 133.322387415),
        ("temp_c", 98.6, ["[degF]"], 37.0),
        ("temp_c", 36.6, ["268192", "MDC_DIM_DEGC"], 36.6),
        ("hr", 72.0, ["{beats}/min"], 72.0),
        ("hr", 72.0, ["bpm"], 72.0),
        ("spo2", 97.0, ["%"], 97.0),
        ("rr", 14.0, ["", "MDC_DIM_RESP_PER_MIN"], 14.0),  # the identifier empty, the text known
        ("rr", 14.0, [], 14.0),  # no unit: the stored unit
        ("rr", 14.0, ["", " "], 14.0),
    ],
)
def test_units_convert_to_the_stored_unit(kind: str, value: float, units: list[str], expected: float) -> None:
    assert codes.to_stored_unit(kind, value, units) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kind", "units"),
    [
        ("sbp", ["cm[H2O]"]),  # a pressure unit this table does not convert
        ("sbp", ["%"]),  # a unit of another dimension
        ("temp_c", ["K"]),
        ("etco2", ["%"]),  # end-tidal CO2 in percent needs the barometric pressure
        ("hr", ["Hz"]),
    ],
)
def test_units_that_do_not_fit_are_refused(kind: str, units: list[str]) -> None:
    with pytest.raises(codes.UnitNotUnderstood):
        codes.to_stored_unit(kind, 1.0, units)
