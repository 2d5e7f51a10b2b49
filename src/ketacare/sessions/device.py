"""What a device feed hands to the sessions service, whatever the wire format (HL7 v2 over
MLLP, or the REST batch endpoint): observations already mapped to KetaCare's vital-sign kinds
and units. Pure data; the HL7 parser builds these, ``monitoring.ingest_device_batch`` stores them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# The vital-sign kinds a session records, with the unit KetaCare stores them in (UCUM).
VITAL_UNITS: dict[str, str] = {
    "sbp": "mm[Hg]",
    "dbp": "mm[Hg]",
    "map": "mm[Hg]",
    "hr": "/min",
    "spo2": "%",
    "rr": "/min",
    "temp_c": "Cel",
    "etco2": "mm[Hg]",
}
# The same units as staff read them on a page (UCUM codes stay in the API, HL7 and FHIR).
VITAL_DISPLAY_UNITS: dict[str, str] = {
    kind: {"mm[Hg]": "mmHg", "Cel": "°C"}.get(unit, unit) for kind, unit in VITAL_UNITS.items()
}
VITAL_LABELS: dict[str, str] = {
    "sbp": "Systolic BP",
    "dbp": "Diastolic BP",
    "map": "Mean arterial pressure",
    "hr": "Heart rate",
    "spo2": "SpO2",
    "rr": "Respiratory rate",
    "temp_c": "Temperature",
    "etco2": "End-tidal CO2",
}


@dataclass(frozen=True)
class DeviceObservation:
    kind: str  # a key of VITAL_UNITS
    value: float  # in VITAL_UNITS[kind]
    observed_at: dt.datetime  # timezone-aware


@dataclass(frozen=True)
class DeviceBatch:
    clinic_slug: str  # HL7: MSH-4 sending facility; REST: the token's clinic
    record_number: str  # HL7: PID-3; the patient's record number in that clinic
    device_id: str  # HL7: MSH-3 sending application (or OBX-18); REST: the body's device_id
    source: str  # "hl7" or "rest"
    control_id: str | None  # HL7 MSH-10 (duplicates are ignored by it); REST: optional batch id
    observations: tuple[DeviceObservation, ...]


@dataclass(frozen=True)
class IngestResult:
    session_id: int
    stored: int  # observations stored now
    duplicate: bool  # the control id was seen before: nothing stored, acknowledge again
    alarms_raised: tuple[int, ...]


class DeviceRejected(Exception):
    """A batch the service refuses as a whole; nothing of it is stored.

    ``code``: unknown_clinic, unknown_patient, no_active_session, implausible, invalid.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
