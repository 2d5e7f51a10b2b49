"""Directory use-cases: clinic profiles and search, cost estimates, consultation slots and
requests, the clinic's queue, reviews and public-form rate limits. Services never commit;
every read or write of a person's data appends to the audit chain in the same transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.db import lock_keys, utcnow
from ketacare.directory import costs, geo, tokens, vetting
from ketacare.directory.models import (
    ClinicProfile,
    ClinicReview,
    ConsultationRequest,
    ConsultationSlot,
    FormHit,
)
from ketacare.directory.schemas import BookingIn, ModerationIn, ProfileIn, ReviewIn, SearchIn, SlotsIn
from ketacare.errors import Forbidden, InvalidInput, NotFound, PendingAudit, Throttled
from ketacare.knowledge.front_door import vetting_defaults
from ketacare.knowledge.protocols import Protocol
from ketacare.ledger import verification as ledger_verification
from ketacare.planning import setup as plan_setup
from ketacare.sessions import clinic_record

PUBLIC_USER = "public"
# (design) submissions per address per hour on each public form; clinic-independent defaults.
RATE_LIMITS: dict[str, int] = {"assess": 30, "search": 60, "book": 5, "cancel": 10, "review": 5}
RATE_WINDOW = dt.timedelta(hours=1)
ASSESSMENT_TOKEN_TTL = dt.timedelta(hours=2)  # (design) how long answers ride along unsaved
NO_PRICE_LIST = (
    "This clinic has not published a price list on KetaCare yet, so no estimate can be made. "
    "Ask the clinic for its prices at the consultation."
)

# --- rate limits -------------------------------------------------------------------------


def addr_hash(secret_key: str, client_addr: str) -> str:
    """The address is never stored: only an HMAC of it, enough to count submissions."""
    return hmac.new(secret_key.encode(), f"directory:{client_addr}".encode(), hashlib.sha256).hexdigest()


def record_hit(db: Session, form: str, hashed_addr: str) -> None:
    db.add(FormHit(form=form, addr_hash=hashed_addr, at=utcnow()))
    db.flush()


def throttle(db: Session, form: str, hashed_addr: str) -> None:
    """Refuse the submission once the address reached the form's hourly limit; else count it.
    The address's counter is locked until the transaction ends, so parallel submissions are
    counted one after the other and never all pass the same check."""
    lock_keys(db, f"form-hits:{form}:{hashed_addr}")
    since = utcnow() - RATE_WINDOW
    used = db.execute(
        select(func.count())
        .select_from(FormHit)
        .where(FormHit.form == form, FormHit.addr_hash == hashed_addr, FormHit.at >= since)
    ).scalar_one()
    if used >= RATE_LIMITS[form]:
        raise Throttled(
            "Too many submissions of this form from your network in the last hour, so this one was "
            "not accepted. Please try again later."
        )
    record_hit(db, form, hashed_addr)


def purge_hits(db: Session, before: dt.datetime) -> int:
    """Forget rate-limit hits older than ``before`` (they only matter within the window)."""
    result = db.execute(delete(FormHit).where(FormHit.at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- profiles and search -----------------------------------------------------------------


@dataclass(frozen=True)
class ReviewView:
    rating: int
    body: str
    created_at: dt.datetime
    status: str
    reason: str


@dataclass
class ClinicCard:
    clinic_id: int
    slug: str
    name: str
    profile: ClinicProfile
    score: vetting.Score
    fee_range: tuple[float, float] | None
    consultation_usd: float | None
    distance_miles: float | None = None
    reviews: list[ReviewView] = field(default_factory=list)
    hidden_reviews: int = 0
    sessions_delivered: int = 0
    adverse_events_recorded: int = 0


def profile_row(db: Session, clinic_id: int) -> ClinicProfile | None:
    return db.execute(select(ClinicProfile).where(ClinicProfile.clinic_id == clinic_id)).scalar_one_or_none()


def save_profile(db: Session, actor: Principal, data: ProfileIn) -> ClinicProfile:
    place = geo.lookup(data.zip)
    if place is None:
        raise InvalidInput(errors={"zip": f"{data.zip} is not a US ZIP code we know."})
    row = profile_row(db, actor.clinic_id)
    if row is None:
        row = ClinicProfile(clinic_id=actor.clinic_id)
        db.add(row)
    for name, value in data.model_dump().items():
        setattr(row, name, value)
    row.lat, row.lon = place.lat, place.lon
    row.updated_by_id = actor.user_id
    row.updated_at = utcnow()
    db.flush()
    audit.record(db, actor, "directory.profile.save", "clinic_profile", resource_id=row.id)
    return row


def _reviews(db: Session, clinic_id: int) -> list[ClinicReview]:
    return list(
        db.execute(
            select(ClinicReview)
            .where(ClinicReview.clinic_id == clinic_id, ClinicReview.status != "pending")
            .order_by(ClinicReview.created_at.desc())
        ).scalars()
    )


def _card(db: Session, profile: ClinicProfile, origin: geo.ZipPlace | None = None) -> ClinicCard:
    clinic = auth.clinic(db, profile.clinic_id)
    rows = _reviews(db, profile.clinic_id)
    published = [r for r in rows if r.status == "published"]
    average = sum(r.rating for r in published) / len(published) if published else None
    safety = clinic_record.clinic_safety_record(db, profile.clinic_id)
    compliance = ledger_verification.compliance_signal(db, profile.clinic_id)
    facts = vetting.ClinicFacts(
        years_experience=profile.years_experience,
        physicians=profile.physicians,
        crnas=profile.crnas,
        nurse_practitioners=profile.nurse_practitioners,
        acls_certified=profile.acls_certified,
        board_certified=profile.board_certified,
        setting=profile.setting,
        room_type=profile.room_type,
        equipment=frozenset(profile.equipment),
        review_count=len(published),
        review_average=average,
        sessions_on_platform=safety.sessions_delivered or None,
        adverse_event_reporting=(
            None
            if safety.sessions_delivered < vetting_defaults().ae_reporting_min_sessions
            else safety.adverse_events_recorded > 0
        ),
        controlled_substance_compliance=compliance.compliant,
        controlled_substance_detail=compliance.detail,
    )
    fee_range: tuple[float, float] | None = None
    consultation: float | None = None
    if plan_setup.has_own_prices(db, profile.clinic_id):
        prices = plan_setup.price_list(db, profile.clinic_id)
        fees = [fee for _, fee in prices.session_bands]
        fee_range = (min(fees), max(fees)) if fees else None
        consultation = prices.consultation_usd
    distance = (
        geo.haversine_miles(origin.lat, origin.lon, profile.lat, profile.lon) if origin is not None else None
    )
    return ClinicCard(
        clinic_id=clinic.id,
        slug=clinic.slug,
        name=clinic.name,
        profile=profile,
        score=vetting.score(facts),
        fee_range=fee_range,
        consultation_usd=consultation,
        distance_miles=distance,
        reviews=[
            ReviewView(
                r.rating,
                r.body if r.status == "published" else "",
                r.created_at,
                r.status,
                r.moderation_reason,
            )
            for r in rows
        ],
        hidden_reviews=sum(1 for r in rows if r.status == "hidden"),
        sessions_delivered=safety.sessions_delivered,
        adverse_events_recorded=safety.adverse_events_recorded,
    )


def _published(db: Session) -> list[ClinicProfile]:
    return list(db.execute(select(ClinicProfile).where(ClinicProfile.published.is_(True))).scalars())


def all_clinics(db: Session) -> list[ClinicCard]:
    return sorted((_card(db, p) for p in _published(db)), key=lambda c: c.name)


def search(db: Session, data: SearchIn) -> tuple[geo.ZipPlace, list[ClinicCard]]:
    origin = geo.lookup(data.zip)
    if origin is None:
        raise InvalidInput(
            errors={"zip": f"We do not know the ZIP code {data.zip}. Check it, or try a nearby one."}
        )
    found = []
    for profile in _published(db):
        if data.route and data.route not in profile.routes:
            continue
        card = _card(db, profile, origin)
        assert card.distance_miles is not None
        if card.distance_miles > data.radius_miles:
            continue
        if data.min_score is not None and card.score.value < data.min_score:
            continue
        if data.max_session_usd is not None and (
            card.fee_range is None or card.fee_range[0] > data.max_session_usd
        ):
            continue
        found.append(card)
    found.sort(key=lambda c: c.distance_miles or 0.0)
    return origin, found


def clinic_card(db: Session, slug: str) -> ClinicCard:
    try:
        clinic = auth.clinic_by_slug(db, slug)
    except NotFound as exc:
        raise NotFound("There is no clinic at this address.") from exc
    profile = profile_row(db, clinic.id)
    if profile is None or not profile.published:
        raise NotFound("There is no clinic at this address.")
    return _card(db, profile)


# --- cost estimate -----------------------------------------------------------------------


def offered_protocols(db: Session, card: ClinicCard) -> list[Protocol]:
    return [p for p in plan_setup.protocols(db, card.clinic_id) if p.route in card.profile.routes]


def estimate(db: Session, card: ClinicCard, protocol_key: str, weight_kg: float | None) -> costs.CostRange:
    if not plan_setup.has_own_prices(db, card.clinic_id):
        raise InvalidInput(errors={"price_list": NO_PRICE_LIST})
    offered = {p.key: p for p in offered_protocols(db, card)}
    chosen = offered.get(protocol_key)
    if chosen is None:
        raise InvalidInput(errors={"protocol": "Choose one of the protocols this clinic offers."})
    if weight_kg is not None and not 20 <= weight_kg <= 300:
        raise InvalidInput(errors={"weight_kg": "Give a weight between 20 and 300 kg, or leave it empty."})
    return costs.cost_range(
        chosen,
        lambda plan: plan_setup.estimate_for(db, card.clinic_id, plan),
        (card.profile.boosters_per_year_min, card.profile.boosters_per_year_max),
        weight_kg,
    )


# --- slots and consultation requests -----------------------------------------------------


def open_slots(db: Session, clinic_id: int, now: dt.datetime) -> list[ConsultationSlot]:
    return list(
        db.execute(
            select(ConsultationSlot)
            .where(
                ConsultationSlot.clinic_id == clinic_id,
                ConsultationSlot.status == "open",
                ConsultationSlot.starts_at > now,
            )
            .order_by(ConsultationSlot.starts_at)
            .limit(60)
        ).scalars()
    )


def clinic_slots(db: Session, actor: Principal, now: dt.datetime) -> list[ConsultationSlot]:
    return list(
        db.execute(
            select(ConsultationSlot)
            .where(ConsultationSlot.clinic_id == actor.clinic_id, ConsultationSlot.starts_at > now)
            .order_by(ConsultationSlot.starts_at)
        ).scalars()
    )


def add_slots(db: Session, actor: Principal, data: SlotsIn, now: dt.datetime) -> list[ConsultationSlot]:
    zone = zoneinfo.ZoneInfo(auth.clinic(db, actor.clinic_id).time_zone)
    first = data.first_start if data.first_start.tzinfo else data.first_start.replace(tzinfo=zone)
    starts = [first + dt.timedelta(minutes=data.every_minutes * n) for n in range(data.count)]
    if starts[0] <= now:
        raise InvalidInput(errors={"first_start": "Slots must start in the future."})
    taken = set(
        db.execute(
            select(ConsultationSlot.starts_at).where(
                ConsultationSlot.clinic_id == actor.clinic_id, ConsultationSlot.starts_at.in_(starts)
            )
        ).scalars()
    )
    if taken:
        shown = ", ".join(sorted(t.astimezone(zone).strftime("%Y-%m-%d %H:%M") for t in taken))
        raise InvalidInput(errors={"first_start": f"There is already a slot at {shown}."})
    rows = [ConsultationSlot(clinic_id=actor.clinic_id, starts_at=s, minutes=data.minutes) for s in starts]
    db.add_all(rows)
    db.flush()
    audit.record(
        db,
        actor,
        "directory.slots.add",
        "consultation_slot",
        resource_id=rows[0].id,
        detail=f"{len(rows)} slot(s)",
    )
    return rows


def withdraw_slot(db: Session, actor: Principal, slot_id: int) -> None:
    done: CursorResult[Any] = db.execute(  # type: ignore[assignment]
        update(ConsultationSlot)
        .where(
            ConsultationSlot.id == slot_id,
            ConsultationSlot.clinic_id == actor.clinic_id,
            ConsultationSlot.status == "open",
        )
        .values(status="withdrawn")
    )
    if not done.rowcount:
        raise InvalidInput(errors={"slot": "Only an open slot of your clinic can be withdrawn."})
    audit.record(db, actor, "directory.slots.withdraw", "consultation_slot", resource_id=slot_id)


def _reference() -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "KC-" + "".join(secrets.choice(alphabet) for _ in range(8))


SLOT_TAKEN = (
    "Someone booked this time a moment ago. Please choose another time; nothing else you typed was lost."
)


def book(
    db: Session,
    clinic_id: int,
    data: BookingIn,
    answers: dict[str, Any] | None,
    outcome: str | None,
    now: dt.datetime,
) -> ConsultationRequest:
    """Take the slot with a conditional UPDATE (open -> booked): of two concurrent requests
    exactly one changes a row; the other is told the slot was taken. ``slot_id`` is also
    UNIQUE on the request, so even a bypassed UPDATE could not double-book."""
    slot = db.execute(
        select(ConsultationSlot).where(
            ConsultationSlot.id == data.slot_id, ConsultationSlot.clinic_id == clinic_id
        )
    ).scalar_one_or_none()
    if slot is None or slot.starts_at <= now:
        raise InvalidInput(errors={"slot_id": "That time is not offered any more. Please choose another."})
    taken: CursorResult[Any] = db.execute(  # type: ignore[assignment]
        update(ConsultationSlot)
        .where(ConsultationSlot.id == slot.id, ConsultationSlot.status == "open")
        .values(status="booked")
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise InvalidInput(errors={"slot_id": SLOT_TAKEN})
    row = ConsultationRequest(
        clinic_id=clinic_id,
        slot_id=slot.id,
        starts_at=slot.starts_at,
        reference=_reference(),
        name=data.name,
        email=data.email,
        phone=data.phone,
        route_wanted=data.route_wanted,
        answers=answers if data.share_answers else None,
        outcome=outcome if data.share_answers else None,
        status="requested",
        created_at=now,
    )
    db.add(row)
    try:
        db.flush()
    except IntegrityError as exc:
        raise InvalidInput(errors={"slot_id": SLOT_TAKEN}) from exc
    audit.record(
        db,
        None,
        "directory.request.create",
        "consultation_request",
        resource_id=row.id,
        clinic_id=clinic_id,
        username=PUBLIC_USER,
        detail=f"{row.reference}; answers {'shared' if row.answers else 'not kept'}",
    )
    return row


def cancel_token(secret_key: str, row: ConsultationRequest) -> str:
    """Valid until the consultation starts; it names the request by id only."""
    return tokens.sign(secret_key, "cancel", {"r": row.id}, row.starts_at.timestamp())


def request_for_token(db: Session, secret_key: str, token: str, now: dt.datetime) -> ConsultationRequest:
    try:
        data = tokens.verify(secret_key, "cancel", token, now.timestamp())
    except tokens.BadToken as exc:
        message = (
            "This cancel link has expired: the consultation time has passed. Contact the clinic directly."
            if exc.expired
            else "This cancel link is not valid. Use the link from your confirmation exactly as sent."
        )
        raise InvalidInput(errors={"token": message}) from exc
    request_id = data.get("r")
    row = db.get(ConsultationRequest, request_id) if isinstance(request_id, int) else None
    if row is None:
        raise InvalidInput(errors={"token": "This cancel link is not valid."})
    return row


def cancel(db: Session, secret_key: str, token: str, now: dt.datetime) -> ConsultationRequest:
    row = request_for_token(db, secret_key, token, now)
    if row.status == "cancelled":
        return row
    slot_id = row.slot_id
    # A conditional UPDATE: of two uses of the same link at once exactly one cancels (and
    # reopens the slot); the other finds the request already cancelled.
    done: CursorResult[Any] = db.execute(  # type: ignore[assignment]
        update(ConsultationRequest)
        .where(ConsultationRequest.id == row.id, ConsultationRequest.status != "cancelled")
        .values(status="cancelled", cancelled_at=now, slot_id=None)
        .execution_options(synchronize_session=False)
    )
    db.refresh(row)
    if done.rowcount != 1:
        return row
    if slot_id is not None:
        db.execute(
            update(ConsultationSlot)
            .where(ConsultationSlot.id == slot_id, ConsultationSlot.status == "booked")
            .values(status="open")
            .execution_options(synchronize_session=False)
        )
    audit.record(
        db,
        None,
        "directory.request.cancel",
        "consultation_request",
        resource_id=row.id,
        clinic_id=row.clinic_id,
        username=PUBLIC_USER,
        detail=row.reference,
    )
    return row


def queue(db: Session, actor: Principal, include_done: bool = False) -> list[ConsultationRequest]:
    """The clinic's requests; listing names is a read of personal data, so each is audited."""
    statuses = ("requested", "seen", "cancelled") if include_done else ("requested", "seen")
    rows = list(
        db.execute(
            select(ConsultationRequest)
            .where(ConsultationRequest.clinic_id == actor.clinic_id, ConsultationRequest.status.in_(statuses))
            .order_by(ConsultationRequest.starts_at)
        ).scalars()
    )
    audit.record_many(
        db,
        actor,
        [audit.AuditEvent("directory.request.list", "consultation_request", r.id) for r in rows],
    )
    return rows


