"""Request and response shapes: credentials, scope rules, settings, encounters, PDMP checks and
prescriptions."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ketacare.validation import UsState

MAX_ID = 2_147_483_647


class StaffRole(enum.StrEnum):
    prescriber = "prescriber"
    nurse = "nurse"


class Activity(enum.StrEnum):
    prescribe = "prescribe"
    administer = "administer"


class EncounterKind(enum.StrEnum):
    in_person = "in_person"
    telehealth = "telehealth"


class Modality(enum.StrEnum):
    in_person = "in_person"
    audio_video = "audio_video"
    audio_only = "audio_only"


class PdmpFindings(enum.StrEnum):
    none = "none"
    concerning = "concerning"


class _In(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")


class LicenceIn(_In):
    state: UsState
    number: str = Field(min_length=1, max_length=40)
    profession: str = Field(default="Medicine", min_length=1, max_length=60)
    expires_on: dt.date


class DeaIn(_In):
    number: str = Field(min_length=1, max_length=20)
    state: UsState
    expires_on: dt.date
    name_mismatch_reason: str | None = Field(default=None, max_length=2000)


class NpiIn(_In):
    npi: str | None = Field(default=None, max_length=20)


class BoardIn(_In):
    board: str = Field(min_length=2, max_length=120)
    specialty: str = Field(min_length=2, max_length=120)
    expires_on: dt.date | None = None


class ScopeRuleIn(_In):
    role: StaffRole
    activity: Activity
    state: str = Field(min_length=1, max_length=2, description='Two-letter state, or "*" for every state')
    allowed: bool

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        value = value.upper()
        if value != "*" and not (len(value) == 2 and value.isalpha()):
            raise ValueError('Use the two-letter state code, or "*" for every state.')
        return value


class RxSettingsIn(_In):
    """The clinic's own settings; null resets to the knowledge default. Only fields present change."""

    flexibility_end: dt.date | None = None
    flexibility_alert_days: int | None = Field(default=None, ge=1, le=365)
    pdmp_window_days: int | None = Field(default=None, ge=1, le=90)
    early_refill_min_used_pct: int | None = Field(default=None, ge=50, le=100)
    monthly_limit_mg: float | None = Field(default=None, ge=1, le=100000, allow_inf_nan=False)
    credential_alert_days: int | None = Field(default=None, ge=1, le=365)


class EncounterIn(_In):
    kind: EncounterKind
    modality: Modality
    occurred_on: dt.date
    patient_state: UsState | None = None
    note: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _modality_fits(self) -> EncounterIn:
        if self.kind == EncounterKind.in_person and self.modality != Modality.in_person:
            raise ValueError("An in-person encounter has the in-person modality.")
        if self.kind == EncounterKind.telehealth and self.modality == Modality.in_person:
            raise ValueError("A telehealth encounter is audio-video or audio-only.")
        return self


class PdmpIn(_In):
    checked_on: dt.date
    state: UsState
    findings: PdmpFindings = PdmpFindings.none
    note: str | None = Field(default=None, max_length=4000)


class PrescriptionIn(_In):
    product_key: str = Field(min_length=1, max_length=60)
    quantity: float = Field(gt=0, le=100_000, allow_inf_nan=False)
    days_supply: int = Field(ge=1, le=10_000)
    directions: str = Field(min_length=3, max_length=2000)
    refills: int = Field(default=0, ge=0, le=1000)
    encounter_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    compounded_ack: str | None = Field(default=None, max_length=2000)
    mme_justification: str | None = Field(default=None, max_length=2000)


class DraftUpdateIn(_In):
    """What may still change on a draft: the documentation, not the drug. Only fields present change."""

    encounter_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    compounded_ack: str | None = Field(default=None, max_length=2000)
    mme_justification: str | None = Field(default=None, max_length=2000)


class SignIn(_In):
    acknowledge_warnings: bool = False


class CancelIn(_In):
    reason: str = Field(min_length=10, max_length=2000)


# --- responses -----------------------------------------------------------------------------------


class CheckOut(BaseModel):
    key: str
    label: str
    status: str  # pass, warn, block
    message: str
    source: str
    tag: str


class PrescriptionOut(BaseModel):
    id: int
    patient_id: int
    prescriber_id: int
    status: str  # draft, signed, cancelled
    product_key: str
    product_name: str
    drug: str
    route: str
    dosage_form: str
    strength_mg: float
    unit: str
    compounded: bool
    quantity: float
    days_supply: int
    mg_per_day: float
    directions: str
    refills: int
    issued_on: dt.date
    encounter_id: int | None
    compounded_ack: str | None
    mme_justification: str | None
    signed_at: dt.datetime | None
    content_sha256: str | None
    cancelled_on: dt.date | None
    cancel_reason: str | None
    signable: bool
    checks: list[CheckOut]
    missing: list[str]
    warnings: list[str]
    compounded_warning: str | None


class CredentialsOut(BaseModel):
    user_id: int
    name: str
    role: str
    licences: list[dict[str, Any]]
    dea_registrations: list[dict[str, Any]]
    npi: str | None
    board_certifications: list[dict[str, Any]]
    problems: list[str]


class EncounterOut(BaseModel):
    id: int
    patient_id: int
    prescriber_id: int
    kind: str
    modality: str
    occurred_on: dt.date
    patient_state: str | None
    note: str | None


class PdmpOut(BaseModel):
    id: int
    patient_id: int
    checked_on: dt.date
    state: str
    findings: str
    note: str | None


class ScopeRuleOut(BaseModel):
    id: int | None
    role: str
    activity: str
    state: str
    allowed: bool
    origin: str  # clinic or knowledge
    source: str
    tag: str


class SettingOut(BaseModel):
    key: str
    label: str
    unit: str
    value: str
    origin: str
    knowledge_value: str
    source: str
    tag: str


class TransmitOut(BaseModel):
    gateway: str
    reference: str
    sent_at: dt.datetime
