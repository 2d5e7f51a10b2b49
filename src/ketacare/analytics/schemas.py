"""What a data use agreement is recorded with, and how it is shown."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class AgreementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(min_length=2, max_length=200)
    purpose: str = Field(min_length=5, max_length=4000)
    starts_on: dt.date
    ends_on: dt.date
    approved_by: str = Field(min_length=2, max_length=200)


class AgreementOut(BaseModel):
    id: int
    recipient: str
    purpose: str
    starts_on: dt.date
    ends_on: dt.date
    approved_by: str
    revoked: bool
