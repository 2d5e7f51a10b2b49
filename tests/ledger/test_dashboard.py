"""The admin's stock and compliance view: expiring and expired lots, overdue notices and Forms 106,
open discrepancies, inventories due; and how long records are kept."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from ketacare import clinic_time
from ketacare.ledger import dashboard, inventories, losses, movements, rules, setup
from ketacare.ledger.models import LedgerSettings, Lot
from ketacare.ledger.schemas import (
    BiennialInventoryIn,
    CountLineIn,
    NoticeIn,
    RegistrationIn,
    SettingsIn,
    TheftLossIn,
)
from tests.ledger.conftest import SECOND_DEA, receipt

NOW = dt.datetime.now(dt.UTC)


def test_expiring_and_expired_lots(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    today = clinic_time.today(db, world.clinic.id)
    movements.record_receipt(
        db,
        stock.admin,
        receipt(stock.registration.id, stock.vial_10.id, "SOON-1", today + dt.timedelta(days=30)),
    )
    movements.record_receipt(
        db,
        stock.admin,
        receipt(stock.registration.id, stock.vial_10.id, "GONE-1", today + dt.timedelta(days=5)),
    )
    db.execute(update(Lot).where(Lot.lot_number == "GONE-1").values(expires_on=today - dt.timedelta(days=1)))
    d = dashboard.dashboard(db, stock.admin)
    assert [r.lot.lot_number for r in d.expiring] == ["SOON-1"]
    assert [r.lot.lot_number for r in d.expired_with_stock] == ["GONE-1"]
    setup.save_settings(db, stock.admin, SettingsIn(retention_years=2, expiry_warning_days=10))
    assert dashboard.dashboard(db, stock.admin).expiring == []


def test_overdue_notices_and_forms_106(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    def theft(days_ago: int) -> int:
        body = TheftLossIn(
            kind="theft", amount=1, discovered_at=NOW - dt.timedelta(days=days_ago), description="Missing"
        )
        return movements.record_theft_loss(db, stock.admin, stock.lot_50.id, body).id

    recent, older, oldest = theft(0), theft(10), theft(50)
    minor = movements.record_theft_loss(
        db,
        stock.admin,
        stock.lot_50.id,
        TheftLossIn(kind="loss", amount=1, discovered_at=NOW, description="Spilled a drop"),
    )
    due = {
        v.report.id: (v.notice_overdue, v.form106_overdue)
        for v in dashboard.dashboard(db, stock.admin).losses_due
    }
    assert due == {recent: (False, False), older: (True, False), oldest: (True, True)}
    assert minor.id not in due
    losses.mark_notice_sent(db, stock.admin, older, NoticeIn(reference="DEA field office, by e-mail"))
    due = {
        v.report.id: (v.notice_overdue, v.form106_overdue)
        for v in dashboard.dashboard(db, stock.admin).losses_due
    }
    assert due[older] == (False, False)


def test_open_discrepancies_and_inventories_due(db, world, stock, as_role) -> None:  # type: ignore[no-untyped-def]
    setup.create_registration(
        db,
        stock.admin,
        RegistrationIn(dea_number=SECOND_DEA, location_name="Satellite", address="2 Side St", state="MA"),
    )
    lines = [
        CountLineIn(lot_id=stock.lot_50.id, counted=990),
        CountLineIn(lot_id=stock.lot_10.id, counted=150),
    ]
    inventories.take_biennial_inventory(
        db, stock.nurse, BiennialInventoryIn(registration_id=stock.registration.id, lines=lines)
    )
    d = dashboard.dashboard(db, stock.admin)
    assert [v.lot.lot_number for v in d.open_investigations] == ["L50-A"]
    statuses = {s.registration.location_name: s for s in d.registrations}
    assert statuses["Satellite"].initial_on is None and statuses["Satellite"].biennial is None
    main = statuses["Main clinic"]
    assert main.initial_on == main.last_on == d.today
    assert main.biennial is not None and main.biennial.due_on == rules.add_months(d.today, 24)
    db.commit()
    page = as_role("admin").get("/ledger").text
    assert "Satellite (BK2718281): no initial inventory on record" in page
    assert "Open discrepancy on lot L50-A" in page and "−10 mg (0.2 mL)" in page


def test_retention_counts_what_is_past_it(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    old = TheftLossIn(
        kind="loss", amount=1, discovered_at=NOW - dt.timedelta(days=3 * 365), description="Old"
    )
    movements.record_theft_loss(db, stock.admin, stock.lot_50.id, old)
    kept = dashboard.retention(db, stock.admin)
    assert kept.settings.retention_years == 2 and not kept.settings.saved
    assert kept.entries == 3 and kept.past_retention == 1
    assert kept.oldest_on is not None and kept.kept_until is not None
    assert 729 <= (kept.kept_until - kept.oldest_on).days <= 731
    setup.save_settings(
        db, stock.admin, SettingsIn(retention_years=5, retention_basis="State rule", expiry_warning_days=90)
    )
    assert dashboard.retention(db, stock.admin).past_retention == 0
    assert db.get(LedgerSettings, world.clinic.id).retention_basis == "State rule"  # type: ignore[union-attr]
