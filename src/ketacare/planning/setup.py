"""Planning set-up: the protocol library, prices and chairs, the clinical defaults, opening hours
and the duty roster. Services never commit."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.errors import InvalidInput, NotFound, PendingAudit
from ketacare.knowledge.billing import default_prices
from ketacare.knowledge.protocols import Protocol, builtin_protocols, protocol_from_row, validate_protocol
from ketacare.planning import clinical_defaults_service, costing, scheduling
from ketacare.planning.clinical_defaults import ClinicalDefaults
from ketacare.planning.common import BOOKED
from ketacare.planning.models import (
    Chair,
    ClinicProtocol,
    DutyShift,
    PlanSession,
    PriceList,
    ScheduleSettings,
)
from ketacare.planning.schemas import (
    ChairIn,
    ClinicalDefaultsIn,
    ClinicProtocolIn,
    DutyIn,
    HoursIn,
    PriceListIn,
)

# --- protocols ---------------------------------------------------------------------------


def protocols(db: Session, clinic_id: int) -> list[Protocol]:
    """The library: built-in templates and the clinic's own rows; the newest version of a key wins."""
    library = {p.key: p for p in builtin_protocols()}
    rows = db.execute(
        select(ClinicProtocol).where(ClinicProtocol.clinic_id == clinic_id).order_by(ClinicProtocol.version)
    ).scalars()
    for row in rows:
        current = library.get(row.key)
        if current is None or row.version > current.version:
            library[row.key] = protocol_from_row({**row.fields, "version": row.version}, builtin=False)
    return list(library.values())


def protocol(db: Session, clinic_id: int, key: str) -> Protocol:
    found = next((p for p in protocols(db, clinic_id) if p.key == key), None)
    if found is None:
        raise InvalidInput(errors={"protocol_key": f"No protocol {key!r} in the library."})
    return found


def add_clinic_protocol(db: Session, actor: Principal, data: ClinicProtocolIn) -> Protocol:
    current = next((p for p in protocols(db, actor.clinic_id) if p.key == data.key), None)
    version = (current.version + 1) if current else 1
    row_fields = data.row()
    errors = validate_protocol({**row_fields, "version": version})
    if errors:
        raise InvalidInput(errors=errors)
    row = ClinicProtocol(
        clinic_id=actor.clinic_id,
        key=data.key,
        version=version,
        fields=row_fields,
        created_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db, actor, "planning.protocol.add", "protocol", resource_id=row.id, detail=f"{data.key} v{version}"
    )
    return protocol_from_row({**row_fields, "version": version}, builtin=False)


# --- prices and chairs -------------------------------------------------------------------


def price_list(db: Session, clinic_id: int) -> costing.PriceList:
    row = db.execute(select(PriceList).where(PriceList.clinic_id == clinic_id)).scalar_one_or_none()
    if row is None:
        d = default_prices()
        return costing.PriceList(
            d.consultation_usd, d.drug_usd_per_mg, d.premedication_usd_per_session, d.session_bands
        )
    return costing.PriceList(
        row.consultation_usd,
        row.drug_usd_per_mg,
        row.premedication_usd_per_session,
        tuple((int(m), float(f)) for m, f in row.session_bands),
    )


def has_own_prices(db: Session, clinic_id: int) -> bool:
    return db.execute(select(PriceList.id).where(PriceList.clinic_id == clinic_id)).first() is not None


def save_price_list(db: Session, actor: Principal, data: PriceListIn) -> costing.PriceList:
    row = db.execute(select(PriceList).where(PriceList.clinic_id == actor.clinic_id)).scalar_one_or_none()
    if row is None:
        row = PriceList(clinic_id=actor.clinic_id)
        db.add(row)
    row.consultation_usd = data.consultation_usd
    row.drug_usd_per_mg = data.drug_usd_per_mg
    row.premedication_usd_per_session = data.premedication_usd_per_session
    row.session_bands = [list(b) for b in data.session_bands]
    row.updated_by_id = actor.user_id
    row.updated_at = dt.datetime.now(dt.UTC)
    db.flush()
    audit.record(db, actor, "planning.prices.save", "price_list", resource_id=row.id)
    return price_list(db, actor.clinic_id)


def estimate_for(db: Session, clinic_id: int, plan: costing.EstimateInput) -> costing.Estimate:
    """The public front door (a later issue) calls this for estimates without a patient."""
    return costing.estimate(price_list(db, clinic_id), plan)


def chairs(db: Session, clinic_id: int) -> list[Chair]:
    return list(
        db.execute(
            select(Chair).where(Chair.clinic_id == clinic_id, Chair.active).order_by(Chair.room, Chair.name)
        ).scalars()
    )


