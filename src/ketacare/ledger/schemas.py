"""Request shapes for the controlled-substance ledger (JSON API and the pages' forms)."""

from __future__ import annotations

import datetime as dt
import enum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from ketacare.ledger import rules
from ketacare.validation import UsState

RowIdField = Field(ge=1, le=2_147_483_647)
Name = Field(min_length=1, max_length=200)
Reason = Field(min_length=3, max_length=2000)
# A generous bound on one movement: a thousand 10 mL vials at 50 mg/mL is 500 g.
MAX_AMOUNT = 1_000_000.0


class Strict(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")


class Unit(enum.StrEnum):
    mg = "mg"
    ml = "ml"


class Ingredient(enum.StrEnum):
    """The coded ingredient of a product (knowledge products.toml [ingredient])."""

    ketamine = "ketamine"
    esketamine = "esketamine"


class DosageForm(enum.StrEnum):
    """The fixed list of dosage forms (knowledge products.toml [form], each with its routes)."""

    injection = "injection, solution"
    nasal_spray = "nasal spray"
    nasal_spray_device = "nasal spray device"
    oral_solution = "oral solution"
    sublingual_troche = "sublingual troche"
    sublingual_tablet = "sublingual tablet"
    lozenge = "lozenge"
    topical_cream = "topical cream"


def _dea(value: str) -> str:
    value = value.upper().replace(" ", "")
    if problem := rules.dea_number_problem(value):
        raise ValueError(problem)
    return value


class RegistrationIn(Strict):
    dea_number: str = Field(min_length=1, max_length=20)
    location_name: str = Name
    address: str = Field(min_length=1, max_length=400)
    state: UsState
    expires_on: dt.date | None = None

    _check_dea = field_validator("dea_number")(_dea)


class ProductIn(Strict):
    name: str = Name
    ndc: str | None = Field(default=None, max_length=13)
    strength_mg_per_ml: float = Field(gt=0, le=1000)
    container_ml: float = Field(gt=0, le=1000)
    ingredient: Ingredient
    dosage_form: DosageForm
    compounded: bool = False

    @field_validator("ndc")
    @classmethod
    def _ndc(cls, value: str | None) -> str | None:
        if value and (problem := rules.ndc_problem(value)):
            raise ValueError(problem)
        return value or None

    @model_validator(mode="after")
    def _ndc_unless_compounded(self) -> ProductIn:
        if not self.ndc and not self.compounded:
            raise ValueError("An approved (not compounded) product needs its NDC.")
        return self


class ProductCodingIn(Strict):
    """An admin codes a product created before products were coded: its drug and dosage form."""

    ingredient: Ingredient
    dosage_form: DosageForm


class SettingsIn(Strict):
    retention_years: int = Field(ge=1, le=100)
    retention_basis: str | None = Field(default=None, max_length=2000)
    expiry_warning_days: int = Field(ge=0, le=730)

    @field_validator("retention_years")
    @classmethod
    def _retention(cls, value: int) -> int:
        if problem := rules.retention_problem(value):
            raise ValueError(problem)
        return value


class ReceiptIn(Strict):
    registration_id: int = RowIdField
    product_id: int = RowIdField
    lot_number: str = Field(min_length=1, max_length=60)
    expires_on: dt.date
    supplier: str = Name
    supplier_dea_number: str = Field(min_length=1, max_length=20)
    invoice_number: str = Field(min_length=1, max_length=60)
    containers: int = Field(ge=1, le=100_000)
    received_at: AwareDatetime | None = None

    _check_dea = field_validator("supplier_dea_number")(_dea)


class AmountIn(Strict):
    amount: float = Field(gt=0, le=MAX_AMOUNT)
    unit: Unit = Unit.mg
    occurred_at: AwareDatetime | None = None


class WasteIn(AmountIn):
    reason: str = Reason
    witness_user_id: int = RowIdField
    witness_password: str = Field(min_length=1, max_length=256)
    session_id: int | None = Field(default=None, ge=1, le=2_147_483_647)


class TransferIn(AmountIn):
    """To another registration of the clinic (``to_registration_id``) or to another registrant."""

    to_registration_id: int | None = Field(default=None, ge=1, le=2_147_483_647)
    recipient_name: str | None = Field(default=None, max_length=200)
    recipient_dea_number: str | None = Field(default=None, max_length=20)
    recipient_address: str | None = Field(default=None, max_length=400)
    reason: str = Reason

    @field_validator("recipient_dea_number")
    @classmethod
    def _recipient_dea(cls, value: str | None) -> str | None:
        return _dea(value) if value else None

    @model_validator(mode="after")
    def _recipient(self) -> TransferIn:
        if self.to_registration_id is None and not (
            self.recipient_name and self.recipient_dea_number and self.recipient_address
        ):
            raise ValueError(
                "Choose one of your registrations, or give the recipient's name, DEA number and address."
            )
        return self


class ReturnIn(AmountIn):
    recipient_name: str = Name
    recipient_dea_number: str = Field(min_length=1, max_length=20)
    reason: str = Reason

    _check_dea = field_validator("recipient_dea_number")(_dea)


class PackageState(enum.StrEnum):
    full = "full"
    partial = "partial"


class DestructionIn(Strict):
    """The data of DEA Form 41. For full packages the total is computed from the product; for a
    partial package give the amount destroyed."""

    packages: int = Field(ge=1, le=100_000)
    package_state: PackageState
    amount: float | None = Field(default=None, gt=0, le=MAX_AMOUNT)
    unit: Unit = Unit.mg
    method: str = Field(min_length=3, max_length=300)
    location: str = Field(min_length=3, max_length=300)
    occurred_at: AwareDatetime | None = None
    witness_user_id: int = RowIdField
    witness_password: str = Field(min_length=1, max_length=256)
    witness2_user_id: int = RowIdField
    witness2_password: str = Field(min_length=1, max_length=256)

    @model_validator(mode="after")
    def _partial_amount(self) -> DestructionIn:
        if self.package_state == PackageState.partial and self.amount is None:
            raise ValueError("For a partial package, give the amount destroyed.")
        return self


class LossKind(enum.StrEnum):
    theft = "theft"
    loss = "loss"


class TheftLossIn(AmountIn):
    kind: LossKind
    discovered_at: AwareDatetime
    significant: bool = False
    description: str = Reason


class AdjustmentIn(Strict):
    """A correction, as a new entry: a signed change with its reason."""

    change: float = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)
    unit: Unit = Unit.mg
    reason: str = Field(min_length=10, max_length=2000)
    corrects_seq: int | None = Field(default=None, ge=1, le=2_147_483_647)
    occurred_at: AwareDatetime | None = None

    @field_validator("change")
    @classmethod
    def _not_zero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("An adjustment changes the balance: enter an amount other than zero.")
        return value


