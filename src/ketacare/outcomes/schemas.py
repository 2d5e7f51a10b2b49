"""Request models for the outcomes pages and API."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule_days: str = Field(pattern=r"^\s*\d+(\s*,\s*\d+)*\s*$", max_length=200)
    monthly_every_days: int = Field(ge=7, le=365)
    monthly_until_days: int = Field(ge=0, le=3650)
    link_valid_days: int = Field(ge=1, le=60)
    reminder_after_days: int = Field(ge=1, le=60)
    bpi_licence: str | None = Field(default=None, max_length=200)
    # blank: the design default (registry definitions)
    baseline_lookback_days: int | None = Field(default=None, ge=1, le=365)


class SeriesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    series_end_on: dt.date
    # the series (treatment plan) the follow-ups belong to; blank: the one that ended last by then
    plan_id: int | None = Field(default=None, ge=1)


class OneOffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timepoint: str = Field(pattern=r"^(baseline|end_of_session)$")
    due_on: dt.date


class DiaryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nrs: int = Field(ge=0, le=10)
    flare: bool = False
    note: str | None = Field(default=None, max_length=2000)