def add_chair(db: Session, actor: Principal, data: ChairIn) -> Chair:
    if any(c.room == data.room and c.name == data.name for c in chairs(db, actor.clinic_id)):
        raise InvalidInput(errors={"name": f"{data.room} already has a chair called {data.name}."})
    row = Chair(clinic_id=actor.clinic_id, room=data.room, name=data.name, active=True)
    db.add(row)
    db.flush()
    audit.record(
        db, actor, "planning.chair.add", "chair", resource_id=row.id, detail=f"{data.room} {data.name}"
    )
    return row


def _staff(db: Session, actor: Principal) -> dict[int, str]:
    """Nurses and prescribers of the clinic by id: the names shown for booked sessions."""
    staff = [u for u in auth.list_staff(db, actor) if u.is_active and u.role in (Role.nurse, Role.prescriber)]
    return {u.id: u.full_name for u in sorted(staff, key=lambda u: (u.role, u.id))}


# --- clinical defaults ([M] or design values the clinic may set) ------------------------


def clinical_defaults(db: Session, clinic_id: int) -> ClinicalDefaults:
    """The clinic's values in force: its own where set, else the knowledge defaults."""
    return clinical_defaults_service.in_force(db, clinic_id)


def clinical_default_overrides(db: Session, clinic_id: int) -> dict[str, float | None]:
    return clinical_defaults_service.overrides(db, clinic_id)


def save_clinical_defaults(db: Session, actor: Principal, data: ClinicalDefaultsIn) -> ClinicalDefaults:
    return clinical_defaults_service.save(db, actor, data)


# --- opening hours and the duty roster --------------------------------------------------


def hours(db: Session, clinic_id: int) -> scheduling.Hours:
    row = db.execute(
        select(ScheduleSettings).where(ScheduleSettings.clinic_id == clinic_id)
    ).scalar_one_or_none()
    if row is None:
        return scheduling.DEFAULT_HOURS
    return scheduling.Hours(row.opens_at, row.closes_at, row.slot_min)


def has_own_hours(db: Session, clinic_id: int) -> bool:
    query = select(ScheduleSettings.id).where(ScheduleSettings.clinic_id == clinic_id)
    return db.execute(query).first() is not None


def save_hours(db: Session, actor: Principal, data: HoursIn) -> scheduling.Hours:
    row = db.execute(
        select(ScheduleSettings).where(ScheduleSettings.clinic_id == actor.clinic_id)
    ).scalar_one_or_none()
    if row is None:
        row = ScheduleSettings(clinic_id=actor.clinic_id)
        db.add(row)
    row.opens_at, row.closes_at, row.slot_min = data.opens_at, data.closes_at, data.slot_min
    row.updated_by_id = actor.user_id
    row.updated_at = dt.datetime.now(dt.UTC)
    db.flush()
    saved = hours(db, actor.clinic_id)
    audit.record(
        db,
        actor,
        "planning.hours.save",
        "clinic_hours",
        resource_id=row.id,
        detail=f"{saved.label()}, {saved.slot_min} min slots",
    )
    return saved


@dataclass(frozen=True)
class StaffMember:
    id: int
    name: str
    role: str
    active: bool


def _clinic_staff(db: Session, actor: Principal) -> dict[int, StaffMember]:
    return {
        u.id: StaffMember(u.id, u.full_name, u.role, u.is_active)
        for u in auth.list_staff(db, actor)
        if u.role in (Role.nurse.value, Role.prescriber.value)
    }


def duty_candidates(db: Session, actor: Principal) -> list[StaffMember]:
    """Active nurses and prescribers of the clinic: who can be on the duty roster."""
    staff = [m for m in _clinic_staff(db, actor).values() if m.active]
    return sorted(staff, key=lambda m: (m.role, m.name, m.id))


@dataclass(frozen=True)
class DutyRow:
    shift: DutyShift
    name: str
    role: str


def duty_roster(db: Session, actor: Principal, start: dt.date, days: int) -> list[DutyRow]:
    staff = _clinic_staff(db, actor)
    rows = db.execute(
        select(DutyShift)
        .where(
            DutyShift.clinic_id == actor.clinic_id,
            DutyShift.on_date >= start,
            DutyShift.on_date < start + dt.timedelta(days=days),
        )
        .order_by(DutyShift.on_date, DutyShift.start_time, DutyShift.id)
    ).scalars()
    gone = StaffMember(0, "?", "?", False)
    out = [DutyRow(r, staff.get(r.user_id, gone).name, staff.get(r.user_id, gone).role) for r in rows]
    return sorted(out, key=lambda d: (d.shift.on_date, d.shift.start_time, d.role, d.name))


