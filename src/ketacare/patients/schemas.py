"""Request and response shapes for the patient record, with their validation rules."""

from __future__ import annotations

import datetime as dt
import enum
import re
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from ketacare import clinic_time
from ketacare.knowledge import condition_by_code, is_icd10_cm
from ketacare.knowledge.allergens import allergen_for, allergens
from ketacare.knowledge.dose_limits import adult_bounds
from ketacare.validation import Email, UsState, UsZip

# Plausibility limits for an adult clinic's scale and stadiometer (design, dose_limits.toml
# [adult] outer bounds, with their source): these catch typing errors (0 kg, 900 kg).
_ADULT = adult_bounds()
WEIGHT_KG_MIN, WEIGHT_KG_MAX = _ADULT.weight_outer_min_kg, _ADULT.weight_outer_max_kg
HEIGHT_CM_MIN, HEIGHT_CM_MAX = _ADULT.height_outer_min_cm, _ADULT.height_outer_max_cm
OLDEST_BIRTH_YEAR = 1900

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
RECORD_NUMBER = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,19}$")


class Sex(enum.StrEnum):
    female = "female"
    male = "male"
    other = "other"
    unknown = "unknown"


class DrugClass(enum.StrEnum):
    opioid = "opioid"
    benzodiazepine = "benzodiazepine"
    antidepressant = "antidepressant"
    anticonvulsant = "anticonvulsant"
    nsaid = "nsaid"
    maoi = "maoi"
    stimulant = "stimulant"
    antihypertensive = "antihypertensive"
    other = "other"


class AllergySeverity(enum.StrEnum):
    mild = "mild"
    moderate = "moderate"
    severe = "severe"
    unknown = "unknown"


def _not_future(value: dt.date | None, what: str) -> dt.date | None:
    if value is not None and value > clinic_time.latest_today():
        raise ValueError(f"{what} cannot be in the future.")
    return value


class PatientBase(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    email: Email | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=40)
    address_line: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    state: UsState | None = None
    postal_code: UsZip | None = None


class PatientCreate(PatientBase):
    given_name: Name
    family_name: Name
    date_of_birth: dt.date
    sex: Sex
    record_number: str | None = Field(
        default=None, description="Leave empty to assign the clinic's next number."
    )

    @field_validator("date_of_birth")
    @classmethod
    def _dob(cls, value: dt.date) -> dt.date:
        if value.year < OLDEST_BIRTH_YEAR:
            raise ValueError(f"Date of birth must be after {OLDEST_BIRTH_YEAR}.")
        _not_future(value, "Date of birth")
        return value

    @field_validator("record_number")
    @classmethod
    def _record_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.upper()
        if not RECORD_NUMBER.match(value):
            raise ValueError("Up to 20 capital letters, digits and dashes.")
        return value


class PatientUpdate(PatientBase):
    given_name: Name | None = None
    family_name: Name | None = None
    date_of_birth: dt.date | None = None
    sex: Sex | None = None

    @field_validator("given_name", "family_name", "date_of_birth", "sex", mode="before")
    @classmethod
    def _not_emptied(cls, value: object) -> object:
        """Left out means unchanged; given as null (or blank) would empty a required field."""
        if value is None:
            raise ValueError("This cannot be emptied.")
        return value

    @field_validator("date_of_birth")
    @classmethod
    def _dob(cls, value: dt.date | None) -> dt.date | None:
        if value is not None and value.year < OLDEST_BIRTH_YEAR:
            raise ValueError(f"Date of birth must be after {OLDEST_BIRTH_YEAR}.")
        return _not_future(value, "Date of birth")


class MeasurementCreate(BaseModel):
    weight_kg: float | None = None
    height_cm: float | None = None
    measured_on: dt.date

    @field_validator("weight_kg")
    @classmethod
    def _weight(cls, value: float | None) -> float | None:
        if value is not None and not WEIGHT_KG_MIN <= value <= WEIGHT_KG_MAX:
            raise ValueError(
                f"A weight of {value:g} kg is not plausible; enter {WEIGHT_KG_MIN:g} to {WEIGHT_KG_MAX:g} kg."
            )
        return value

    @field_validator("height_cm")
    @classmethod
    def _height(cls, value: float | None) -> float | None:
        if value is not None and not HEIGHT_CM_MIN <= value <= HEIGHT_CM_MAX:
            raise ValueError(
                f"A height of {value:g} cm is not plausible; enter {HEIGHT_CM_MIN:g} to {HEIGHT_CM_MAX:g} cm."
            )
        return value

    @field_validator("measured_on")
    @classmethod
    def _when(cls, value: dt.date) -> dt.date:
        _not_future(value, "The measurement date")
        return value

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.weight_kg is None and self.height_cm is None:
            raise ValueError("Enter a weight, a height or both.")
        return self


