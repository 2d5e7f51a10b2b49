"""Request and response shapes for the public front door and the clinic's directory pages."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ketacare import clinic_time
from ketacare.directory.assessment import ANSWERS, OTHER_CONDITION, screening_rules
from ketacare.knowledge import pain_conditions
from ketacare.knowledge.front_door import treatment_options, vetting_defaults
from ketacare.knowledge.protocols import ROUTES
from ketacare.validation import Email, UsState, UsZip5

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
SETTINGS = ("office", "ambulatory", "hospital")
ROOM_TYPES = ("private", "shared")
ROUTE_LABELS = {
    "iv_infusion": "IV infusion",
    "iv_bolus": "IV injection",
    "oral": "Oral",
    "sublingual": "Under the tongue",
    "intranasal": "Nasal spray",
    "im": "Intramuscular injection",
    "topical": "Cream or gel",
    "esketamine_nasal": "Esketamine (Spravato) nasal spray",
}


def _month(value: Any) -> Any:
    """Accept "YYYY-MM" (the month input) or a date; the month's first day."""
    if isinstance(value, str):
        match = MONTH.match(value.strip())
        if not match:
            raise ValueError("Give the month and year the pain started, like 2023-04.")
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12 or year < 1900:
            raise ValueError("That is not a real month.")
        return dt.date(year, month, 1)
    return value


class AssessmentIn(BaseModel):
    """The questionnaire. ``screening`` maps each rule key to yes / no / unsure."""

    model_config = ConfigDict(str_strip_whitespace=True)

    condition: str
    pain_started: dt.date
    pain_now: int = Field(ge=0, le=10)
    pain_average: int = Field(ge=0, le=10)
    treatments_tried: list[str] = Field(default_factory=list, max_length=20)
    screening: dict[str, str]
    opioid_details: str = Field(default="", max_length=300)

    @field_validator("pain_started", mode="before")
    @classmethod
    def _started(cls, value: Any) -> Any:
        return _month(value)

    @field_validator("pain_started")
    @classmethod
    def _not_future(cls, value: dt.date) -> dt.date:
        if value > clinic_time.latest_today():
            raise ValueError("The pain cannot have started in the future: check the month and year.")
        return value

    @field_validator("condition")
    @classmethod
    def _known_condition(cls, value: str) -> str:
        known = {c.key for c in pain_conditions()} | {OTHER_CONDITION}
        if value not in known:
            raise ValueError("Choose your condition from the list (or 'Another condition').")
        return value

    @field_validator("treatments_tried")
    @classmethod
    def _known_treatments(cls, value: list[str]) -> list[str]:
        known = {k for k, _ in treatment_options()}
        unknown = [v for v in value if v not in known]
        if unknown:
            raise ValueError(f"Unknown treatment: {', '.join(unknown)}.")
        return list(dict.fromkeys(value))

    @field_validator("screening")
    @classmethod
    def _every_question(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [r.key for r in screening_rules() if value.get(r.key) not in ANSWERS]
        if missing:
            raise ValueError(f"Answer every safety question (yes, no or not sure): {', '.join(missing)}.")
        return {r.key: value[r.key] for r in screening_rules()}


def assessment_from_form(form: dict[str, list[str]]) -> dict[str, Any]:
    """Flatten the posted questionnaire (``q_<rule>`` radios, ``treatments`` checkboxes)."""

    def one(name: str) -> str:
        return (form.get(name) or [""])[0]

    data: dict[str, Any] = {
        "condition": one("condition"),
        "pain_started": one("pain_started"),
        "pain_now": one("pain_now"),
        "pain_average": one("pain_average"),
        "treatments_tried": form.get("treatments", []),
        "screening": {r.key: one(f"q_{r.key}") for r in screening_rules()},
    }
    if one("opioid_details").strip():
        data["opioid_details"] = one("opioid_details")
    return data


class SearchIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    zip: UsZip5
    radius_miles: int = Field(default=100, ge=1, le=3000)
    route: str | None = None
    max_session_usd: float | None = Field(default=None, ge=0, le=100_000)
    min_score: int | None = Field(default=None, ge=0, le=100)

    @field_validator("route")
    @classmethod
    def _route(cls, value: str | None) -> str | None:
        if value and value not in ROUTES:
            raise ValueError("Choose a route from the list.")
        return value or None


class BookingIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    slot_id: int = Field(ge=1, le=2_147_483_647)
    name: str = Field(min_length=1, max_length=200)
    email: Email = Field(min_length=3, max_length=254)
    phone: str = Field(default="", max_length=40)
    route_wanted: str = Field(default="", max_length=30)
    share_answers: bool = False
    assessment: str = Field(default="", max_length=8000)  # signed token from the result page

    @model_validator(mode="after")
    def _consent_needs_answers(self) -> BookingIn:
        if self.share_answers and not self.assessment:
            raise ValueError("There are no questionnaire answers to send: take the self-assessment first.")
        return self


class CancelIn(BaseModel):
    token: str = Field(min_length=10, max_length=500)


class ProfileIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    published: bool = False
    description: str = Field(default="", max_length=4000)
    street: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    state: UsState
    zip: UsZip5
    public_phone: str = Field(default="", max_length=40)
    routes: list[str] = Field(min_length=1)
    setting: str
    room_type: str
    physicians: int = Field(default=0, ge=0, le=500)
    crnas: int = Field(default=0, ge=0, le=500)
    nurse_practitioners: int = Field(default=0, ge=0, le=500)
    acls_certified: bool = False
    board_certified: bool = False
    years_experience: int = Field(default=0, ge=0, le=80)
    equipment: list[str] = Field(default_factory=list)
    insurance_policy: str = Field(default="", max_length=2000)
    offers_superbill: bool = False
    boosters_per_year_min: int = Field(default=4, ge=0, le=52)
    boosters_per_year_max: int = Field(default=12, ge=0, le=52)

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: list[str]) -> list[str]:
        if any(v not in ROUTES for v in value):
            raise ValueError("Choose routes from the list.")
        return list(dict.fromkeys(value))

    @field_validator("setting")
    @classmethod
    def _setting(cls, value: str) -> str:
        if value not in SETTINGS:
            raise ValueError("Choose office, ambulatory clinic or hospital.")
        return value

    @field_validator("room_type")
    @classmethod
    def _room(cls, value: str) -> str:
        if value not in ROOM_TYPES:
            raise ValueError("Choose a private or a shared room.")
        return value

    @field_validator("equipment")
    @classmethod
    def _equipment(cls, value: list[str]) -> list[str]:
        known = {k for k, _ in vetting_defaults().equipment}
        if any(v not in known for v in value):
            raise ValueError("Choose equipment from the list.")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _booster_range(self) -> ProfileIn:
        if self.boosters_per_year_min > self.boosters_per_year_max:
            raise ValueError("The fewest boosters a year cannot be more than the most.")
        return self


