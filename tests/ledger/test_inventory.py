"""Initial and biennial inventories: the opening count, zero inventories, complete counts, and a
discrepancy opening an investigation that is closed with its outcome."""

from __future__ import annotations

import datetime as dt

import pytest

from ketacare.errors import Conflict, Forbidden, InvalidInput
from ketacare.ledger import chain, inventories, setup
from ketacare.ledger.models import Investigation, LedgerEntry, Lot
from ketacare.ledger.schemas import (
    BiennialInventoryIn,
    CloseIn,
    CountLineIn,
    InitialInventoryIn,
    NoteIn,
    OpeningLineIn,
    RegistrationIn,
)
from tests.helpers import clinic_today, count
from tests.ledger.conftest import SECOND_DEA


def count_all(stock, **overrides: float) -> BiennialInventoryIn:  # type: ignore[no-untyped-def]
    """A count of every stocked lot, matching the book unless ``overrides`` say otherwise (mg)."""
    lines = [
        CountLineIn(lot_id=stock.lot_50.id, counted=overrides.get("lot_50", 1000)),
        CountLineIn(lot_id=stock.lot_10.id, counted=overrides.get("lot_10", 150), method="estimated"),
    ]
    return BiennialInventoryIn(registration_id=stock.registration.id, lines=lines)


def test_the_initial_inventory_opens_each_lot_with_its_count(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    opening = db.query(LedgerEntry).filter_by(kind="inventory_initial").one()
    assert opening.change_ug == opening.counted_ug == 150_000 and opening.book_ug == 0
    assert opening.lot_id == stock.lot_10.id and chain.detail_of(opening) == {"method": "exact"}
    with pytest.raises(InvalidInput) as caught:
        inventories.take_initial_inventory(
            db, stock.admin, InitialInventoryIn(registration_id=stock.registration.id)
        )
    assert "on record" in caught.value.errors["registration_id"]


def test_a_zero_initial_inventory_is_recorded_when_nothing_is_on_hand(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    second = setup.create_registration(
        db,
        stock.admin,
        RegistrationIn(dea_number=SECOND_DEA, location_name="Satellite", address="2 Side St", state="MA"),
    )
    inventory = inventories.take_initial_inventory(
        db, stock.admin, InitialInventoryIn(registration_id=second.id)
    )
    zero = db.query(LedgerEntry).filter_by(inventory_id=inventory.id).one()
    assert zero.lot_id is None and zero.change_ug == 0 and "zero inventory" in zero.reason
    assert chain.verify_clinic(db, world.clinic.id).ok


def test_an_initial_inventory_refuses_unknown_products_and_duplicate_lots(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    second = setup.create_registration(
        db,
        stock.admin,
        RegistrationIn(dea_number=SECOND_DEA, location_name="Satellite", address="2 Side St", state="MA"),
    )
    line = {
        "lot_number": "A1",
        "expires_on": clinic_today() + dt.timedelta(days=9),
        "supplier": "Acme",
        "counted": 5,
    }
    body = InitialInventoryIn(
        registration_id=second.id,
        lines=[
            OpeningLineIn(product_id=stock.vial_50.id, **line),
            OpeningLineIn(product_id=stock.vial_50.id, **line),
            OpeningLineIn(product_id=999_999, **line),
        ],
    )
    entries = count(db, LedgerEntry)
    with pytest.raises(InvalidInput) as caught:
        inventories.take_initial_inventory(db, stock.admin, body)
    assert caught.value.errors == {
        "lines.1.lot_number": "This lot is listed twice.",
        "lines.2.product_id": "No such product in your clinic.",
    }
    assert count(db, LedgerEntry) == entries and count(db, Lot) == 2


def test_a_biennial_count_that_matches_opens_nothing_and_changes_nothing(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    inventory = inventories.take_biennial_inventory(db, stock.nurse, count_all(stock))
    lines = db.query(LedgerEntry).filter_by(inventory_id=inventory.id).order_by(LedgerEntry.seq).all()
    assert [(e.kind, e.change_ug, e.counted_ug, e.book_ug) for e in lines] == [
        ("inventory_biennial", 0, 1_000_000, 1_000_000),
        ("inventory_biennial", 0, 150_000, 150_000),
    ]
    assert chain.detail_of(lines[1]) == {"method": "estimated"}
    assert count(db, Investigation) == 0


def test_a_discrepancy_opens_an_investigation_closed_with_notes(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    # 2 mL short in the 10 mg/mL lot (the example): 20 mg.
    inventories.take_biennial_inventory(db, stock.nurse, count_all(stock, lot_10=130))
    assert db.get(Lot, stock.lot_10.id).balance_ug == 150_000  # a count never changes the book  # type: ignore[union-attr]
    [view] = inventories.investigations(db, stock.nurse, open_only=True)
    assert view.investigation.discrepancy_ug == -20_000 and view.discrepancy == "−20 mg (2 mL)"
    assert view.lot.id == stock.lot_10.id
    iid = view.investigation.id
    inventories.add_investigation_note(db, stock.nurse, iid, NoteIn(text="Waste log for last week checked"))
    with pytest.raises(Forbidden):
        inventories.close_investigation(
            db, stock.nurse, iid, CloseIn(outcome="Nurses do not close investigations")
        )
    inventories.close_investigation(
        db, stock.admin, iid, CloseIn(outcome="Unrecorded waste found; adjustment #9")
    )
    [closed] = inventories.investigations(db, stock.admin)
    assert closed.investigation.status == "closed" and closed.investigation.closed_at is not None
    assert [n.text for n in closed.notes] == [
        "Waste log for last week checked",
        "Closed: Unrecorded waste found; adjustment #9",
    ]
    with pytest.raises(Conflict):
        inventories.add_investigation_note(db, stock.nurse, iid, NoteIn(text="too late"))
    with pytest.raises(Conflict):
        inventories.close_investigation(db, stock.admin, iid, CloseIn(outcome="closing it twice is refused"))
    assert inventories.investigations(db, stock.admin, open_only=True) == []


def test_a_biennial_count_must_cover_every_lot_with_stock(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    partial = BiennialInventoryIn(
        registration_id=stock.registration.id, lines=[CountLineIn(lot_id=stock.lot_50.id, counted=1000)]
    )
    with pytest.raises(InvalidInput) as caught:
        inventories.take_biennial_inventory(db, stock.nurse, partial)
    assert "missing: OPEN-10" in caught.value.errors["lines"]
    twice = count_all(stock)
    twice.lines.append(CountLineIn(lot_id=stock.lot_50.id, counted=1))
    with pytest.raises(InvalidInput) as caught:
        inventories.take_biennial_inventory(db, stock.nurse, twice)
    assert caught.value.errors == {"lines.2.lot_id": "This lot is counted twice."}


def test_a_count_in_ml_uses_the_products_strength(db, world, stock) -> None:  # type: ignore[no-untyped-def]
    body = count_all(stock)
    body.lines[0] = CountLineIn(lot_id=stock.lot_50.id, counted=19.5, unit="ml")  # 975 mg
    inventories.take_biennial_inventory(db, stock.nurse, body)
    [view] = inventories.investigations(db, stock.nurse, open_only=True)
    assert view.investigation.discrepancy_ug == -25_000
