"""Request and response shapes for plans, schedules, care-plan items, responses, consent, prices."""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator

from ketacare import clinic_time
from ketacare.validation import LocalTime

TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
KEY = re.compile(r"^[a-z0-9_]+$")


class Purpose(enum.StrEnum):
    series = "series"
    booster = "booster"


class CareCategory(enum.StrEnum):
    physical_therapy = "physical_therapy"
    cbt = "cbt"
    sleep = "sleep"
    exercise = "exercise"
    diet = "diet"
    stress = "stress"
    complementary = "complementary"
    other = "other"


class CareStatus(enum.StrEnum):
    planned = "planned"
    in_progress = "in_progress"
    done = "done"
    stopped = "stopped"


class PlanIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    protocol_key: str = Field(min_length=1, max_length=60)
    purpose: Purpose = Purpose.series
    dose: float
    dose_unit: str = Field(min_length=1, max_length=12)
    titration_start: float | None = None
    session_duration_min: int | None = Field(default=None, ge=0, le=20_160)
    sessions: int = Field(ge=1, le=60)
    interval_days: int | None = Field(default=None, ge=1, le=90)
    start_date: dt.date
    preferred_time: str = "09:00"
    concentration_mg_per_ml: float = 10.0
    premedication: list[str] = Field(default_factory=list)
    dose_override_reason: str | None = Field(default=None, max_length=2000)
    series_override_reason: str | None = Field(default=None, max_length=2000)
    notes: str | None = Field(default=None, max_length=4000)

    @field_validator("preferred_time")
    @classmethod
    def _time(cls, value: str) -> str:
        if not TIME.match(value):
            raise ValueError("Use a 24-hour time like 09:00.")
        return value


class CareItemIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    category: CareCategory
    description: str = Field(min_length=1, max_length=300)
    owner: str = Field(min_length=1, max_length=120)
    status: CareStatus = CareStatus.planned
    due_on: dt.date | None = None


class CareStatusIn(BaseModel):
    status: CareStatus


class ResponseIn(BaseModel):
    assessed_on: dt.date
    baseline_nrs: float = Field(ge=0, le=10)
    followup_nrs: float = Field(ge=0, le=10)
    pgic: int | None = Field(default=None, ge=1, le=7)
    relief_days: int = Field(ge=0, le=3650)

    @field_validator("assessed_on")
    @classmethod
    def _past(cls, value: dt.date) -> dt.date:
        if value > clinic_time.latest_today():
            raise ValueError("The assessment date cannot be in the future.")
        return value


class SignIn(BaseModel):
    typed_name: str = Field(min_length=1, max_length=200)
    signed_on: dt.date
    agree: bool = False


# A band is [upper bound in minutes, fee in USD]. Documented as a pair of numbers: the tuple form
# (`prefixItems`) is valid OpenAPI 3.1 but schemathesis cannot validate a response against it, and
# the whole-minutes rule is enforced by the model either way.
SessionBand = Annotated[
    tuple[int, float],
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 2,
            "description": "[upper bound in whole minutes, fee in USD]",
        }
    ),
]


class PriceListIn(BaseModel):
    consultation_usd: float = Field(ge=0, le=100_000)
    drug_usd_per_mg: float = Field(ge=0, le=1_000)
    premedication_usd_per_session: float = Field(ge=0, le=10_000)
    session_bands: list[SessionBand] = Field(min_length=1, max_length=10)

    @field_validator("session_bands")
    @classmethod
    def _bands(cls, value: list[tuple[int, float]]) -> list[tuple[int, float]]:
        for minutes, fee in value:
            if minutes <= 0 or fee < 0:
                raise ValueError("Each band needs minutes above 0 and a fee of 0 or more.")
        if len({m for m, _ in value}) != len(value):
            raise ValueError("Each band needs its own upper bound in minutes.")
        return sorted(value)


class ChairIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    room: str = Field(min_length=1, max_length=60)
    name: str = Field(min_length=1, max_length=60)


