"""The protocol library: built-in templates from ``data/protocols.toml``, each with its source."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

from ketacare.knowledge import _load

DOSE_UNITS = ("mg/kg/h", "mg/kg", "mg/h", "mg/kg/day", "mg", "percent")
ROUTES = (
    "iv_infusion",
    "iv_bolus",
    "oral",
    "sublingual",
    "intranasal",
    "im",
    "topical",
    "esketamine_nasal",
)
SETTINGS = ("outpatient", "inpatient", "icu", "home")
TAGS = ("V", "V*", "M", "design")


class ProtocolError(ValueError):
    """A protocol row that breaks a rule (no source, unknown unit, range upside down)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class Protocol:
    key: str
    version: int
    name: str
    route: str
    dose_unit: str
    dose_min: float
    dose_max: float
    dose_default: float
    duration_min: int
    sessions_min: int
    sessions_max: int
    interval_days: int
    setting: str
    monitoring: str
    source: str
    tag: str
    premedication: tuple[str, ...] = ()
    titration_start: float | None = None
    titration_step: float | None = None
    dose_step: float | None = None
    doses_per_day: int | None = None
    max_doses_per_episode: int | None = None
    # A sourced, explained exception to a guideline limit this protocol's own range falls
    # outside of (limit key -> why, naming the source); shown with the finding.
    exceptions: dict[str, str] = field(default_factory=dict, compare=False)
    builtin: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_iv(self) -> bool:
        return self.route in ("iv_infusion", "iv_bolus")

    @property
    def clinic_editable(self) -> bool:
        return self.tag in ("M", "design")


_FIELD_NAMES = {f.name for f in fields(Protocol)} - {"builtin", "extra"}


def validate_protocol(row: dict[str, Any]) -> dict[str, str]:
    """Every rule a protocol row must meet; an empty dict means it is usable."""
    errors: dict[str, str] = {}
    if not str(row.get("source") or "").strip():
        errors["source"] = "A protocol needs its source (a guideline, a trial or 'clinic decision')."
    if row.get("tag") not in TAGS:
        errors["tag"] = "Tag it V, V*, M or design."
    if row.get("dose_unit") not in DOSE_UNITS:
        errors["dose_unit"] = f"Dose unit must be one of {', '.join(DOSE_UNITS)}."
    if row.get("route") not in ROUTES:
        errors["route"] = f"Route must be one of {', '.join(ROUTES)}."
    if row.get("setting") not in SETTINGS:
        errors["setting"] = f"Setting must be one of {', '.join(SETTINGS)}."
    try:
        low, high, default = float(row["dose_min"]), float(row["dose_max"]), float(row["dose_default"])
        if not 0 < low <= default <= high:
            errors["dose_default"] = "Need 0 < minimum <= default <= maximum."
    except (KeyError, TypeError, ValueError):
        errors["dose_min"] = "Give the dose range as numbers."
    try:
        if not 1 <= int(row["sessions_min"]) <= int(row["sessions_max"]):
            errors["sessions_max"] = "Need 1 <= minimum sessions <= maximum sessions."
        if int(row["duration_min"]) < 0 or int(row["interval_days"]) < 1:
            errors["duration_min"] = "Duration must be 0 or more minutes, interval at least 1 day."
    except (KeyError, TypeError, ValueError):
        errors["sessions_min"] = "Give sessions, duration and interval as whole numbers."
    exceptions = row.get("exceptions") or {}
    if not isinstance(exceptions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in exceptions.items()
    ):
        errors["exceptions"] = "An exception names a limit and explains it with its source."
    if not str(row.get("key") or "").strip():
        errors["key"] = "A protocol needs a key."
    if not str(row.get("name") or "").strip():
        errors["name"] = "A protocol needs a name."
    return errors


def protocol_from_row(row: dict[str, Any], *, builtin: bool) -> Protocol:
    errors = validate_protocol(row)
    if errors:
        raise ProtocolError(errors)
    known = {k: v for k, v in row.items() if k in _FIELD_NAMES}
    known["premedication"] = tuple(row.get("premedication") or ())
    known["exceptions"] = dict(row.get("exceptions") or {})
    for name in ("dose_min", "dose_max", "dose_default"):
        known[name] = float(row[name])
    return Protocol(**known, builtin=builtin)


@cache
def builtin_protocols() -> tuple[Protocol, ...]:
    return tuple(protocol_from_row(row, builtin=True) for row in _load("protocols.toml")["protocol"])
