"""Outcome use-cases: the clinic's follow-up settings, scheduling follow-ups, single-use links
(signed, stored hashed, expiring), drafts and submissions, reminders, the pain diary, the
opioid load (MME/day) and the patient's trajectory against baseline. Services never commit."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from ketacare.audit import service as audit
from ketacare.auth.principal import Principal
from ketacare.directory import tokens
from ketacare.errors import InvalidInput, NotFound
from ketacare.knowledge.outcomes import (
    Instrument,
    Schedule,
    Timepoint,
    default_schedule,
    instruments,
    outcome_rules,
    registry_definitions,
)
from ketacare.outcomes import rules
from ketacare.outcomes.mail import Outgoing
from ketacare.outcomes.models import (
    DiaryEntry,
    FollowUp,
    MmeReading,
    OutcomeAnswer,
    OutcomeScore,
    OutcomeSettings,
)
from ketacare.outcomes.schemas import DiaryIn, OneOffIn, SeriesIn, SettingsIn
from ketacare.patients import service as patients
from ketacare.screening.eligibility import MedicationFact, mme_per_day

TOKEN_PURPOSE = "outcome-follow-up"  # noqa: S105 (a token purpose, not a secret)
OPEN = ("scheduled", "sent")
LINK_MESSAGES = {
    "invalid": "This questionnaire link is not valid. Please use the newest link your clinic sent you.",
    "expired": "This questionnaire link has expired. Your clinic can send you a new one; "
    "any answers you saved are kept.",
    "used": "This questionnaire has already been sent in. Thank you: nothing more is needed.",
    "cancelled": "This questionnaire is no longer needed. Your clinic will send a new one if it is.",
}


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveSettings:
    schedule: Schedule
    link_valid_days: int
    reminder_after_days: int
    bpi_licence: str | None
    own: bool
    baseline_lookback_days: int = field(default_factory=lambda: registry_definitions().baseline_lookback_days)

    @property
    def bpi_licensed(self) -> bool:
        return bool(self.bpi_licence)


def settings_for(db: Session, clinic_id: int) -> EffectiveSettings:
    base, r = default_schedule(), outcome_rules()
    row = db.execute(
        select(OutcomeSettings).where(OutcomeSettings.clinic_id == clinic_id)
    ).scalar_one_or_none()
    if row is None:
        return EffectiveSettings(base, r.link_valid_days, r.reminder_after_days, None, False)
    # With a BPI licence, the BPI short form joins the baseline and the monthly follow-ups.
    bpi: tuple[str, ...] = ("bpi_sf",) if row.bpi_licence else ()
    by_days = {t.days: t for t in base.timepoints}
    points = tuple(
        by_days.get(d) or Timepoint(f"day_{d}", d, base.monthly_instruments + bpi)
        for d in sorted(set(row.schedule_days))
    )
    schedule = Schedule(
        timepoints=points,
        baseline_instruments=base.baseline_instruments + bpi,
        end_of_session_instruments=base.end_of_session_instruments,
        monthly_instruments=base.monthly_instruments + bpi,
        monthly_every_days=row.monthly_every_days,
        monthly_until_days=row.monthly_until_days,
        sourced=base.sourced,
    )
    return EffectiveSettings(
        schedule,
        row.link_valid_days,
        row.reminder_after_days,
        row.bpi_licence,
        True,
        row.baseline_lookback_days or registry_definitions().baseline_lookback_days,
    )


def save_settings(db: Session, actor: Principal, data: SettingsIn) -> EffectiveSettings:
    days = sorted({int(d) for d in data.schedule_days.split(",")})
    if not days or days[0] < 1 or days[-1] > 3650:
        raise InvalidInput(errors={"schedule_days": "Give days after the series from 1 to 3650."})
    row = db.execute(
        select(OutcomeSettings).where(OutcomeSettings.clinic_id == actor.clinic_id)
    ).scalar_one_or_none()
    if row is None:
        row = OutcomeSettings(clinic_id=actor.clinic_id)
        db.add(row)
    row.schedule_days = days
    row.monthly_every_days = data.monthly_every_days
    row.monthly_until_days = data.monthly_until_days
    row.link_valid_days = data.link_valid_days
    row.reminder_after_days = data.reminder_after_days
    row.bpi_licence = (data.bpi_licence or "").strip() or None
    row.baseline_lookback_days = data.baseline_lookback_days
    row.updated_by_id = actor.user_id
    row.updated_at = dt.datetime.now(dt.UTC)
    db.flush()
    audit.record(db, actor, "outcomes.settings", "clinic", resource_id=actor.clinic_id)
    return settings_for(db, actor.clinic_id)


def _check_instruments(keys: list[str], eff: EffectiveSettings) -> list[str]:
    allowed = {i.key for i in rules.available(eff.bpi_licensed)}
    return [k for k in keys if k in allowed]


# --- scheduling ------------------------------------------------------------------------------------


def series_of(series_ends: Mapping[int, dt.date], plan_id: int | None, series_end_on: dt.date) -> int | None:
    """The series (plan) follow-ups after ``series_end_on`` belong to: ``plan_id`` when it is one
    of the patient's series (``series_ends``: plan -> day of its last discharged session), else
    the series that ended last by that day (one day of slack: a UTC day against the clinic's).
    A ``plan_id`` that is not the patient's series is refused."""
    if plan_id is not None:
        if plan_id not in series_ends:
            raise InvalidInput(errors={"plan_id": "Choose one of this patient's treatment series."})
        return plan_id
    limit = series_end_on + dt.timedelta(days=1)
    ended = [(end, plan) for plan, end in series_ends.items() if end <= limit]
    return max(ended)[1] if ended else None


def schedule_series(
    db: Session,
    actor: Principal,
    patient_id: int,
    data: SeriesIn,
    today: dt.date | None = None,
    series_ends: Mapping[int, dt.date] | None = None,
) -> list[FollowUp]:
    """The follow-ups after a series ending on ``data.series_end_on``, attached to that series
    (``series_of``; ``series_ends``: the patient's series from the sessions feature); open
    follow-ups of an earlier series still to come are cancelled (the new series supersedes them)."""
    patients.visible_patient(db, actor, patient_id, "follow_up.schedule")
    plan_id = series_of(series_ends or {}, data.plan_id, data.series_end_on)
    eff = settings_for(db, actor.clinic_id)
    earlier = db.execute(
        select(FollowUp).where(
            FollowUp.patient_id == patient_id,
            FollowUp.status.in_(OPEN),
            FollowUp.series_end_on.is_not(None),
            FollowUp.due_on > data.series_end_on,
        )
    ).scalars()
    for row in earlier:
        row.status = "cancelled"
    created = []
    for point in rules.follow_up_points(eff.schedule):
        row = FollowUp(
            clinic_id=actor.clinic_id,
            patient_id=patient_id,
            plan_id=plan_id,
            timepoint=point.timepoint,
            days_after_series=point.days,
            series_end_on=data.series_end_on,
            due_on=data.series_end_on + dt.timedelta(days=point.days),
            instruments=_check_instruments(list(point.instruments), eff),
            status="scheduled",
            draft={},
            created_by_id=actor.user_id,
        )
        db.add(row)
        created.append(row)
    db.flush()
    audit.record(
        db,
        actor,
        "follow_up.schedule",
        "patient",
        resource_id=patient_id,
        patient_id=patient_id,
        detail=f"series end {data.series_end_on.isoformat()}: {len(created)} follow-ups",
    )
    return created


def schedule_after_series(
    db: Session, actor: Principal, patient_id: int, series_end_on: dt.date, plan_id: int
) -> int:
    """The follow-ups after a series (``plan_id``), scheduled once (a session's discharge calls
    this when it ends a series): none are added when that series' follow-ups exist. Returns how
    many were."""
    existing = db.execute(
        select(FollowUp.id)
        .where(
            FollowUp.patient_id == patient_id,
            (FollowUp.plan_id == plan_id) | (FollowUp.series_end_on == series_end_on),
            FollowUp.status != "cancelled",
        )
        .limit(1)
    ).first()
    if existing is not None:
        return 0
    data = SeriesIn(series_end_on=series_end_on, plan_id=plan_id)
    return len(schedule_series(db, actor, patient_id, data, series_ends={plan_id: series_end_on}))


def end_of_session(db: Session, actor: Principal, patient_id: int, on: dt.date) -> FollowUp:
    """The end-of-session questionnaire of a session discharged on ``on``, created once: the
    patient's end-of-session questionnaire of that day if there is one (sessions are at most
    daily, so a day stands for a session, and a second discharge the same day adds none)."""
    row = db.execute(
        select(FollowUp)
        .where(
            FollowUp.patient_id == patient_id,
            FollowUp.timepoint == END_OF_SESSION,
            FollowUp.due_on == on,
            FollowUp.status != "cancelled",
        )
        .order_by(FollowUp.id)
        .limit(1)
    ).scalar_one_or_none()
    return row or add_one_off(db, actor, patient_id, OneOffIn(timepoint=END_OF_SESSION, due_on=on))


def add_one_off(db: Session, actor: Principal, patient_id: int, data: OneOffIn) -> FollowUp:
    """A baseline (before a series) or end-of-session questionnaire."""
    patients.visible_patient(db, actor, patient_id, "follow_up.schedule")
    eff = settings_for(db, actor.clinic_id)
    keys = (
        eff.schedule.baseline_instruments
        if data.timepoint == "baseline"
        else eff.schedule.end_of_session_instruments
    )
    row = FollowUp(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        timepoint=data.timepoint,
        due_on=data.due_on,
        instruments=_check_instruments(list(keys), eff),
        status="scheduled",
        draft={},
        created_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(
        db,
        actor,
        "follow_up.schedule",
        "follow_up",
        resource_id=row.id,
        patient_id=patient_id,
        detail=data.timepoint,
    )
    return row


END_OF_SESSION = "end_of_session"


def _follow_up(db: Session, actor: Principal, follow_up_id: int, action: str) -> FollowUp:
    row = db.get(FollowUp, follow_up_id)
    if row is None or row.clinic_id != actor.clinic_id:
        raise NotFound("No such follow-up in your clinic.")
    patients.visible_patient(db, actor, row.patient_id, action)
    return row


def follow_up_patient(db: Session, actor: Principal, follow_up_id: int) -> int:
    return _follow_up(db, actor, follow_up_id, "follow_up.read").patient_id


def _issue(db: Session, secret_key: str, row: FollowUp, now: dt.datetime, valid_days: int) -> str:
    expires = now + dt.timedelta(days=valid_days)
    token = tokens.sign(
        secret_key, TOKEN_PURPOSE, {"f": row.id, "n": int(now.timestamp() * 1000)}, expires.timestamp()
    )
    row.token_sha256 = _sha(token)
    row.expires_at = expires
    row.status = "sent"
    row.sent_at = row.sent_at or now
    db.flush()
    return token


def issue_link(db: Session, actor: Principal, secret_key: str, follow_up_id: int, now: dt.datetime) -> str:
    """A new link for the follow-up (shown once to staff; any earlier link stops working)."""
    row = _follow_up(db, actor, follow_up_id, "follow_up.link")
    if row.status not in OPEN:
        raise InvalidInput(
            errors={"form": LINK_MESSAGES["used" if row.status == "completed" else "cancelled"]}
        )
    token = _issue(db, secret_key, row, now, settings_for(db, row.clinic_id).link_valid_days)
    audit.record(db, actor, "follow_up.link", "follow_up", resource_id=row.id, patient_id=row.patient_id)
    return token


def _system(clinic_id: int) -> Principal:
    return Principal(user_id=None, username="system:outcomes", role=None, clinic_id=clinic_id)


def send_due(db: Session, secret_key: str, base_url: str, now: dt.datetime) -> list[Outgoing]:
    """Links for follow-ups now due, and reminders (a fresh link) for those left unanswered.

    Returns the e-mails to send once the caller has committed. Patients without an e-mail
    address get none; their follow-ups stay open for staff to hand over a link.
    """
    today = now.date()
    out: list[Outgoing] = []
    due = db.execute(
        select(FollowUp).where(FollowUp.status.in_(OPEN), FollowUp.due_on <= today).order_by(FollowUp.id)
    ).scalars()
    for row in list(due):
        eff = settings_for(db, row.clinic_id)
        reminder = row.status == "sent"
        if reminder:
            assert row.sent_at is not None
            late = now - (row.reminded_at or row.sent_at) >= dt.timedelta(days=eff.reminder_after_days)
            if row.reminded_at is not None or not late:
                continue
        actor = _system(row.clinic_id)
        patient = patients.visible_patient(db, actor, row.patient_id, "follow_up.send")
        if not patient.email:
            continue
        token = _issue(db, secret_key, row, now, eff.link_valid_days)
        if reminder:
            row.reminded_at = now
        out.append(Outgoing(row.id, patient.email, f"{base_url.rstrip('/')}/q/{token}", reminder))
        audit.record(
            db,
            actor,
            "follow_up.remind" if reminder else "follow_up.send",
            "follow_up",
            resource_id=row.id,
            patient_id=row.patient_id,
        )
    return out


# --- answering through a link -------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkView:
    follow_up: FollowUp
    instruments: list[Instrument]
    draft: dict[str, Any]


def _by_token(db: Session, secret_key: str, token: str, now: dt.datetime) -> FollowUp:
    try:
        tokens.verify(secret_key, TOKEN_PURPOSE, token, now.timestamp())
    except tokens.BadToken as exc:
        raise InvalidInput(errors={"link": LINK_MESSAGES["expired" if exc.expired else "invalid"]}) from exc
    row = db.execute(select(FollowUp).where(FollowUp.token_sha256 == _sha(token))).scalar_one_or_none()
    if row is None:
        raise InvalidInput(errors={"link": LINK_MESSAGES["invalid"]})
    if row.status == "completed":
        raise InvalidInput(errors={"link": LINK_MESSAGES["used"]})
    if row.status == "cancelled":
        raise InvalidInput(errors={"link": LINK_MESSAGES["cancelled"]})
    return row


def open_link(db: Session, secret_key: str, token: str, now: dt.datetime) -> LinkView:
    row = _by_token(db, secret_key, token, now)
    catalogue = instruments()
    audit.record(
        db,
        None,
        "follow_up.open",
        "follow_up",
        resource_id=row.id,
        patient_id=row.patient_id,
        username="patient-link",
        clinic_id=row.clinic_id,
    )
    return LinkView(row, [catalogue[k] for k in row.instruments], dict(row.draft))


def answer_link(
    db: Session, secret_key: str, token: str, form: Mapping[str, str], now: dt.datetime, *, submit: bool
) -> FollowUp:
    """Save a draft (blank items allowed) or send in the questionnaire (all items required).

    Bad values change nothing. A draft keeps the link open; a submission uses it up.
    """
    row = _by_token(db, secret_key, token, now)
    values, errors = rules.check_answers(row.instruments, form, complete=submit)
    if errors:
        raise InvalidInput(errors=errors)
    if not submit:
        row.draft = {k: v for k, v in values.items()}
        row.draft_saved_at = now
        db.flush()
        audit.record(
            db,
            None,
            "follow_up.draft",
            "follow_up",
            resource_id=row.id,
            patient_id=row.patient_id,
            username="patient-link",
            clinic_id=row.clinic_id,
        )
        return row
    _store(db, row, values, now, "link")
    audit.record(
        db,
        None,
        "follow_up.submit",
        "follow_up",
        resource_id=row.id,
        patient_id=row.patient_id,
        username="patient-link",
        clinic_id=row.clinic_id,
    )
    return row


def enter_answers(
    db: Session, actor: Principal, follow_up_id: int, form: Mapping[str, str], at: dt.datetime
) -> FollowUp:
    """Staff enter a questionnaire answered on paper or by phone (every item required)."""
    row = _follow_up(db, actor, follow_up_id, "follow_up.enter")
    if row.status not in OPEN:
        raise InvalidInput(
            errors={"form": LINK_MESSAGES["used" if row.status == "completed" else "cancelled"]}
        )
    values, errors = rules.check_answers(row.instruments, form, complete=True)
    if errors:
        raise InvalidInput(errors=errors)
    _store(db, row, values, at, "staff")
    audit.record(db, actor, "follow_up.enter", "follow_up", resource_id=row.id, patient_id=row.patient_id)
    return row


def _store(db: Session, row: FollowUp, values: Mapping[str, int], now: dt.datetime, via: str) -> None:
    """Claim the questionnaire with a conditional UPDATE (open -> completed) before storing the
    answers: of two submissions at once (a link sent twice, a link and a staff entry) exactly
    one stores answers; the other is told it was already sent in."""
    claimed: CursorResult[Any] = db.execute(  # type: ignore[assignment]
        update(FollowUp)
        .where(FollowUp.id == row.id, FollowUp.status.in_(OPEN))
        .values(status="completed", completed_at=now, completed_via=via, draft={})
        .execution_options(synchronize_session=False)
    )
    db.refresh(row)
    if claimed.rowcount != 1:
        used = row.status == "completed"
        raise InvalidInput(errors={"form": LINK_MESSAGES["used" if used else "cancelled"]})
    catalogue = instruments()
    for name, value in values.items():
        key, _, item = name.partition(".")
        orientation = str(catalogue[key].raw.get("orientation")) if key == "pgic" else None
        db.add(
            OutcomeAnswer(
                follow_up_id=row.id,
                patient_id=row.patient_id,
                instrument=key,
                item=item,
                value=value,
                orientation=orientation,
                answered_at=now,
            )
        )
    for key in row.instruments:
        result = rules.score(key, values)
        if result is not None:
            db.add(
                OutcomeScore(
                    follow_up_id=row.id,
                    clinic_id=row.clinic_id,
                    patient_id=row.patient_id,
                    instrument=key,
                    timepoint=row.timepoint,
                    score=result,
                    answered_at=now,
                )
            )
    db.flush()


# --- the pain diary -------------------------------------------------------------------------------------


def add_diary(db: Session, actor: Principal, data: DiaryIn, now: dt.datetime) -> DiaryEntry:
    if actor.patient_id is None:
        raise NotFound("Only a patient keeps a pain diary.")
    patient = patients.visible_patient(db, actor, actor.patient_id, "diary.add")
    row = DiaryEntry(
        clinic_id=patient.clinic_id,
        patient_id=patient.id,
        nrs=data.nrs,
        flare=data.flare,
        note=(data.note or "").strip() or None,
        recorded_at=now,
    )
    db.add(row)
    db.flush()
    audit.record(db, actor, "diary.add", "diary", resource_id=row.id, patient_id=patient.id)
    return row


def diary(db: Session, actor: Principal, patient_id: int, limit: int = 60) -> list[DiaryEntry]:
    patients.visible_patient(db, actor, patient_id, "diary.read")
    audit.record(db, actor, "diary.read", "patient", resource_id=patient_id, patient_id=patient_id)
    return list(
        db.execute(
            select(DiaryEntry)
            .where(DiaryEntry.patient_id == patient_id)
            .order_by(DiaryEntry.recorded_at.desc())
            .limit(limit)
        ).scalars()
    )


# --- opioid load ----------------------------------------------------------------------------------------


def record_mme(db: Session, actor: Principal, patient_id: int, on: dt.date) -> MmeReading:
    """Today's opioid load from the record's medication list (CDC 2022 factors via screening's
    ``mme_per_day``); opioids it cannot convert are listed and the total is left unknown."""
    record = patients.record(db, actor, patient_id)
    facts = tuple(
        MedicationFact(m.name, m.drug_class, m.dose_amount, m.dose_unit, m.doses_per_day)
        for m in record.medications
    )
    result = mme_per_day(facts)
    row = MmeReading(
        clinic_id=actor.clinic_id,
        patient_id=patient_id,
        measured_on=on,
        # No opioid on the list is a true 0; an opioid not converted leaves the total unknown.
        mme_per_day=0.0 if not result.opioids else result.total,
        unconverted=result.unconverted,
        benzodiazepine=any(m.drug_class == "benzodiazepine" for m in record.medications),
        recorded_by_id=actor.user_id,
    )
    db.add(row)
    db.flush()
    audit.record(db, actor, "mme.record", "patient", resource_id=patient_id, patient_id=patient_id)
    return row


# --- the patient's trajectory ------------------------------------------------------------------------


@dataclass
class Trajectory:
    patient_id: int
    baseline: dict[str, float] = field(default_factory=dict)
    scores: dict[str, list[tuple[dt.datetime, float]]] = field(default_factory=dict)
    diary: list[tuple[dt.datetime, int]] = field(default_factory=list)
    mme: list[MmeReading] = field(default_factory=list)
    session_dates: list[dt.datetime] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)
    latest: rules.Response | None = None
    latest_pgic: int | None = None

    def figure(self) -> dict[str, Any]:
        traces: list[dict[str, Any]] = []
        names = {"nrs": "Pain NRS (24 h average)", "peg": "PEG-3 (pain and function)"}
        colours = {"nrs": "#c0392b", "peg": "#2c6fbb"}
        for key in ("nrs", "peg"):
            pts = self.scores.get(key, [])
            if pts:
                traces.append(
                    {
                        "type": "scatter",
                        "mode": "lines+markers",
                        "name": names[key],
                        "x": [p[0].isoformat() for p in pts],
                        "y": [p[1] for p in pts],
                        "line": {"color": colours[key]},
                    }
                )
        if self.diary:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": "Diary pain (flares)",
                    "x": [d[0].isoformat() for d in self.diary],
                    "y": [d[1] for d in self.diary],
                    "marker": {"symbol": "diamond-open", "color": "#c0392b"},
                }
            )
        known = [m for m in self.mme if m.mme_per_day is not None]
        if known:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": "Opioids (MME/day)",
                    "yaxis": "y2",
                    "x": [m.measured_on.isoformat() for m in known],
                    "y": [m.mme_per_day for m in known],
                    "line": {"color": "#6c3483", "dash": "dot"},
                }
            )
        shapes: list[dict[str, Any]] = [
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": d.isoformat(),
                "x1": d.isoformat(),
                "y0": 0,
                "y1": 1,
                "line": {"color": "#888", "width": 1, "dash": "dot"},
            }
            for d in self.session_dates
        ]
        for key, value in self.baseline.items():
            shapes.append(
                {
                    "type": "line",
                    "xref": "paper",
                    "yref": "y",
                    "x0": 0,
                    "x1": 1,
                    "y0": value,
                    "y1": value,
                    "line": {"color": colours.get(key, "#555"), "width": 1, "dash": "dash"},
                }
            )
        return {
            "data": traces,
            "layout": {
                "template": "plotly_white",
                "margin": {"t": 30},
                "yaxis": {"title": {"text": "score (0-10)"}, "range": [0, 10.5]},
                "yaxis2": {
                    "title": {"text": "MME/day"},
                    "overlaying": "y",
                    "side": "right",
                    "rangemode": "tozero",
                },
                "legend": {"orientation": "h", "y": -0.2},
                "shapes": shapes,
                "annotations": [
                    {
                        "xref": "paper",
                        "yref": "paper",
                        "x": 0,
                        "y": 1.06,
                        "showarrow": False,
                        "text": "dotted verticals: treatment sessions; dashed: baseline",
                    }
                ],
            },
        }