class HoursIn(BaseModel):
    """Opening hours and the calendar's slot length (design defaults 08:00-18:00, 30 min)."""

    opens_at: LocalTime
    closes_at: LocalTime
    slot_min: int = Field(ge=5, le=240)

    @field_validator("closes_at")
    @classmethod
    def _after_opening(cls, value: dt.time, info: ValidationInfo) -> dt.time:
        opens = info.data.get("opens_at")
        if opens is not None and value <= opens:
            raise ValueError("Closing time must be after opening time.")
        return value


class DutyIn(BaseModel):
    """Put a nurse or prescriber on the duty roster; ``repeat_weeks`` copies it to later weeks."""

    user_id: int = Field(ge=1, le=2_147_483_647)
    on_date: dt.date
    start_time: LocalTime
    end_time: LocalTime
    repeat_weeks: int = Field(default=1, ge=1, le=12)

    @field_validator("end_time")
    @classmethod
    def _after_start(cls, value: dt.time, info: ValidationInfo) -> dt.time:
        start = info.data.get("start_time")
        if start is not None and value <= start:
            raise ValueError("The shift must end after it starts (on the same day).")
        return value


class DutyOut(BaseModel):
    id: int
    user_id: int
    name: str
    role: str
    on_date: dt.date
    start_time: LocalTime
    end_time: LocalTime


class CancelIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    reason: str = Field(min_length=5, max_length=2000)


class RescheduleIn(BaseModel):
    """Move one booked session to another day and clinic-local start time."""

    model_config = ConfigDict(str_strip_whitespace=True)

    on_date: dt.date
    start_time: LocalTime
    reason: str | None = Field(default=None, max_length=2000)


class FindingOut(BaseModel):
    code: str
    severity: str
    message: str
    source: str
    tag: str


class SessionOut(BaseModel):
    number: int
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    chair: str | None
    staff: str | None
    dose: float
    dose_mg: float | None
    rate_mg_per_kg_h: float | None
    pump_ml_per_h: float | None
    volume_ml: float | None
    status: str | None = None  # booked or cancelled; None until booked
    cancel_reason: str | None = None
    plan_session_id: int | None = None  # the booked session's id (check-in uses it)


class PkSessionOut(BaseModel):
    label: str
    onset_min: float | None
    offset_min: float | None
    peak_ng_per_ml: float
    time_in_analgesic_band_min: float
    time_above_psychotomimetic_min: float
    p_reach_analgesia: float | None = None
    population_size: int = 0


class PkOut(BaseModel):
    available: bool
    reason: str
    sessions: list[PkSessionOut]
    warnings: list[str]
    p_reach_analgesia: float | None
    population_size: int
    source: str


class EstimateLineOut(BaseModel):
    label: str
    quantity: float
    unit_usd: float
    total_usd: float


class CodeOut(BaseModel):
    code: str
    units: int
    label: str
    rule: str
    source: str
    tag: str


class EstimateOut(BaseModel):
    lines: list[EstimateLineOut]
    codes: list[CodeOut]
    total_usd: float


class CareItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    category: str
    description: str
    owner: str
    status: str
    due_on: dt.date | None


class ResponseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    assessed_on: dt.date
    baseline_nrs: float
    followup_nrs: float
    pgic: int | None
    relief_days: int


class ConsentOut(BaseModel):
    plan_id: int
    text: str
    content_sha256: str
    signed: bool
    signed_name: str | None
    signed_on: dt.date | None
    signed_at: dt.datetime | None
    signature_sha256: str | None


class PlanOut(BaseModel):
    id: int
    patient_id: int
    purpose: str
    status: str
    protocol_key: str
    protocol_version: int
    protocol_name: str
    protocol_source: str
    indication: str | None
    evidence_grade: str | None
    route: str
    dose: float
    dose_unit: str
    titration_start: float | None
    session_duration_min: int
    sessions: list[SessionOut]
    interval_days: int
    start_date: dt.date
    end_date: dt.date
    weight_kg: float
    weight_measured_on: dt.date
    concentration_mg_per_ml: float
    premedication: list[str]
    max_session_mg: float | None
    series_mg: float | None
    findings: list[FindingOut]
    dose_override_reason: str | None
    series_override_reason: str | None
    pk: PkOut
    estimate: EstimateOut
    care_items: list[CareItemOut]
    responses: list[ResponseOut]
    consent_signed: bool
    cancel_reason: str | None = None