class ConditionCreate(BaseModel):
    icd10_code: str
    display: str | None = Field(default=None, max_length=200)
    onset_date: dt.date | None = None

    @field_validator("icd10_code")
    @classmethod
    def _code(cls, value: str) -> str:
        value = value.strip().upper()
        if not is_icd10_cm(value):
            raise ValueError("Enter an ICD-10-CM code such as G90.512.")
        return value

    @field_validator("onset_date")
    @classmethod
    def _onset(cls, value: dt.date | None) -> dt.date | None:
        return _not_future(value, "The onset date")

    @model_validator(mode="after")
    def _display(self) -> Self:
        if not self.display:
            known = condition_by_code().get(self.icd10_code)
            if known is None:
                raise ValueError(
                    f"{self.icd10_code} is not in KetaCare's code list: give its description too."
                )
            self.display = known[1].display
        return self


class MedicationCreate(BaseModel):
    name: ShortText
    drug_class: DrugClass
    dose_amount: float | None = Field(default=None, gt=0)
    dose_unit: str | None = Field(default=None, max_length=20)
    doses_per_day: float | None = Field(default=None, gt=0, le=24)
    route: str | None = Field(default=None, max_length=30)
    started_on: dt.date | None = None

    @field_validator("started_on")
    @classmethod
    def _started(cls, value: dt.date | None) -> dt.date | None:
        return _not_future(value, "The start date")

    @model_validator(mode="after")
    def _unit_with_amount(self) -> Self:
        if self.dose_amount is not None and not self.dose_unit:
            raise ValueError("Give the unit of the dose (mg, mcg, mcg/h ...).")
        return self


class ObservationPart(BaseModel):
    """A coded value in the unit KetaCare stores it in (UCUM)."""

    code_system: str = Field(min_length=1, max_length=100)
    code: str = Field(min_length=1, max_length=40)
    display: str = Field(min_length=1, max_length=200)
    value: float = Field(allow_inf_nan=False)
    unit: str | None = Field(default=None, max_length=40)


class ExternalObservationCreate(BaseModel):
    """An observation recorded by another system. The caller has mapped its code and converted
    its unit; plausibility is the caller's (it knows what the code means)."""

    code_system: str = Field(min_length=1, max_length=100)
    code: str = Field(min_length=1, max_length=40)
    display: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=40)
    value: float | None = Field(default=None, allow_inf_nan=False)
    unit: str | None = Field(default=None, max_length=40)
    components: list[ObservationPart] | None = None
    effective_at: dt.datetime
    source: str = Field(min_length=1, max_length=200)

    @field_validator("effective_at")
    @classmethod
    def _when(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("The time needs its UTC offset.")
        if value > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5):
            raise ValueError("The observation time cannot be in the future.")
        return value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _a_value(self) -> Self:
        if (self.value is None) == (not self.components):
            raise ValueError("Give either a value or the components of a panel.")
        return self


class AllergyCreate(BaseModel):
    """An allergy picked from the coded list (``substance_code``, knowledge allergens.toml), with
    the free text kept beside it; free text alone is coded by an exact normalised name."""

    substance_code: str | None = Field(default=None, max_length=40)
    substance: str | None = Field(default=None, max_length=120)
    reaction: str | None = Field(default=None, max_length=200)
    severity: AllergySeverity = AllergySeverity.unknown

    @field_validator("substance_code", "substance")
    @classmethod
    def _blank(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    @field_validator("substance_code")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in allergens():
            raise ValueError("Pick the substance from the list, or leave it empty and write the substance.")
        return value

    @model_validator(mode="after")
    def _code_or_text(self) -> Self:
        if self.substance_code is None and self.substance is None:
            raise ValueError("Pick the substance from the list or write it.")
        if self.substance_code is None and self.substance is not None:
            found = allergen_for(self.substance)  # exact normalised name, never a fragment
            self.substance_code = found.key if found else None
        if self.substance is None and self.substance_code is not None:
            self.substance = allergens()[self.substance_code].display
        return self


class PatientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    record_number: str
    given_name: str
    family_name: str
    date_of_birth: dt.date
    sex: str
    email: str | None
    phone: str | None
    address_line: str | None
    city: str | None
    state: str | None
    postal_code: str | None


class MeasurementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    weight_kg: float | None
    height_cm: float | None
    measured_on: dt.date


class ConditionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    icd10_code: str
    display: str
    onset_date: dt.date | None


class MedicationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    drug_class: str
    dose_amount: float | None
    dose_unit: str | None
    doses_per_day: float | None
    route: str | None
    started_on: dt.date | None


class AllergyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    substance: str
    substance_code: str | None
    reaction: str | None
    severity: str


class PatientRecordOut(PatientOut):
    age_years: int
    weight_kg: float | None
    weight_measured_on: dt.date | None
    height_cm: float | None
    measurements: list[MeasurementOut]
    conditions: list[ConditionOut]
    medications: list[MedicationOut]
    allergies: list[AllergyOut]


class PatientPage(BaseModel):
    items: list[PatientOut]
    total: int
    page: int
    per_page: int