def _baseline(scores: list[OutcomeScore]) -> dict[str, float]:
    result: dict[str, float] = {}
    for key in ("nrs", "peg"):
        rows = [s for s in scores if s.instrument == key]
        base = [s for s in rows if s.timepoint == "baseline"]
        pick = (base or rows)[-1 if base else 0] if rows else None
        if pick is not None:
            result[key] = pick.score
    return result


def trajectory(
    db: Session, actor: Principal, patient_id: int, session_starts: Sequence[dt.datetime]
) -> Trajectory:
    """The patient's outcomes over time; ``session_starts``: when their treatment sessions began
    (from the sessions feature, which calls this feature at discharge)."""
    patients.visible_patient(db, actor, patient_id, "outcomes.read")
    scores = list(
        db.execute(
            select(OutcomeScore)
            .where(OutcomeScore.patient_id == patient_id)
            .order_by(OutcomeScore.answered_at)
        ).scalars()
    )
    t = Trajectory(patient_id)
    t.baseline = _baseline(scores)
    for s in scores:
        t.scores.setdefault(s.instrument, []).append((s.answered_at, s.score))
    t.diary = [
        (d.recorded_at, d.nrs)
        for d in db.execute(
            select(DiaryEntry).where(DiaryEntry.patient_id == patient_id).order_by(DiaryEntry.recorded_at)
        ).scalars()
    ]
    t.mme = list(
        db.execute(
            select(MmeReading).where(MmeReading.patient_id == patient_id).order_by(MmeReading.measured_on)
        ).scalars()
    )
    t.session_dates = sorted(session_starts)
    t.follow_ups = list(
        db.execute(
            select(FollowUp).where(FollowUp.patient_id == patient_id).order_by(FollowUp.due_on, FollowUp.id)
        ).scalars()
    )
    # response is judged on follow-ups, not on the end-of-session score taken during recovery
    later_nrs = [
        s for s in scores if s.instrument == "nrs" and s.timepoint not in ("baseline", "end_of_session")
    ]
    if "nrs" in t.baseline and later_nrs:
        t.latest = rules.response(t.baseline["nrs"], later_nrs[-1].score)
    pgic = [s for s in scores if s.instrument == "pgic"]
    t.latest_pgic = int(pgic[-1].score) if pgic else None
    audit.record(db, actor, "outcomes.read", "patient", resource_id=patient_id, patient_id=patient_id)
    return t
