"""Which OBX-3 observation identifiers are which KetaCare vital, and how OBX-6 units convert.

Pure data and lookups. Two code systems are understood (HL7 table 0396 names):

- ``LN``: LOINC, the codes the project already sources (clinical-facts.md section 7.1);
- ``MDC``: ISO/IEEE 11073-10101 nomenclature, what bedside monitors (Philips, GE, Mindray and
  IHE PCD gateways) put in OBX-3, e.g. ``150021^MDC_PRESS_BLD_NONINV_SYS^MDC``.

Tags follow clinical-facts.md: ``V`` seen in the cited source; ``V*`` seen only in secondary
material (vendor sample messages, open-source monitor code); ``M`` from memory, not found in any
source checked: verify before relying on it. An identifier that is not in this table is skipped,
never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ketacare.sessions.device import VITAL_UNITS

LOINC = "LN"
MDC = "MDC"


@dataclass(frozen=True)
class ObservationCode:
    system: str  # LN or MDC
    code: str
    name: str  # LOINC long common name, or the 11073 reference id (MDC_...)
    kind: str  # a key of sessions.device.VITAL_UNITS
    source: str
    tag: str  # V, V* or M


_LOINC_VITALS = (
    "LOINC (loinc.org): the codes of the FHIR R4 vital-signs profile (hl7.org/fhir/R4/observation-vitalsigns)"
)
_DK_CORE = "HL7 Denmark DK Core IG, ValueSet dk-core-IEEEBasicObservation (hl7dk/dk-core)"
_PHD = "HL7 Personal Health Device IG, Observation bloodPress-1.0.1 (hl7.org/fhir/uv/phd)"
_US_CORE = "US Core IG, Observation satO2-fiO2 example (hl7.org/fhir/us/core)"
_FHIR_MBP = "FHIR R4 core example observation-example-mbp; DK Core LoincBasicObservation"
_VENDOR = "IHE PCD / GE-style sample ORU^R01 messages in public monitor-gateway code"

OBSERVATION_CODES: tuple[ObservationCode, ...] = (
    # --- LOINC --------------------------------------------------------------------------
    ObservationCode(LOINC, "8480-6", "Systolic blood pressure", "sbp", _LOINC_VITALS, "V"),
    ObservationCode(LOINC, "8462-4", "Diastolic blood pressure", "dbp", _LOINC_VITALS, "V"),
    ObservationCode(LOINC, "8478-0", "Mean blood pressure", "map", _FHIR_MBP, "V"),
    ObservationCode(LOINC, "8867-4", "Heart rate", "hr", _LOINC_VITALS, "V"),
    ObservationCode(
        LOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "spo2", _LOINC_VITALS, "V"
    ),
    # Tagged [M] in the facts file; seen beside 59408-5 in the US Core example, so V here.
    ObservationCode(LOINC, "2708-6", "Oxygen saturation in Arterial blood", "spo2", _US_CORE, "V"),
    ObservationCode(LOINC, "9279-1", "Respiratory rate", "rr", _LOINC_VITALS, "V"),
    ObservationCode(LOINC, "8310-5", "Body temperature", "temp_c", _LOINC_VITALS, "V"),
    ObservationCode(
        LOINC,
        "19889-5",
        "Carbon dioxide [Partial pressure] in Exhaled gas --at end expiration",
        "etco2",
        "HL7 Japan anesthesia-chart example and an open-source EMS code list",
        "V*",
    ),
    # --- IEEE 11073-10101 (MDC) -----------------------------------------------------------
    ObservationCode(MDC, "150021", "MDC_PRESS_BLD_NONINV_SYS", "sbp", _DK_CORE, "V"),
    ObservationCode(MDC, "150022", "MDC_PRESS_BLD_NONINV_DIA", "dbp", _DK_CORE, "V"),
    ObservationCode(MDC, "150023", "MDC_PRESS_BLD_NONINV_MEAN", "map", _DK_CORE, "V"),
    # Invasive arterial line. Monitors label 150033-35 MDC_PRESS_BLD_ART_{SYS,DIA,MEAN}; the
    # nomenclature's name for them is MDC_PRESS_BLD_ART_ABP_*. 150017-19 (generic arterial) from memory.
    ObservationCode(MDC, "150033", "MDC_PRESS_BLD_ART_ABP_SYS", "sbp", _VENDOR, "V*"),
    ObservationCode(MDC, "150034", "MDC_PRESS_BLD_ART_ABP_DIA", "dbp", _VENDOR, "V*"),
    ObservationCode(MDC, "150035", "MDC_PRESS_BLD_ART_ABP_MEAN", "map", _VENDOR, "V*"),
    ObservationCode(MDC, "150017", "MDC_PRESS_BLD_ART_SYS", "sbp", "not found in the sources checked", "M"),
    ObservationCode(MDC, "150018", "MDC_PRESS_BLD_ART_DIA", "dbp", "not found in the sources checked", "M"),
    ObservationCode(MDC, "150019", "MDC_PRESS_BLD_ART_MEAN", "map", "not found in the sources checked", "M"),
    ObservationCode(MDC, "147842", "MDC_ECG_HEART_RATE", "hr", _DK_CORE, "V"),
    ObservationCode(MDC, "149530", "MDC_PULS_OXIM_PULS_RATE", "hr", _DK_CORE, "V"),
    ObservationCode(MDC, "149514", "MDC_PULS_RATE", "hr", _DK_CORE, "V"),
    ObservationCode(MDC, "149546", "MDC_PULS_RATE_NON_INV", "hr", _DK_CORE, "V"),
    ObservationCode(MDC, "150456", "MDC_PULS_OXIM_SAT_O2", "spo2", _DK_CORE + "; " + _US_CORE, "V"),
    ObservationCode(MDC, "151562", "MDC_RESP_RATE", "rr", _DK_CORE, "V"),
    ObservationCode(MDC, "151578", "MDC_TTHOR_RESP_RATE", "rr", _DK_CORE, "V"),
    ObservationCode(MDC, "151594", "MDC_CO2_RESP_RATE", "rr", _DK_CORE, "V"),
    ObservationCode(MDC, "150364", "MDC_TEMP_BODY", "temp_c", _DK_CORE, "V"),
    ObservationCode(MDC, "150344", "MDC_TEMP", "temp_c", _VENDOR, "V*"),
    ObservationCode(MDC, "150368", "MDC_TEMP_CORE", "temp_c", _DK_CORE, "V"),
    ObservationCode(MDC, "150392", "MDC_TEMP_TYMP", "temp_c", _DK_CORE, "V"),
    ObservationCode(MDC, "188424", "MDC_TEMP_ORAL", "temp_c", _DK_CORE, "V"),
    ObservationCode(MDC, "188452", "MDC_TEMP_AXILLA", "temp_c", _DK_CORE, "V"),
    # The reference id is used by open-source 11073 device code; the number was not confirmed.
    ObservationCode(MDC, "151708", "MDC_AWAY_CO2_ET", "etco2", "not found in the sources checked", "M"),
)

_LOINC_CODE = re.compile(r"\d{1,7}-\d")
_BY_LOINC = {c.code: c for c in OBSERVATION_CODES if c.system == LOINC}
_BY_MDC = {c.code: c for c in OBSERVATION_CODES if c.system == MDC}
_BY_MDC_REFID = {c.name: c for c in OBSERVATION_CODES if c.system == MDC}
# Other spellings of the two systems seen in OBX-3.3 (table 0396 is LN and MDC).
_LOINC_NAMES = frozenset({"LN", "LOINC"})
_MDC_NAMES = frozenset({"MDC", "ISO11073", "IEEE11073", "X73"})


def lookup(identifier: str, text: str = "", system: str = "") -> ObservationCode | None:
    """The mapping for one coded element (identifier^text^coding system), or None."""
    identifier, text, system = identifier.strip(), text.strip(), system.strip().upper()
    if system in _LOINC_NAMES:
        return _BY_LOINC.get(identifier)
    if system in _MDC_NAMES:
        return _BY_MDC.get(identifier) or _BY_MDC_REFID.get(identifier) or _BY_MDC_REFID.get(text)
    if system:
        return None  # a local code system: only the sender knows what it means
    if _LOINC_CODE.fullmatch(identifier):
        return _BY_LOINC.get(identifier)
    return _BY_MDC.get(identifier) or _BY_MDC_REFID.get(identifier) or _BY_MDC_REFID.get(text)


def lookup_any(coded: Iterable[tuple[str, str, str]]) -> ObservationCode | None:
    """The first of several coded elements that maps (OBX-3's identifier, then its alternate)."""
    for identifier, text, system in coded:
        if identifier or text:
            found = lookup(identifier, text, system)
            if found is not None:
                return found
    return None


# --- units --------------------------------------------------------------------------------

MMHG_PER_KPA = 1000 / 133.322387415  # 1 mmHg = 133.322387415 Pa (definition)

# What senders write in OBX-6 (UCUM code, plain text, or the 11073 unit code and its reference
# id), folded to lower case, mapped to one UCUM code. The numeric 11073 unit codes are V*: seen
# in vendor sample messages (266016 MDC_DIM_MMHG, 264864 MDC_DIM_BEAT_PER_MIN, 262688
# MDC_DIM_PERCENT, 268192 MDC_DIM_DEGC, 264928 MDC_DIM_RESP_PER_MIN); Fahrenheit and kPa are
# matched by name only because their numbers disagreed between sources.
_UNIT_ALIASES: dict[str, str] = {
    **dict.fromkeys(["mm[hg]", "mmhg", "mm hg", "266016", "mdc_dim_mmhg"], "mm[Hg]"),
    **dict.fromkeys(["kpa", "mdc_dim_kilo_pascal", "mdc_dim_kilo_pa"], "kPa"),
    **dict.fromkeys(
        [
            "/min",
            "1/min",
            "min-1",
            "{beat}/min",
            "{beats}/min",
            "beats/min",
            "bpm",
            "{breath}/min",
            "{breaths}/min",
            "breaths/min",
            "rpm",
            "264864",
            "264928",
            "mdc_dim_beat_per_min",
            "mdc_dim_resp_per_min",
        ],
        "/min",
    ),
    **dict.fromkeys(["%", "262688", "mdc_dim_percent", "percent"], "%"),
    **dict.fromkeys(["cel", "degc", "°c", "268192", "mdc_dim_degc"], "Cel"),
    **dict.fromkeys(["[degf]", "degf", "°f", "mdc_dim_fahr", "mdc_dim_degf"], "[degF]"),
}


def _identity(value: float) -> float:
    return value


def _kpa_to_mmhg(value: float) -> float:
    return value * MMHG_PER_KPA


def _degf_to_cel(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


# For each unit KetaCare stores (sessions.device.VITAL_UNITS), the units it accepts and how.
_CONVERSIONS: dict[str, dict[str, Callable[[float], float]]] = {
    "mm[Hg]": {"mm[Hg]": _identity, "kPa": _kpa_to_mmhg},
    "/min": {"/min": _identity},
    "%": {"%": _identity},
    "Cel": {"Cel": _identity, "[degF]": _degf_to_cel},
}


def ucum_unit(candidates: Iterable[str]) -> str | None:
    """The UCUM code of the first recognised spelling (OBX-6 identifier, then its text)."""
    for candidate in candidates:
        found = _UNIT_ALIASES.get(candidate.strip().casefold())
        if found is not None:
            return found
    return None


class UnitNotUnderstood(ValueError):
    """OBX-6 names a unit this table does not know, or one that does not fit the vital."""


def to_stored_unit(kind: str, value: float, unit_candidates: Iterable[str]) -> float:
    """``value`` converted into the unit KetaCare stores ``kind`` in.

    No unit at all means the stored unit (monitors often leave OBX-6 empty for mmHg and /min);
    the service's plausibility ranges catch a Fahrenheit temperature sent without a unit.
    """
    candidates = [c for c in unit_candidates if c.strip()]
    target = VITAL_UNITS[kind]
    if not candidates:
        return value
    unit = ucum_unit(candidates)
    convert = _CONVERSIONS[target].get(unit) if unit else None
    if convert is None:
        raise UnitNotUnderstood(f"unit {candidates[0]!r} cannot be converted to {target} for {kind}")
    return convert(value)


# IEEE 11073-20601 FLOAT special values that monitors put in OBX-5 when a probe is off:
# NaN 0x7FFFFF, NRes 0x800000, +INF 0x7FFFFE, -INF 0x800002, reserved 0x800001 (24-bit mantissa).
# V*: the NaN sentinel 8388607 is annotated in public monitor-gateway code; the rest from memory.
NOT_A_NUMBER_VALUES = frozenset({8388607.0, 8388606.0, -8388608.0, -8388607.0, -8388606.0, 8388608.0})
