"""Request and response shapes for screening and eligibility."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ketacare import clinic_time
from ketacare.knowledge.contraindications import contraindications, prior_therapy_rule, risk_factors
from ketacare.knowledge.sessions import session_rules

# Blood pressure entry bounds: the plausibility ranges of sessions.toml [plausible] (design).
_PLAUSIBLE = session_rules().plausible

Answer = Literal["yes", "no"]


def answer_keys() -> list[str]:
    return [c.key for c in contraindications()] + [r.key for r in risk_factors()]


def _not_future(value: dt.date | None, what: str) -> dt.date | None:
    if value is not None and value > clinic_time.latest_today():
        raise ValueError(f"{what} cannot be in the future.")
    return value


class ScreeningIn(BaseModel):
    referred_on: dt.date | None = None
    referral_source: str | None = Field(default=None, max_length=200)
    answers: dict[str, Answer] = Field(default_factory=dict)
    prior_therapies: list[str] = Field(default_factory=list)
    sbp_mmhg: float | None = Field(default=None, ge=_PLAUSIBLE["sbp"][0], le=_PLAUSIBLE["sbp"][1])
    dbp_mmhg: float | None = Field(default=None, ge=_PLAUSIBLE["dbp"][0], le=_PLAUSIBLE["dbp"][1])
    ecg_on: dt.date | None = None
    lft_on: dt.date | None = None
    notes: str | None = Field(default=None, max_length=4000)

    @field_validator("answers")
    @classmethod
    def _answers(cls, value: dict[str, Answer]) -> dict[str, Answer]:
        unknown = sorted(set(value) - set(answer_keys()))
        if unknown:
            raise ValueError(f"Unknown screening question: {', '.join(unknown)}.")
        return value

    @field_validator("prior_therapies")
    @classmethod
    def _therapies(cls, value: list[str]) -> list[str]:
        allowed = {k for k, _ in prior_therapy_rule().options}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"Unknown prior therapy: {', '.join(unknown)}.")
        return sorted(set(value))

    @field_validator("referred_on", "ecg_on", "lft_on")
    @classmethod
    def _dates(cls, value: dt.date | None) -> dt.date | None:
        return _not_future(value, "The date")


class OverrideIn(BaseModel):
    caution_key: str = Field(min_length=1, max_length=40)
    reason: str = Field(max_length=2000)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        from ketacare.screening.eligibility import MIN_OVERRIDE_REASON_CHARS

        value = value.strip()
        if len(value) < MIN_OVERRIDE_REASON_CHARS:
            raise ValueError(f"Write the reason (at least {MIN_OVERRIDE_REASON_CHARS} characters).")
        return value


class ReasonOut(BaseModel):
    code: str
    kind: str
    message: str
    source: str
    tag: str


class DecisionOut(BaseModel):
    patient_id: int
    status: str
    label: str
    evidence_grade: str | None
    indication: str | None
    mme_per_day: float | None
    reasons: list[ReasonOut]
    missing: list[ReasonOut]
    sources: list[str]
    screened_at: dt.datetime | None
    referred_on: dt.date | None


class OverrideOut(BaseModel):
    id: int
    caution_key: str
    reason: str
    overridden_at: dt.datetime