class ProtocolOut(BaseModel):
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
    premedication: list[str]
    titration_start: float | None
    titration_step: float | None
    source: str
    tag: str
    builtin: bool


class ClinicProtocolIn(BaseModel):
    """A clinic's own protocol; checked by the same rules as the built-in library."""

    model_config = ConfigDict(str_strip_whitespace=True)

    key: str = Field(min_length=1, max_length=60)
    name: str = Field(min_length=1, max_length=200)
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
    monitoring: str = "standard"
    premedication: list[str] = Field(default_factory=list)
    titration_start: float | None = None
    titration_step: float | None = None
    source: str = ""
    tag: str = "design"
    dose_step: float | None = None
    doses_per_day: int | None = Field(default=None, ge=1, le=24)
    max_doses_per_episode: int | None = Field(default=None, ge=1, le=100)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY.match(value):
            raise ValueError("Use lower-case letters, digits and underscores, e.g. clinic_2h.")
        return value

    def row(self) -> dict[str, Any]:
        return self.model_dump()


class ClinicalDefaultsIn(BaseModel):
    """The clinic's own clinical defaults; null (or empty on the page) = the knowledge default.
    On PUT only the fields present change. Ranges: ``planning.clinical_defaults.SPECS``."""

    model_config = ConfigDict(extra="forbid")

    weight_max_age_days: int | None = Field(default=None, ge=1, le=180)
    pump_increment_ml_per_h: float | None = Field(default=None, ge=0.01, le=1.0, allow_inf_nan=False)
    syringe_increment_ml: float | None = Field(default=None, ge=0.01, le=1.0, allow_inf_nan=False)
    prior_therapies_minimum: int | None = Field(default=None, ge=1)
    psychotomimetic_long_min: float | None = Field(default=None, ge=1, le=240, allow_inf_nan=False)
    high_frequency_sessions: int | None = Field(default=None, ge=2, le=30)
    session_max_mg: float | None = Field(default=None, allow_inf_nan=False)
    session_max_mg_per_kg: float | None = Field(default=None, allow_inf_nan=False)
    day_max_mg: float | None = Field(default=None, allow_inf_nan=False)
    day_max_mg_per_kg: float | None = Field(default=None, allow_inf_nan=False)
    inpatient_day_max_mg: float | None = Field(default=None, allow_inf_nan=False)
    inpatient_day_max_mg_per_kg: float | None = Field(default=None, allow_inf_nan=False)
    icu_day_max_mg_per_kg: float | None = Field(default=None, allow_inf_nan=False)
    adult_weight_min_kg: float | None = Field(default=None, allow_inf_nan=False)
    adult_weight_max_kg: float | None = Field(default=None, allow_inf_nan=False)

    @field_validator(
        "session_max_mg",
        "session_max_mg_per_kg",
        "day_max_mg",
        "day_max_mg_per_kg",
        "inpatient_day_max_mg",
        "inpatient_day_max_mg_per_kg",
        "icu_day_max_mg_per_kg",
        "adult_weight_min_kg",
        "adult_weight_max_kg",
    )
    @classmethod
    def _within_bounds(cls, value: float | None, info: ValidationInfo) -> float | None:
        from ketacare.planning.clinical_defaults import SPEC_BY_KEY

        spec = SPEC_BY_KEY[str(info.field_name)]
        low, high = spec.bounds()
        if value is not None and not low <= value <= high:
            raise ValueError(
                f"{spec.label}: give {spec.range_label()} (the outer bound is {high:g} {spec.unit})."
            )
        return value

    @field_validator("prior_therapies_minimum")
    @classmethod
    def _at_most_options(cls, value: int | None) -> int | None:
        from ketacare.planning.clinical_defaults import SPEC_BY_KEY

        _, top = SPEC_BY_KEY["prior_therapies_minimum"].bounds()
        if value is not None and value > top:
            raise ValueError(f"At most {top:g}: there are only {top:g} prior therapies to choose from.")
        return value


class ClinicalDefaultOut(BaseModel):
    key: str
    label: str
    unit: str
    value: float
    origin: str  # clinic or knowledge
    knowledge_value: float
    tag: str
    source: str
    minimum: float
    maximum: float
    clinic_value: float | None