class CountMethod(enum.StrEnum):
    exact = "exact"
    estimated = "estimated"


class CountLineIn(Strict):
    lot_id: int = RowIdField
    counted: float = Field(ge=0, le=MAX_AMOUNT)
    unit: Unit = Unit.mg
    method: CountMethod = CountMethod.exact


class BiennialInventoryIn(Strict):
    registration_id: int = RowIdField
    taken_at: AwareDatetime | None = None
    note: str | None = Field(default=None, max_length=2000)
    lines: list[CountLineIn] = Field(max_length=2000)


class OpeningLineIn(Strict):
    """A lot on hand when the registrant first handles controlled substances."""

    product_id: int = RowIdField
    lot_number: str = Field(min_length=1, max_length=60)
    expires_on: dt.date
    supplier: str = Name
    counted: float = Field(gt=0, le=MAX_AMOUNT)
    unit: Unit = Unit.mg
    method: CountMethod = CountMethod.exact


class InitialInventoryIn(Strict):
    """``lines`` empty records a zero inventory (nothing on hand)."""

    registration_id: int = RowIdField
    taken_at: AwareDatetime | None = None
    note: str | None = Field(default=None, max_length=2000)
    lines: list[OpeningLineIn] = Field(default_factory=list, max_length=2000)


class NoteIn(Strict):
    text: str = Field(min_length=3, max_length=4000)


class CloseIn(Strict):
    outcome: str = Field(min_length=10, max_length=4000)


class NoticeIn(Strict):
    sent_at: AwareDatetime | None = None
    reference: str = Field(min_length=3, max_length=2000)


class Form106In(Strict):
    filed_at: AwareDatetime | None = None
    reference: str = Field(min_length=3, max_length=100)
