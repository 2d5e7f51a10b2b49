"""Request and response shapes for liver tests, bladder screens, holds, tasks and intervals."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LAB_MAX = 100_000.0  # U/L: an input bound, far above any real result


class _In(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")


class LiverTestIn(_In):
    drawn_on: dt.date
    alt_u_per_l: float = Field(ge=0, le=LAB_MAX, allow_inf_nan=False)
    alt_uln_u_per_l: float = Field(gt=0, le=LAB_MAX, allow_inf_nan=False)
    ast_u_per_l: float = Field(ge=0, le=LAB_MAX, allow_inf_nan=False)
    ast_uln_u_per_l: float = Field(gt=0, le=LAB_MAX, allow_inf_nan=False)
    alp_u_per_l: float | None = Field(default=None, ge=0, le=LAB_MAX, allow_inf_nan=False)
    alp_uln_u_per_l: float | None = Field(default=None, gt=0, le=LAB_MAX, allow_inf_nan=False)
    ggt_u_per_l: float | None = Field(default=None, ge=0, le=LAB_MAX, allow_inf_nan=False)
    ggt_uln_u_per_l: float | None = Field(default=None, gt=0, le=LAB_MAX, allow_inf_nan=False)
    liver_symptoms: bool = False
    lab: str | None = Field(default=None, max_length=120)

    @model_validator(mode="after")
    def _pairs(self) -> LiverTestIn:
        for name in ("alp", "ggt"):
            value, uln = getattr(self, f"{name}_u_per_l"), getattr(self, f"{name}_uln_u_per_l")
            if (value is None) != (uln is None):
                raise ValueError(
                    f"Give the {name.upper()} result with the lab's upper limit of normal, or neither."
                )
        return self


class BladderScreenIn(_In):
    screened_on: dt.date
    answers: dict[str, Literal["yes", "no"]]
    note: str | None = Field(default=None, max_length=4000)


class ReleaseIn(_In):
    reason: str = Field(min_length=10, max_length=2000)


class TaskDoneIn(_In):
    result: str = Field(min_length=3, max_length=4000)


class SafetySettingsIn(_In):
    """The clinic's own intervals; null resets to the design default. Only fields present change."""

    lft_interval_days: int | None = Field(default=None, ge=7, le=365)
    bladder_interval_days: int | None = Field(default=None, ge=7, le=180)
    repeated_sessions: int | None = Field(default=None, ge=2, le=20)


# --- responses -----------------------------------------------------------------------------------


class FindingOut(BaseModel):
    key: str
    message: str
    source: str
    tag: str
    hold: bool


class LiverTestOut(BaseModel):
    id: int
    patient_id: int
    drawn_on: dt.date
    alt_u_per_l: float
    alt_uln_u_per_l: float
    ast_u_per_l: float
    ast_uln_u_per_l: float
    outcome: str
    findings: list[FindingOut]
    hold_id: int | None


class BladderScreenOut(BaseModel):
    id: int
    patient_id: int
    screened_on: dt.date
    answers: dict[str, str]
    positive: bool
    hold_id: int | None
    task_id: int | None


class HoldOut(BaseModel):
    id: int
    patient_id: int
    kind: str
    reason: str
    source: str
    tag: str
    placed_at: dt.datetime
    released_at: dt.datetime | None
    release_reason: str | None


class TaskOut(BaseModel):
    id: int
    patient_id: int
    kind: str
    title: str
    due_on: dt.date
    completed_at: dt.datetime | None
    result: str | None


class DueOut(BaseModel):
    kind: str
    label: str
    due_on: dt.date
    overdue: bool
    reason: str
    source: str
    tag: str


class CumulativeOut(BaseModel):
    sessions: int
    session_mg: float
    prescriptions: int
    prescription_mg: float
    topical_prescriptions: int
    total_mg: float


class PatientSafetyOut(BaseModel):
    patient_id: int
    cumulative: CumulativeOut
    due: list[DueOut]
    holds: list[HoldOut]
    tasks: list[TaskOut]
    liver_tests: list[LiverTestOut]
    bladder_screens: list[BladderScreenOut]