class SlotsIn(BaseModel):
    """Add consultation slots: from a first start, ``count`` slots ``every_minutes`` apart."""

    first_start: dt.datetime
    minutes: int = Field(default=30, ge=10, le=240)
    count: int = Field(default=1, ge=1, le=40)
    every_minutes: int = Field(default=30, ge=10, le=24 * 60)


class ReviewIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    rating: int = Field(ge=1, le=5)
    body: str = Field(min_length=10, max_length=3000)


class ModerationIn(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    decision: str
    reason: str = Field(default="", max_length=1000)

    @model_validator(mode="after")
    def _reason_for_hiding(self) -> ModerationIn:
        if self.decision not in ("publish", "hide"):
            raise ValueError("Choose publish or hide.")
        if self.decision == "hide" and not self.reason:
            raise ValueError("Hiding a review needs a reason, which is shown publicly in its place.")
        return self


class ReasonOut(BaseModel):
    rule: str
    level: str
    text: str
    sources: list[dict[str, str]]


class AssessmentOut(BaseModel):
    outcome: str
    headline: str
    reasons: list[ReasonOut]
    condition: dict[str, Any]
    statements: list[dict[str, Any]]
    not_first_line: str
    months_with_pain: int
    assessment_token: str
    stored: bool = False


class BookingOut(BaseModel):
    reference: str
    clinic: str
    starts_at: dt.datetime
    cancel_url: str
    answers_shared: bool