def queue_item(db: Session, actor: Principal, request_id: int) -> ConsultationRequest:
    row = db.get(ConsultationRequest, request_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound(
            "There is no such request in your clinic's queue.",
            audit=[
                PendingAudit(
                    "directory.request.read", "consultation_request", str(request_id), outcome="denied"
                )
            ],
        )
    audit.record(
        db,
        actor,
        "directory.request.read",
        "consultation_request",
        resource_id=row.id,
        detail="with answers" if row.answers else "",
    )
    return row


def mark_seen(db: Session, actor: Principal, request_id: int) -> ConsultationRequest:
    row = queue_item(db, actor, request_id)
    if row.status == "requested":
        row.status = "seen"
        db.flush()
        audit.record(db, actor, "directory.request.seen", "consultation_request", resource_id=row.id)
    return row


# --- reviews -----------------------------------------------------------------------------


def my_review(db: Session, actor: Principal) -> ClinicReview | None:
    if actor.patient_id is None:
        raise Forbidden("Only a patient account can review its clinic.")
    row = db.execute(
        select(ClinicReview).where(
            ClinicReview.clinic_id == actor.clinic_id, ClinicReview.patient_id == actor.patient_id
        )
    ).scalar_one_or_none()
    audit.record(
        db,
        actor,
        "directory.review.read",
        "clinic_review",
        resource_id=row.id if row else None,
        patient_id=actor.patient_id,
    )
    return row


def submit_review(db: Session, actor: Principal, data: ReviewIn) -> ClinicReview:
    """One review per patient per clinic, from a patient who completed a session there (a
    verified review); a second submission edits it and sends it back to moderation."""
    if actor.patient_id is None:
        raise Forbidden("Only a patient account can review its clinic.")
    if not clinic_record.had_session(db, actor.clinic_id, actor.patient_id):
        raise Forbidden("Reviews are from patients who have had a session at the clinic.")
    row = db.execute(
        select(ClinicReview).where(
            ClinicReview.clinic_id == actor.clinic_id, ClinicReview.patient_id == actor.patient_id
        )
    ).scalar_one_or_none()
    if row is None:
        row = ClinicReview(clinic_id=actor.clinic_id, patient_id=actor.patient_id)
        db.add(row)
    row.rating, row.body, row.status = data.rating, data.body, "pending"
    row.moderation_reason, row.moderated_by_id, row.moderated_at = "", None, None
    row.created_at = utcnow()
    db.flush()
    audit.record(
        db, actor, "directory.review.submit", "clinic_review", resource_id=row.id, patient_id=actor.patient_id
    )
    return row


def reviews_for_moderation(db: Session, actor: Principal) -> list[ClinicReview]:
    rows = list(
        db.execute(
            select(ClinicReview)
            .where(ClinicReview.clinic_id == actor.clinic_id)
            .order_by(ClinicReview.created_at)
        ).scalars()
    )
    audit.record_many(
        db,
        actor,
        [audit.AuditEvent("directory.review.list", "clinic_review", r.id, r.patient_id) for r in rows],
    )
    return rows


def moderate(db: Session, actor: Principal, review_id: int, data: ModerationIn) -> ClinicReview:
    row = db.get(ClinicReview, review_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound("There is no such review for your clinic.")
    row.status = "published" if data.decision == "publish" else "hidden"
    row.moderation_reason = data.reason if data.decision == "hide" else ""
    row.moderated_by_id, row.moderated_at = actor.user_id, utcnow()
    db.flush()
    audit.record(
        db,
        actor,
        f"directory.review.{data.decision}",
        "clinic_review",
        resource_id=row.id,
        patient_id=row.patient_id,
        detail=row.moderation_reason,
    )
    return row
