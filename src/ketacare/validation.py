"""Turn pydantic validation errors into ``InvalidInput`` with a message per field."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError, WithJsonSchema

from ketacare.errors import InvalidInput

ModelT = TypeVar("ModelT", bound=BaseModel)


def field_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(part) for part in err["loc"]) or "form"
        if err["type"] == "missing" or (err["loc"] and err.get("input", "") is None):
            message = "This is required."
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        errors.setdefault(name, message)
    return errors


def parse(model: type[ModelT], data: Mapping[str, Any]) -> ModelT:
    """Validate form or JSON data; blank form fields count as missing."""
    cleaned = {k: (None if isinstance(v, str) and not v.strip() else v) for k, v in data.items()}
    try:
        return model.model_validate(cleaned)
    except ValidationError as exc:
        raise InvalidInput(errors=field_errors(exc)) from exc


# Contact fields shared by every form that takes them: one rule, one message each.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ZIP5 = re.compile(r"^\d{5}$")
_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_US_STATE = re.compile(r"^[A-Z]{2}$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("Enter an email address like name@example.org.")
    return value


def _zip5(value: str) -> str:
    if not _ZIP5.match(value):
        raise ValueError("Give a 5-digit US ZIP code.")
    return value


def _zip(value: str) -> str:
    if not _ZIP.match(value):
        raise ValueError("Use a 5-digit ZIP code (or ZIP+4).")
    return value


def _us_state(value: str) -> str:
    value = value.upper()
    if not _US_STATE.match(value):
        raise ValueError("Use the two-letter state code, e.g. NY.")
    return value


Email = Annotated[str, AfterValidator(_email)]
UsZip5 = Annotated[str, AfterValidator(_zip5)]  # a ZIP centroid lookup needs exactly five digits
UsZip = Annotated[str, AfterValidator(_zip)]
UsState = Annotated[str, AfterValidator(_us_state)]

# Dates people filter by: far outside any record, day arithmetic would overflow (year 9999 + 1 day).
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2200, 12, 31)


def reasonable_date(value: dt.date) -> dt.date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(f"Use a date between {EARLIEST_DATE.year} and {LATEST_DATE.year}.")
    return value


ReasonableDate = Annotated[dt.date, AfterValidator(reasonable_date)]


# A clinic's clock time (opening hours, a shift): the clinic's own zone applies, so a UTC offset
# is refused rather than silently dropped (08:00+05:00 is not 08:00 in the clinic).
CLOCK_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"


def _clock_time(value: dt.time) -> dt.time:
    if value.tzinfo is not None:
        raise ValueError("Give the clinic's clock time, such as 08:30, without a UTC offset.")
    return value


LocalTime = Annotated[
    dt.time,
    AfterValidator(_clock_time),
    WithJsonSchema({"type": "string", "pattern": CLOCK_TIME_PATTERN, "examples": ["08:30"]}),
]