def _duty(
    db: Session, actor: Principal, clinic_id: int, zone: str, first: dt.date, last: dt.date
) -> list[scheduling.Duty]:
    """The roster between two dates as instants; nurses first, so they staff the chair."""
    staff = {m.id: m for m in duty_candidates(db, actor)}
    rows = db.execute(
        select(DutyShift).where(
            DutyShift.clinic_id == clinic_id,
            DutyShift.on_date >= first,
            DutyShift.on_date <= last,
            DutyShift.user_id.in_(list(staff)),
        )
    ).scalars()
    out = [
        scheduling.Duty(
            r.user_id,
            staff[r.user_id].role == Role.prescriber.value,
            scheduling.local_dt(r.on_date, r.start_time, zone),
            scheduling.local_dt(r.on_date, r.end_time, zone),
        )
        for r in rows
    ]
    return sorted(out, key=lambda d: (d.prescriber, d.staff_id, d.starts_at))


def add_duty(db: Session, actor: Principal, data: DutyIn) -> list[DutyShift]:
    user = next((m for m in duty_candidates(db, actor) if m.id == data.user_id), None)
    if user is None:
        raise InvalidInput(errors={"user_id": "Choose an active nurse or prescriber of this clinic."})
    if data.on_date < clinic_time.today(db, actor.clinic_id):
        raise InvalidInput(errors={"on_date": "The roster is written for today or later."})
    dates = [data.on_date + dt.timedelta(weeks=w) for w in range(data.repeat_weeks)]
    existing = db.execute(
        select(DutyShift).where(DutyShift.user_id == user.id, DutyShift.on_date.in_(dates))
    ).scalars()
    for other in existing:
        if other.start_time < data.end_time and data.start_time < other.end_time:
            raise InvalidInput(
                errors={
                    "start_time": f"{user.name} is already on duty on {other.on_date.isoformat()} "
                    f"{other.start_time:%H:%M}-{other.end_time:%H:%M}."
                }
            )
    rows = [
        DutyShift(
            clinic_id=actor.clinic_id,
            user_id=user.id,
            on_date=day,
            start_time=data.start_time,
            end_time=data.end_time,
            created_by_id=actor.user_id,
        )
        for day in dates
    ]
    db.add_all(rows)
    db.flush()
    audit.record_many(
        db,
        actor,
        [
            audit.AuditEvent(
                "planning.duty.add",
                "duty_shift",
                r.id,
                detail=f"{user.name} ({user.role}) {r.on_date.isoformat()} "
                f"{r.start_time:%H:%M}-{r.end_time:%H:%M}",
            )
            for r in rows
        ],
    )
    return rows


def remove_duty(db: Session, actor: Principal, shift_id: int) -> None:
    """Take a shift off the roster, unless a booked session then loses its staff or the onsite
    prescriber (cancel or reschedule those sessions first)."""
    row = db.get(DutyShift, shift_id)
    if row is None or row.clinic_id != actor.clinic_id:
        why = "no such shift" if row is None else "shift of another clinic"
        raise NotFound(
            "No such shift on your clinic's roster.",
            audit=[PendingAudit("planning.duty.remove", "duty_shift", str(shift_id), None, "denied", why)],
        )
    zone = auth.clinic(db, actor.clinic_id).time_zone
    duty = _duty(db, actor, actor.clinic_id, zone, row.on_date - dt.timedelta(days=1), row.on_date)
    removed = scheduling.local_dt(row.on_date, row.start_time, zone)
    remaining = [d for d in duty if not (d.staff_id == row.user_id and d.starts_at == removed)]
    window_end = scheduling.local_dt(row.on_date, row.end_time, zone)
    sessions = db.execute(
        select(PlanSession).where(
            PlanSession.clinic_id == actor.clinic_id,
            PlanSession.status == BOOKED,
            PlanSession.starts_at < window_end,
            PlanSession.starts_at >= removed,
        )
    ).scalars()
    hrs = hours(db, actor.clinic_id)
    for s in sessions:
        long = (s.ends_at - s.starts_at).total_seconds() / 60 > hrs.open_minutes
        covered = [d for d in remaining if scheduling.covers(d, s.starts_at, s.ends_at, long)]
        if s.staff_id == row.user_id and not any(d.staff_id == s.staff_id for d in covered):
            why = "its nurse or prescriber"
        elif not any(d.prescriber for d in covered):
            why = "its onsite prescriber"
        else:
            continue
        raise InvalidInput(
            errors={
                "duty": f"Session {s.number} of plan #{s.plan_id} at "
                f"{s.starts_at.astimezone(zoneinfo.ZoneInfo(zone)):%H:%M} would lose {why}: "
                "reschedule or cancel it first."
            }
        )
    db.delete(row)
    db.flush()
    audit.record(
        db,
        actor,
        "planning.duty.remove",
        "duty_shift",
        resource_id=shift_id,
        detail=f"user {row.user_id} {row.on_date.isoformat()} {row.start_time:%H:%M}-{row.end_time:%H:%M}",
    )
