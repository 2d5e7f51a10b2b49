"""Request and response shapes for treatment sessions."""

from __future__ import annotations

import enum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from ketacare.knowledge.dose_limits import adult_bounds
from ketacare.knowledge.sessions import session_rules
from ketacare.sessions.device import VITAL_UNITS

Text2k = Field(min_length=1, max_length=2000)

# Input bounds from one sourced table each: the adult weight outer bounds (dose_limits.toml
# [adult]) and the vital-sign plausibility ranges (sessions.toml [plausible]), both design.
_ADULT = adult_bounds()
_PLAUSIBLE = session_rules().plausible
_ESCALATION_RANGE_S = session_rules().escalation_range_s


class PregnancyTest(enum.StrEnum):
    negative = "negative"
    positive = "positive"
    not_applicable = "not_applicable"
    not_done = "not_done"


class PrecheckIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    weight_kg: float = Field(ge=_ADULT.weight_outer_min_kg, le=_ADULT.weight_outer_max_kg)
    sbp: float = Field(ge=_PLAUSIBLE["sbp"][0], le=_PLAUSIBLE["sbp"][1])
    dbp: float = Field(ge=_PLAUSIBLE["dbp"][0], le=_PLAUSIBLE["dbp"][1])
    hr: float = Field(ge=_PLAUSIBLE["hr"][0], le=_PLAUSIBLE["hr"][1])
    spo2: float = Field(ge=_PLAUSIBLE["spo2"][0], le=_PLAUSIBLE["spo2"][1])
    rr: float | None = Field(default=None, ge=_PLAUSIBLE["rr"][0], le=_PLAUSIBLE["rr"][1])
    consent_on_file: bool = False
    ecg_on_file: bool = False
    lft_on_file: bool = False
    pregnancy_test: PregnancyTest = PregnancyTest.not_done
    escort_name: str = Field(default="", max_length=120)
    escort_phone: str = Field(default="", max_length=40)
    escort_confirmed: bool = False
    oximeter_connected: bool = False
    prescriber_on_site_id: int | None = Field(default=None, ge=1, le=2**31 - 1)


class BpDecisionIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    reason: str = Text2k


class AdminKind(enum.StrEnum):
    start = "start"
    rate_change = "rate_change"
    stop = "stop"
    bolus = "bolus"
    dose = "dose"
    premedication = "premedication"
    rescue = "rescue"


class AdministrationIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    kind: AdminKind
    drug: str = Field(default="ketamine", min_length=1, max_length=60)
    route: str | None = Field(default=None, max_length=30)
    product: str | None = Field(default=None, max_length=120)
    lot: str | None = Field(default=None, max_length=60)
    lot_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    concentration_mg_per_ml: float | None = Field(default=None, gt=0, le=500)
    rate_mg_per_h: float | None = Field(default=None, ge=0, le=2000)
    dose_mg: float | None = Field(default=None, gt=0, le=2000)
    given_at: AwareDatetime | None = None
    reason: str | None = Field(default=None, max_length=2000)
    # A prescriber's written reason to go above the plan's allowance (never past a hard limit).
    override_reason: str | None = Field(default=None, max_length=2000)


class VitalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    value: float
    observed_at: AwareDatetime | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in VITAL_UNITS:
            raise ValueError(f"Unknown vital sign; use one of {', '.join(VITAL_UNITS)}.")
        return value


class VitalsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    readings: list[VitalIn] = Field(min_length=1, max_length=500)


class DeviceBatchIn(BaseModel):
    """The REST batch a device (or its gateway) posts with a scoped API token."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    device_id: str = Field(min_length=1, max_length=120, pattern=r"^[\x21-\x7e]+$")
    record_number: str = Field(min_length=1, max_length=40)
    batch_id: str | None = Field(default=None, min_length=1, max_length=120, pattern=r"^[\x21-\x7e]+$")
    observations: list[VitalIn] = Field(min_length=1, max_length=2000)


class ScaleKey(enum.StrEnum):
    cadss6 = "cadss6"
    moaas = "moaas"
    rass = "rass"
    nrs = "nrs"


class Phase(enum.StrEnum):
    before = "before"
    during = "during"
    after = "after"


class ScoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale: ScaleKey
    items: list[int] = Field(min_length=1, max_length=30)
    phase: Phase = Phase.during
    observed_at: AwareDatetime | None = None


class NoteIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    note: str | None = Field(default=None, max_length=2000)


class AeCodeIn(BaseModel):
    """The catalogue term an "other" adverse event is coded as."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    term_key: str = Field(min_length=1, max_length=40)


class ReasonIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    reason: str = Text2k


class AdverseEventIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    term_key: str = Field(min_length=1, max_length=40)
    other_term: str | None = Field(default=None, max_length=200)
    grade: int = Field(ge=1, le=5)
    serious: bool = False
    actions: list[str] = Field(default_factory=list, max_length=10)
    medication_given: str | None = Field(default=None, max_length=200)
    outcome: str = Field(default="resolving", max_length=30)
    description: str | None = Field(default=None, max_length=4000)
    onset_at: AwareDatetime | None = None


class DischargeChecksIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_and_oriented: bool = False
    escort_present: bool = False
    instructions_given: bool = False


class DischargeIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    override_reason: str | None = Field(default=None, max_length=2000)


class AbortIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    reason: str = Text2k


class AlarmSettingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_key: str = Field(min_length=1, max_length=40)
    value: float
    enabled: bool = True


class AlarmSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: list[AlarmSettingIn] = Field(default_factory=list, max_length=40)
    escalation_s: int | None = Field(default=None, ge=_ESCALATION_RANGE_S[0], le=_ESCALATION_RANGE_S[1])
    # Design defaults of sessions.toml a clinic may set (ranges there; checked by the service).
    vitals_within_pct: float | None = Field(default=None, allow_inf_nan=False)
    spo2_drop_points: float | None = Field(default=None, allow_inf_nan=False)
    spo2_floor_pct: float | None = Field(default=None, allow_inf_nan=False)
    mute_s: int | None = None


class SessionWasteIn(BaseModel):
    """The unused remainder of a container, wasted in front of a witness (the ledger records it)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    lot_id: int = Field(ge=1, le=2**31 - 1)
    amount_mg: float = Field(gt=0, le=100_000)
    reason: str = Field(min_length=1, max_length=500)
    witness_user_id: int = Field(ge=1, le=2**31 - 1)
    witness_password: str = Field(min_length=1, max_length=200)
