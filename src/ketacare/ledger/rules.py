"""Pure rules of the controlled-substance ledger: units, registration and NDC numbers, expiry,
witnesses, theft and loss deadlines, inventory due dates, retention and compounded products.

No I/O, no database, no clock: every date and time comes in as an argument. Quantities are
integer micrograms (``_ug``) inside KetaCare, so balances add up exactly and a CHECK constraint
can hold them at or above zero; people read and type milligrams (and millilitres through the
product's concentration). These functions are the one place those conversions happen.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import re
from dataclasses import dataclass
from typing import Protocol

from ketacare.knowledge.ledger import Fact, ledger_rules
from ketacare.prescribing.identifiers import dea_check_digit

UG_PER_MG = 1000


class EntryKind(enum.StrEnum):
    receipt = "receipt"
    administration = "administration"
    waste = "waste"
    transfer_out = "transfer_out"
    transfer_in = "transfer_in"
    return_ = "return"
    destruction = "destruction"
    theft_loss = "theft_loss"
    inventory_initial = "inventory_initial"
    inventory_biennial = "inventory_biennial"
    adjustment = "adjustment"

    @property
    def label(self) -> str:
        return KIND_LABELS[self]


KIND_LABELS = {
    EntryKind.receipt: "Receipt",
    EntryKind.administration: "Administration",
    EntryKind.waste: "Waste (witnessed)",
    EntryKind.transfer_out: "Transfer out",
    EntryKind.transfer_in: "Transfer in",
    EntryKind.return_: "Return",
    EntryKind.destruction: "Destruction (Form 41)",
    EntryKind.theft_loss: "Theft or loss",
    EntryKind.inventory_initial: "Initial inventory",
    EntryKind.inventory_biennial: "Biennial inventory",
    EntryKind.adjustment: "Adjustment",
}

# Entries that take stock out of a lot; the amount is refused when it is above the balance.
OUTGOING = frozenset(
    {
        EntryKind.administration,
        EntryKind.waste,
        EntryKind.transfer_out,
        EntryKind.return_,
        EntryKind.destruction,
        EntryKind.theft_loss,
    }
)

# Who may witness a waste: a second clinical user (nurse or prescriber) of the clinic.
WASTE_WITNESS_ROLES = frozenset({"nurse", "prescriber"})
# Who may witness a destruction: employees of the registrant (21 CFR 1304.21(e)).
EMPLOYEE_ROLES = frozenset({"nurse", "prescriber", "clinic_admin"})


# --- units ------------------------------------------------------------------------------------


def mg_to_ug(amount_mg: float) -> int:
    """Milligrams to whole micrograms (a thousandth of a milligram is the finest step recorded)."""
    return round(amount_mg * UG_PER_MG)


def ug_to_mg(amount_ug: int) -> float:
    return amount_ug / UG_PER_MG


def ug_to_ml(amount_ug: int, strength_mg_per_ml: float) -> float:
    return amount_ug / UG_PER_MG / strength_mg_per_ml


def ml_to_ug(amount_ml: float, strength_mg_per_ml: float) -> int:
    return mg_to_ug(amount_ml * strength_mg_per_ml)


def container_ug(container_ml: float, strength_mg_per_ml: float) -> int:
    """What one full container (vial, bottle) holds."""
    return ml_to_ug(container_ml, strength_mg_per_ml)


def amount_ug(amount: float, unit: str, strength_mg_per_ml: float) -> int:
    """An amount typed in mg or mL, in micrograms."""
    if unit == "ml":
        return ml_to_ug(amount, strength_mg_per_ml)
    if unit == "mg":
        return mg_to_ug(amount)
    raise ValueError(f"unknown unit {unit!r}: use mg or ml")


def fmt_mg(amount_ug: int) -> str:
    """``1234.5 mg``: up to three decimals, no trailing zeros."""
    return f"{amount_ug / UG_PER_MG:,.3f}".rstrip("0").rstrip(".") + " mg"


def fmt_ml(amount_ug: int, strength_mg_per_ml: float) -> str:
    return f"{ug_to_ml(amount_ug, strength_mg_per_ml):,.3f}".rstrip("0").rstrip(".") + " mL"


# --- numbers ----------------------------------------------------------------------------------

_DEA = re.compile(r"^[A-Z]{2}\d{7}$")
# NDC: 10 digits in the 4-4-2, 5-3-2 or 5-4-1 configuration, or the 11-digit 5-4-2 billing form.
_NDC = re.compile(r"^(\d{4}-\d{4}-\d{2}|\d{5}-\d{3}-\d{2}|\d{5}-\d{4}-\d{1}|\d{5}-\d{4}-\d{2})$")


def dea_number_problem(number: str) -> str | None:
    """Why a DEA registration number is not well-formed, or None (knowledge: registration)."""
    if not _DEA.match(number):
        return "A DEA number is two capital letters and seven digits, e.g. AB1234563."
    if dea_check_digit(number[2:8]) != int(number[8]):  # the one rule, in prescribing.identifiers
        return "The check digit (the last digit) does not match: please re-check the number."
    return None


def ndc_problem(ndc: str) -> str | None:
    if not _NDC.match(ndc):
        return "Use the NDC with dashes: 4-4-2, 5-3-2, 5-4-1 or 5-4-2 digits (e.g. 0409-2051-05)."
    return None


# --- expiry and balances ----------------------------------------------------------------------


def is_expired(expires_on: dt.date, on: dt.date) -> bool:
    """A lot may be used on its expiry date and not after it."""
    return on > expires_on


def expires_within(expires_on: dt.date, on: dt.date, days: int) -> bool:
    return not is_expired(expires_on, on) and (expires_on - on).days <= days


def take_problem(balance_ug: int, amount_ug: int, strength_mg_per_ml: float) -> str | None:
    """Why ``amount_ug`` cannot be taken out of a lot holding ``balance_ug``, or None."""
    if amount_ug <= 0:
        return "Enter an amount above zero."
    if amount_ug > balance_ug:
        return (
            f"Only {fmt_mg(balance_ug)} ({fmt_ml(balance_ug, strength_mg_per_ml)}) left in this lot; "
            f"{fmt_mg(amount_ug)} cannot be taken out."
        )
    return None


# --- witnesses --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Witness:
    """Who was named as a witness, as far as the rules need to know."""

    user_id: int
    clinic_id: int
    role: str
    active: bool
    password_ok: bool


def waste_witness_problem(actor_user_id: int | None, clinic_id: int, witness: Witness | None) -> str | None:
    """A waste is witnessed by a second, active nurse or prescriber of the same clinic who
    confirms with their own password (knowledge: waste.witness)."""
    if witness is None or witness.clinic_id != clinic_id:
        return "Choose a witness from your clinic."
    if witness.user_id == actor_user_id:
        return "The witness must be a second person, not the one wasting."
    if not witness.active:
        return "The witness's account is not active."
    if witness.role not in WASTE_WITNESS_ROLES:
        return "The witness must be a nurse or a prescriber."
    if not witness.password_ok:
        return "The witness's password is not correct."
    return None


def destruction_witness_problems(
    clinic_id: int, first: Witness | None, second: Witness | None
) -> dict[str, str]:
    """Two different employees of the clinic witness a destruction, each confirming with their
    password (knowledge: destruction.witnesses, 21 CFR 1304.21(e))."""
    problems: dict[str, str] = {}
    for name, witness in (("witness_user_id", first), ("witness2_user_id", second)):
        if witness is None or witness.clinic_id != clinic_id:
            problems[name] = "Choose a witness from your clinic."
        elif not witness.active:
            problems[name] = "This witness's account is not active."
        elif witness.role not in EMPLOYEE_ROLES:
            problems[name] = "Witnesses must be employees of the clinic (nurse, prescriber or admin)."
        elif not witness.password_ok:
            problems[name] = "This witness's password is not correct."
    if first is not None and second is not None and first.user_id == second.user_id:
        problems["witness2_user_id"] = "The two witnesses must be two different people."
    return problems


# --- theft and loss ---------------------------------------------------------------------------


def is_business_day(day: dt.date) -> bool:
    """Monday to Friday. Public holidays are not skipped (knowledge: theft_loss.business_days)."""
    return day.weekday() < 5


def add_business_days(day: dt.date, days: int) -> dt.date:
    current = day
    left = days
    while left > 0:
        current += dt.timedelta(days=1)
        if is_business_day(current):
            left -= 1
    return current


@dataclass(frozen=True)
class LossDeadlines:
    reportable: bool
    notice_due_on: dt.date | None
    form106_due_on: dt.date | None
    why: Fact


def loss_deadlines(kind: str, significant: bool, discovered_on: dt.date) -> LossDeadlines:
    """A theft is always reportable; a loss when it is significant. Reportable ones need a written
    notice within 1 business day of discovery and Form 106 within 45 days (knowledge: theft_loss)."""
    rules = ledger_rules()
    if kind not in ("theft", "loss"):
        raise ValueError("kind is theft or loss")
    if kind == "loss" and not significant:
        return LossDeadlines(False, None, None, rules.discrepancy)
    why = rules.theft_always if kind == "theft" else rules.significant_loss
    return LossDeadlines(
        True,
        add_business_days(discovered_on, rules.notice_business_days),
        discovered_on + dt.timedelta(days=rules.form106_days),
        why,
    )


# --- inventory --------------------------------------------------------------------------------


def add_months(day: dt.date, months: int) -> dt.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class BiennialDue:
    due_on: dt.date
    window_from: dt.date
    window_to: dt.date
    status: str  # "not_yet", "in_window", "late"


def biennial_due(last_inventory_on: dt.date, today: dt.date) -> BiennialDue:
    """Every second year after the last inventory, on a date within 6 months of the biennial date
    (knowledge: inventory.biennial)."""
    rules = ledger_rules()
    due = add_months(last_inventory_on, 12 * rules.biennial_years)
    window_from = add_months(due, -rules.biennial_window_months)
    window_to = add_months(due, rules.biennial_window_months)
    status = "late" if today > window_to else ("in_window" if today >= window_from else "not_yet")
    return BiennialDue(due, window_from, window_to, status)


# --- retention --------------------------------------------------------------------------------


def retention_problem(years: int) -> str | None:
    rules = ledger_rules()
    if years < rules.retention_min_years:
        return (
            f"Keep ledger records at least {rules.retention_min_years} years "
            f"({rules.retention.sourced.source})."
        )
    if years > rules.retention_max_years:
        return f"Use at most {rules.retention_max_years} years."
    return None


def kept_until(occurred_on: dt.date, retention_years: int) -> dt.date:
    """The first day a record may leave the ledger; before it, nothing is offered for purging."""
    return add_months(occurred_on, 12 * retention_years)


# --- compounded products ----------------------------------------------------------------------


class HasCompounded(Protocol):
    @property
    def compounded(self) -> bool: ...


def requires_home_acknowledgement(product: HasCompounded) -> bool:
    """At-home use of a compounded ketamine product needs an extra documented acknowledgement
    of the FDA warning (knowledge: compounded.home_acknowledgement)."""
    return bool(product.compounded)


def compounded_warning() -> Fact:
    """The FDA warning shown wherever a compounded product is chosen (knowledge: compounded)."""
    return ledger_rules().compounded_warning


def home_acknowledgement() -> Fact:
    """The text a patient acknowledges before taking a compounded product home."""
    return ledger_rules().home_acknowledgement
