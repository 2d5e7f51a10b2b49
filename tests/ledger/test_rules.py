"""The ledger's pure rules: units, registration and NDC numbers, expiry, witnesses, theft and loss
deadlines, inventory due dates, retention and compounded products; every legal number sourced."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from ketacare.knowledge.ledger import ledger_rules
from ketacare.ledger import rules

TAGS = {"V", "V*", "M", "design"}


def test_every_ledger_fact_names_its_source_and_tag() -> None:
    k = ledger_rules()
    facts = [v for v in vars(k).values() if hasattr(v, "sourced")]
    assert len(facts) == 24
    for fact in facts:
        assert fact.text and fact.sourced.source and fact.sourced.tag in TAGS, fact
    for sourced in (k.dea_drug_code_sourced, k.expiry_warning):
        assert sourced.source and sourced.tag in TAGS
    # The legal numbers, from clinical-facts 6.2-6.4, verified there.
    assert (k.retention_min_years, k.retention.sourced.tag) == (2, "V")
    assert (k.notice_business_days, k.notice.sourced.tag) == (1, "V")
    assert (k.form106_days, k.form106.sourced.tag) == (45, "V")
    assert (k.biennial_years, k.biennial_window_months, k.biennial.sourced.tag) == (2, 6, "V")
    assert (k.destruction_witnesses, k.destruction_witnesses_fact.sourced.tag) == (2, "V")
    assert "1301.76" in k.notice.sourced.source and "88 FR 40707" in k.form106.sourced.source
    assert k.schedule == "III" and "1308.13" in k.scheduling.sourced.source
    # What the facts do not give is said to be ours.
    assert k.business_days.sourced.tag == "design" and "holiday" in k.business_days.text
    assert k.registration_number.sourced.tag == "V*"


def test_units_are_exact_micrograms() -> None:
    assert rules.mg_to_ug(28.3) == 28_300
    assert rules.ug_to_mg(28_300) == 28.3
    assert rules.container_ug(10, 50) == 500_000
    assert rules.amount_ug(2, "ml", 10) == 20_000
    assert rules.amount_ug(2, "mg", 10) == 2_000
    assert rules.ug_to_ml(500_000, 50) == 10
    assert rules.fmt_mg(1_234_500) == "1,234.5 mg" and rules.fmt_ml(20_000, 10) == "2 mL"
    with pytest.raises(ValueError, match="unit"):
        rules.amount_ug(1, "g", 10)
    # Twelve doses of 41.6666 mg never drift: each is stored to the microgram.
    total = sum(rules.mg_to_ug(41.6666) for _ in range(12))
    assert total == 12 * 41_667


def test_dea_number_check_digit() -> None:
    assert rules.dea_number_problem("AB1234563") is None
    assert rules.dea_number_problem("FK3141594") is None
    assert "check digit" in (rules.dea_number_problem("AB1234564") or "")
    assert "two capital letters" in (rules.dea_number_problem("A11234563") or "")
    assert "two capital letters" in (rules.dea_number_problem("AB123456") or "")


def test_ndc_formats() -> None:
    for ndc in ("0409-2051-05", "42023-113-10", "12345-6789-1", "12345-6789-12"):
        assert rules.ndc_problem(ndc) is None, ndc
    for ndc in ("040920510", "0409-2051-5", "abcd-efgh-ij"):
        assert rules.ndc_problem(ndc), ndc


def test_a_lot_is_usable_on_its_expiry_date_and_not_after() -> None:
    expiry = dt.date(2026, 11, 30)
    assert not rules.is_expired(expiry, dt.date(2026, 11, 30))
    assert rules.is_expired(expiry, dt.date(2026, 12, 1))
    assert rules.expires_within(expiry, dt.date(2026, 11, 1), 30)
    assert not rules.expires_within(expiry, dt.date(2026, 10, 1), 30)
    assert not rules.expires_within(expiry, dt.date(2026, 12, 2), 30)  # expired, not "expiring"


def test_take_problem_names_what_is_left_in_mg_and_ml() -> None:
    assert rules.take_problem(500_000, 500_000, 50) is None
    problem = rules.take_problem(100_000, 150_000, 50) or ""
    assert "Only 100 mg (2 mL) left" in problem and "150 mg" in problem
    assert rules.take_problem(100_000, 0, 50) == "Enter an amount above zero."


@dataclass
class W:
    user_id: int = 7
    clinic_id: int = 1
    role: str = "nurse"
    active: bool = True
    password_ok: bool = True

    def make(self) -> rules.Witness:
        return rules.Witness(self.user_id, self.clinic_id, self.role, self.active, self.password_ok)


@pytest.mark.parametrize(
    ("witness", "problem"),
    [
        (W(), None),
        (W(role="prescriber"), None),
        (None, "from your clinic"),
        (W(clinic_id=2), "from your clinic"),
        (W(user_id=3), "second person"),
        (W(active=False), "not active"),
        (W(role="auditor"), "nurse or a prescriber"),
        (W(role="clinic_admin"), "nurse or a prescriber"),
        (W(password_ok=False), "password is not correct"),
    ],
)
def test_waste_witness_rules(witness: W | None, problem: str | None) -> None:
    found = rules.waste_witness_problem(3, 1, witness.make() if witness else None)
    assert (found is None) if problem is None else (problem in (found or "")), found


def test_destruction_needs_two_different_employees_with_their_passwords() -> None:
    nurse, admin = W(user_id=7).make(), W(user_id=8, role="clinic_admin").make()
    assert rules.destruction_witness_problems(1, nurse, admin) == {}
    same = rules.destruction_witness_problems(1, nurse, nurse)
    assert same == {"witness2_user_id": "The two witnesses must be two different people."}
    outsider = rules.destruction_witness_problems(1, nurse, W(user_id=9, role="researcher").make())
    assert "employees" in outsider["witness2_user_id"]
    wrong = rules.destruction_witness_problems(1, W(user_id=7, password_ok=False).make(), admin)
    assert "password" in wrong["witness_user_id"]
    missing = rules.destruction_witness_problems(1, None, admin)
    assert "from your clinic" in missing["witness_user_id"]


@pytest.mark.parametrize(
    ("discovered", "notice_due"),
    [
        (dt.date(2026, 11, 16), dt.date(2026, 11, 17)),  # Monday -> Tuesday
        (dt.date(2026, 11, 20), dt.date(2026, 11, 23)),  # Friday -> Monday
        (dt.date(2026, 11, 21), dt.date(2026, 11, 23)),  # Saturday -> Monday
        (dt.date(2026, 11, 22), dt.date(2026, 11, 23)),  # Sunday -> Monday
        # Thanksgiving (26 Nov 2026) is not skipped: holidays are not in the facts.
        (dt.date(2026, 11, 25), dt.date(2026, 11, 26)),
    ],
)
def test_theft_notice_is_due_one_business_day_after_discovery(
    discovered: dt.date, notice_due: dt.date
) -> None:
    d = rules.loss_deadlines("theft", False, discovered)
    assert d.reportable and d.notice_due_on == notice_due
    assert d.form106_due_on == discovered + dt.timedelta(days=45)


def test_a_loss_is_reportable_only_when_significant_a_theft_always() -> None:
    day = dt.date(2026, 3, 2)
    minor = rules.loss_deadlines("loss", False, day)
    assert not minor.reportable and minor.notice_due_on is None and minor.form106_due_on is None
    significant = rules.loss_deadlines("loss", True, day)
    assert significant.reportable and significant.form106_due_on == dt.date(2026, 4, 16)
    assert significant.why.sourced.tag == "V"
    assert rules.loss_deadlines("theft", False, day).why == ledger_rules().theft_always
    with pytest.raises(ValueError, match="theft or loss"):
        rules.loss_deadlines("misplaced", True, day)


def test_biennial_inventory_window() -> None:
    last = dt.date(2024, 11, 19)
    due = rules.biennial_due(last, dt.date(2026, 1, 1))
    assert due.due_on == dt.date(2026, 11, 19)
    assert (due.window_from, due.window_to) == (dt.date(2026, 5, 19), dt.date(2027, 5, 19))
    assert due.status == "not_yet"
    assert rules.biennial_due(last, dt.date(2026, 6, 1)).status == "in_window"
    assert rules.biennial_due(last, dt.date(2027, 5, 19)).status == "in_window"
    assert rules.biennial_due(last, dt.date(2027, 5, 20)).status == "late"
    # A leap day: the biennial date falls back to the end of February.
    assert rules.biennial_due(dt.date(2024, 2, 29), dt.date(2024, 3, 1)).due_on == dt.date(2026, 2, 28)


def test_retention_is_at_least_two_years() -> None:
    assert "at least 2 years" in (rules.retention_problem(1) or "")
    assert rules.retention_problem(2) is None and rules.retention_problem(7) is None
    assert rules.retention_problem(51)
    assert rules.kept_until(dt.date(2025, 3, 31), 2) == dt.date(2027, 3, 31)


@dataclass
class P:
    compounded: bool


def test_compounded_products_need_the_home_acknowledgement_and_carry_the_fda_warning() -> None:
    assert rules.requires_home_acknowledgement(P(True))
    assert not rules.requires_home_acknowledgement(P(False))
    warning = rules.compounded_warning()
    assert "not FDA-approved" in warning.text and "not subject to REMS" in warning.text
    assert "10 October 2023" in warning.text and warning.sourced.tag == "V"
    assert "FDA" in rules.home_acknowledgement().text
