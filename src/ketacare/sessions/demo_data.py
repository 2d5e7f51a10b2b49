"""Demo treatment sessions, run through the sessions use-cases as a nurse and a prescriber would:
finished series in the past (check-in, pre-checks, infusion, vitals every 5 minutes, scores,
the odd alarm and adverse event, recovery, discharge, both signatures), and today one infusion
running (for the live board and ``ketacare demo --live``), one patient checked in and two
sessions booked later today.

Plans are made, scheduled and consented through the planning use-cases, which refuse a plan
that starts in the past; the past series are therefore planned today and then moved back in
time here, in demo code only (``_move_back``). Everything here is demo content (design): the
trajectories, rates and scores look realistic but describe no one.
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role
from ketacare.demo import DEMO_PASSWORD
from ketacare.errors import InvalidInput
from ketacare.knowledge.contraindications import prior_therapy_rule
from ketacare.patients import service as patients
from ketacare.patients.schemas import MeasurementCreate
from ketacare.planning import bookings as plan_bookings
from ketacare.planning import consent as plan_consent
from ketacare.planning import plans
from ketacare.planning import setup as plan_setup
from ketacare.planning.schemas import PlanIn, Purpose, ResponseIn, SignIn
from ketacare.screening import service as screening
from ketacare.screening.demo_data import ALL_NO, DemoClinic
from ketacare.screening.schemas import ScreeningIn
from ketacare.sessions import administration, adverse_events, checkin, discharge, monitoring, rules, views
from ketacare.sessions.models import Alarm, TreatmentSession
from ketacare.sessions.schemas import (
    AdministrationIn,
    AdminKind,
    AdverseEventIn,
    DischargeChecksIn,
    DischargeIn,
    NoteIn,
    Phase,
    PrecheckIn,
    PregnancyTest,
    ReasonIn,
    ScaleKey,
    ScoreIn,
    VitalIn,
)

# Per clinic: three patients with a finished five-day series in the past and a booster today (one
# running, two booked later today), and a new patient checked in for the first session of a series.
HISTORY_PATIENTS = 3
VITALS_EVERY_MIN = 5
RECOVERY_VITALS_EVERY_MIN = 15
RECOVERY_MIN = 60  # sessions.toml: at least 60 minutes after the last dose before discharge
PRODUCT = "Ketamine HCl 50 mg/mL, diluted in 0.9% sodium chloride"

# (design) per-session chances, near the excess rates of clinical-facts 3.1 (network
# meta-analysis: GI +12%, dizziness +11%; psychotomimetic effects dose-dependent even at
# 20-30 mg/h; Spravato: BP increased 11.5% vs 4.0%).
AE_RATES: tuple[tuple[str, float], ...] = (
    ("nausea", 0.12),
    ("dizziness", 0.11),
    ("dissociation", 0.10),
    ("headache", 0.04),
    ("vomiting", 0.03),
    ("anxiety", 0.03),
)
AE_GRADE2_SHARE = 0.25  # (design) the rest are grade 1
HYPERTENSION_AE_RATE = 0.06  # (design) a BP rise recorded as an event without an alarm
SBP_SPIKE_RATE = 0.05  # (design) a systolic spike over the 180 mmHg clinic default alarm
SPO2_DIP_RATE = 0.10  # (design) one reading of 90-91%, too brief for the sustained alarm
RESCUE = {"nausea": ("ondansetron", 4.0), "vomiting": ("ondansetron", 4.0), "anxiety": ("midazolam", 1.0)}
PREMEDICATION_MG = {"ondansetron": 4.0, "midazolam": 2.0}


@dataclass(frozen=True)
class Staff:
    nurse: Principal
    prescriber: Principal


@dataclass(frozen=True)
class DemoPatient:
    id: int
    name: str  # given name, family name: as the patient types it to sign
    account: Principal


@dataclass(frozen=True)
class Planned:
    patient: DemoPatient
    # planning's plan and booked-session rows as its use-cases returned them (the demo moves them)
    plan: Any
    booked: list[Any]


def _principal(user: Any, role: Role) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        role=role,
        clinic_id=user.clinic_id,
        client_addr="demo",
        patient_id=user.patient_id,
    )


def seed(db: Session, rng: random.Random, clinic: DemoClinic, patient_ids: list[int]) -> None:
    # A child generator: the same --seed gives the same sessions, and whatever is seeded after
    # this (the next clinic's patients, later features) draws the same numbers as without it.
    own = random.Random(f"{rng.getstate()!r}/sessions/{clinic.slug}")
    staff = Staff(
        nurse=_principal(auth.user_by_username(db, f"nurse.{clinic.slug}"), Role.nurse),
        prescriber=_principal(auth.user_by_username(db, f"dr.{clinic.slug}"), Role.prescriber),
    )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # Patients the screening and planning demos leave alone first, then screened ones.
    pool = iter([*patient_ids[12:], *patient_ids[8:12]])
    series = _enrol_many(db, own, clinic, staff, pool, HISTORY_PATIENTS + 1)
    history, newcomers = series[:HISTORY_PATIENTS], series[HISTORY_PATIENTS:]
    spiked = False
    for n, planned in enumerate(history):
        weeks_ago = 6 + 3 * (len(history) - 1 - n) + own.randrange(0, 2)
        _move_back(db, planned, dt.timedelta(days=7 * weeks_ago))
        pain: list[int] = []
        for k, row in enumerate(planned.booked):
            assert row.ends_at < now, "a past series ends before now"
            # (design) every demo clinic shows an alarm: the last past session has one if none yet
            force = not spiked and n == len(history) - 1 and k == len(planned.booked) - 1
            run = SessionRun(db, own, staff, row.id, row.starts_at)
            spiked |= run.complete(force_spike=force)
            pain.append(run.nrs_before)
        _document_response(db, own, staff, planned, pain[0])
    boosters = [
        b
        for b in (
            _plan_again(db, staff, h.patient, _booster_in(clinic_time.today(db, staff.prescriber.clinic_id)))
            for h in history
        )
        if b
    ]
    today = [*boosters[:1], *newcomers, *boosters[1:]]  # running, checked in, booked, booked
    _seed_today(db, own, clinic, staff, [p.booked[0] for p in today], now)


# --- patients and plans --------------------------------------------------------------------


def _series_in(start: dt.date) -> PlanIn:
    """(design) the 0.5 mg/kg over 40 minutes daily series: short sessions keep seeding fast."""
    return PlanIn(
        protocol_key="cleveland_5day",
        dose=0.5,
        dose_unit="mg/kg",
        sessions=5,
        start_date=start,
        preferred_time="10:00",
        premedication=["ondansetron"],
    )


def _booster_in(start: dt.date) -> PlanIn:
    return PlanIn(
        protocol_key="single_day_4h",
        purpose=Purpose.booster,
        dose=0.3,
        dose_unit="mg/kg/h",
        sessions=1,
        start_date=start,
        premedication=["ondansetron"],
    )


def _enrol_many(
    db: Session, rng: random.Random, clinic: DemoClinic, staff: Staff, pool: Iterator[int], count: int
) -> list[Planned]:
    out: list[Planned] = []
    for pid in pool:
        if len(out) == count:
            break
        planned = _enrol(db, rng, clinic, staff, pid)
        if planned is not None:
            out.append(planned)
    return out


def _enrol(db: Session, rng: random.Random, clinic: DemoClinic, staff: Staff, pid: int) -> Planned | None:
    """Screen, weigh and plan a series; open the patient's account, who signs the consent online.

    None, with nothing kept, when the rules refuse this patient (a demo patient's conditions
    may not be an indication)."""
    dr = staff.prescriber
    today = clinic_time.today(db, clinic.id)
    savepoint = db.begin_nested()
    try:
        screening.save_screening(
            db,
            dr,
            pid,
            ScreeningIn(
                referred_on=today - dt.timedelta(days=rng.randrange(100, 160)),
                referral_source="Dr. Referrer, primary care",
                answers=dict(ALL_NO),
                prior_therapies=[k for k, _ in prior_therapy_rule().options[:3]],
                sbp_mmhg=float(rng.randrange(112, 136)),
                dbp_mmhg=float(rng.randrange(70, 86)),
                ecg_on=today - dt.timedelta(days=95),
                lft_on=today - dt.timedelta(days=95),
            ),
        )
        record = patients.record(db, dr, pid)
        weight = record.latest_weight
        kg = weight.weight_kg if weight is not None and weight.weight_kg else 75.0
        patients.add_measurement(db, dr, pid, MeasurementCreate(weight_kg=kg, measured_on=today))
        plan = plans.create_plan(db, dr, pid, _series_in(today))
        booked = plan_bookings.schedule(db, dr, plan.id)
        p = record.patient
        user = auth.create_user(
            db,
            None,
            clinic.id,
            auth.NewUser(
                username=f"{p.record_number.lower()}.{clinic.slug}",
                full_name=f"{p.given_name} {p.family_name}",
                role=Role.patient,
                password=DEMO_PASSWORD,
                patient_id=pid,
            ),
        )
        patient = DemoPatient(pid, f"{p.given_name} {p.family_name}", _principal(user, Role.patient))
        plan_consent.sign_consent(
            db, patient.account, plan.id, SignIn(typed_name=patient.name, signed_on=today, agree=True)
        )
    except InvalidInput:
        savepoint.rollback()
        return None
    savepoint.commit()
    return Planned(patient, plan, list(booked))


def _plan_again(db: Session, staff: Staff, patient: DemoPatient, data: PlanIn) -> Planned | None:
    savepoint = db.begin_nested()
    try:
        plan = plans.create_plan(db, staff.prescriber, patient.id, data)
        booked = plan_bookings.schedule(db, staff.prescriber, plan.id)
        plan_consent.sign_consent(
            db,
            patient.account,
            plan.id,
            SignIn(
                typed_name=patient.name,
                signed_on=clinic_time.today(db, patient.account.clinic_id),
                agree=True,
            ),
        )
    except InvalidInput:
        savepoint.rollback()
        return None
    savepoint.commit()
    return Planned(patient, plan, list(booked))


def _move_back(db: Session, planned: Planned, by: dt.timedelta) -> None:
    """Move a plan made today and its booked sessions ``by`` whole days back.

    Demo code only: the planning rules (rightly) refuse a plan that starts in the past, and a
    demo needs a history. The rows are the ones the planning use-cases returned. The consent
    keeps its real signing time: a signed consent never changes (a database trigger sees to it)."""
    plan = planned.plan
    plan.start_date -= by
    plan.end_date -= by
    plan.weight_measured_on -= by
    plan.created_at -= by + dt.timedelta(days=3)  # planned a few days before the first session
    for row in planned.booked:
        row.starts_at -= by
        row.ends_at -= by
    db.flush()


def _document_response(
    db: Session, rng: random.Random, staff: Staff, planned: Planned, nrs_before: int
) -> None:
    """(design) the prescriber documents a response four weeks after the series: every demo
    series responds (at least 2 points and 30% less pain), so a booster may follow."""
    followup = max(0, nrs_before - max(2, round(nrs_before * rng.uniform(0.35, 0.6))))
    plans.add_response(
        db,
        staff.prescriber,
        planned.plan.id,
        ResponseIn(
            assessed_on=planned.plan.end_date + dt.timedelta(days=28),
            baseline_nrs=float(nrs_before),
            followup_nrs=float(followup),
            pgic=rng.choice([2, 2, 3]),
            relief_days=rng.randrange(24, 42),
        ),
    )


# --- today --------------------------------------------------------------------------------


def _free_slot(
    now: dt.datetime,
    tz: zoneinfo.ZoneInfo,
    duration: dt.timedelta,
    chairs: list[int],
    taken: list[tuple[dt.datetime, dt.datetime, int]],
) -> tuple[dt.datetime, int]:
    """A start later today (or, late in the clinic's day, earlier today) with a free chair."""
    day = now.astimezone(tz).date()
    for minutes in (40, 100, 160, 220, -100, -160, -220, -280, -340):
        start = now + dt.timedelta(minutes=minutes)
        if start.astimezone(tz).date() != day:
            continue
        for chair in chairs:
            if not any(c == chair and start < e and s < start + duration for s, e, c in taken):
                return start, chair
    return now + dt.timedelta(minutes=40), chairs[-1]


def _seed_today(
    db: Session, rng: random.Random, clinic: DemoClinic, staff: Staff, booked: list[Any], now: dt.datetime
) -> None:
    """Today's first booked sessions move to times around now, each in a free chair (demo code,
    like ``_move_back``): the first one is running, the second checked in, the rest booked."""
    tz = clinic_time.zone(db, clinic.id)
    chairs = [c.id for c in plan_setup.chairs(db, clinic.id)]
    taken: list[tuple[dt.datetime, dt.datetime, int]] = []
    for n, row in enumerate(booked):
        duration = row.ends_at - row.starts_at
        if n < 2:
            start, chair = now - dt.timedelta(minutes=(45, 15)[n]), chairs[n % len(chairs)]
        else:
            start, chair = _free_slot(now, tz, duration, chairs, taken)
        row.starts_at, row.ends_at, row.chair_id = start, start + duration, chair
        taken.append((start, start + duration, chair))
    db.flush()
    if len(booked) > 0:
        SessionRun(db, rng, staff, booked[0].id, booked[0].starts_at).running(now)
    if len(booked) > 1:
        checkin.check_in(db, staff.nurse, booked[1].id, now=now - dt.timedelta(minutes=10))


# --- one session --------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    sbp: float
    dbp: float
    hr: float
    spo2: float
    rr: float


@dataclass(frozen=True)
class PlannedEvent:
    term: str
    grade: int
    minute: int  # after the start of the infusion


def _minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


class SessionRun:
    """One booked session run through the sessions use-cases, each step at its own time."""

    def __init__(
        self, db: Session, rng: random.Random, staff: Staff, plan_session_id: int, starts_at: dt.datetime
    ) -> None:
        self.db, self.rng, self.staff = db, rng, staff
        self.plan_session_id = plan_session_id
        self.booked = plan_bookings.booked_session(db, staff.nurse, plan_session_id)
        self.duration_min = self.booked.duration_min
        self.arrive = starts_at + _minutes(rng.randrange(-5, 10))
        self.started_at = self.arrive
        self.base = Baseline(
            sbp=float(rng.randrange(108, 138)),
            dbp=float(rng.randrange(66, 88)),
            hr=float(rng.randrange(60, 88)),
            spo2=float(rng.choice([96, 97, 97, 98, 98, 99])),
            rr=float(rng.randrange(12, 17)),
        )
        # (design) the systolic rise during an infusion, kept under the 25%-over-baseline alarm
        self.rise = min(rng.uniform(10.0, 20.0), 0.2 * self.base.sbp - 4.0)
        self.rise_scale = 1.0
        self.peak_sbp = self.base.sbp
        self.session_id = 0
        self.rate_mg_per_h = 0.0
        self.nrs_before = rng.randrange(5, 10)
        self.female = patients.demographics(db, self.booked.patient_id)[1] == "female"
        self.to_review: list[int] = []
        self.to_resolve: list[int] = []

    # --- recording, each at its time ---

    def _give(self, kind: str, at: dt.datetime, drug: str = "ketamine", **fields: Any) -> None:
        administration.record_administration(
            self.db,
            self.staff.nurse,
            self.session_id,
            AdministrationIn(
                kind=AdminKind(kind),
                drug=drug,
                route="iv" if drug != "ketamine" else None,
                given_at=at,
                **fields,
            ),
            now=at,
        )

    def _score(self, scale: str, items: list[int], phase: str, at: dt.datetime) -> None:
        monitoring.record_score(
            self.db,
            self.staff.nurse,
            self.session_id,
            ScoreIn(scale=ScaleKey(scale), items=items, phase=Phase(phase), observed_at=at),
            now=at,
        )

    def _vitals(self, at: dt.datetime, values: dict[str, float]) -> list[Alarm]:
        self.peak_sbp = max(self.peak_sbp, values["sbp"])
        return monitoring.record_vitals(
            self.db,
            self.staff.nurse,
            self.session_id,
            [VitalIn(kind=k, value=v, observed_at=at) for k, v in values.items()],
            now=at,
        )

    def _adverse_event(
        self,
        term: str,
        at: dt.datetime,
        *,
        grade: int,
        actions: list[str],
        medication: str | None = None,
        description: str | None = None,
    ) -> None:
        ae = adverse_events.record_adverse_event(
            self.db,
            self.staff.nurse,
            self.session_id,
            AdverseEventIn(
                term_key=term,
                grade=grade,
                actions=actions,
                medication_given=medication,
                outcome="resolved",
                description=description,
                onset_at=at,
            ),
            now=at + _minutes(3),
        )
        if ae.needs_review:
            self.to_review.append(ae.id)

    # --- what the patient's body does (design) ---

    def _reading(self, rise: float) -> dict[str, float]:
        g, b = self.rng.gauss, self.base
        return {
            "sbp": round(b.sbp + rise + g(0, 2.5)),
            "dbp": round(b.dbp + rise / 2 + g(0, 2.0)),
            "hr": round(b.hr + rise / 3 + g(0, 2.5)),
            "spo2": min(100, round(b.spo2 + g(0, 0.7))),
            "rr": round(b.rr + g(0, 0.8)),
        }

    def _infusion_reading(self, minute: int) -> dict[str, float]:
        ramp = min(minute / max(0.6 * self.duration_min, 1.0), 1.0)
        return self._reading(self.rise * self.rise_scale * ramp)

    def _moaas(self) -> list[int]:
        return self.rng.choices([5, 4, 3], weights=[55, 35, 10])

    def _cadss(self, during: bool) -> list[int]:
        return self.rng.choices([0, 1, 2, 3], weights=[45, 35, 15, 5] if during else [85, 15, 0, 0], k=6)

    def _planned_events(self, steps: list[int], spike_at: int | None) -> list[PlannedEvent]:
        out = []
        for term, rate in AE_RATES:
            if self.rng.random() < rate:
                grade = 2 if self.rng.random() < AE_GRADE2_SHARE else 1
                out.append(PlannedEvent(term, grade, self.rng.choice([m for m in steps if m != spike_at])))
        return out

    # --- the steps ---

    def _arrive_and_start(self) -> None:
        nurse, b = self.staff.nurse, self.base
        row = checkin.check_in(self.db, nurse, self.plan_session_id, now=self.arrive)
        self.session_id = row.id
        pre = self.arrive + _minutes(self.rng.randrange(6, 12))
        checkin.complete_prechecks(
            self.db,
            nurse,
            row.id,
            PrecheckIn(
                weight_kg=round(self.booked.plan_weight_kg + self.rng.uniform(-0.8, 0.8), 1),
                sbp=b.sbp,
                dbp=b.dbp,
                hr=b.hr,
                spo2=b.spo2,
                rr=b.rr,
                consent_on_file=True,  # signed online; the ECG and liver tests are in the screening
                ecg_on_file=True,
                lft_on_file=True,
                pregnancy_test=PregnancyTest.negative if self.female else PregnancyTest.not_applicable,
                escort_name=self.rng.choice(["Partner", "Spouse", "Adult son", "Adult daughter", "Friend"]),
                escort_phone=f"555-{self.rng.randrange(100, 999)}-{self.rng.randrange(1000, 9999)}",
                escort_confirmed=True,
                oximeter_connected=True,
                prescriber_on_site_id=self.staff.prescriber.user_id,
            ),
            now=pre,
        )
        for drug in self.booked.premedication:
            if drug in PREMEDICATION_MG:
                self._give("premedication", pre + _minutes(1), drug=drug, dose_mg=PREMEDICATION_MG[drug])
        self._score("nrs", [self.nrs_before], "before", pre + _minutes(1))
        self.started_at = pre + _minutes(self.rng.randrange(3, 7))
        assert self.booked.dose_mg is not None, "an infusion session has a planned dose"
        self.rate_mg_per_h = round(self.booked.dose_mg / (self.duration_min / 60.0), 1)
        self._give(
            "start",
            self.started_at,
            rate_mg_per_h=self.rate_mg_per_h,
            lot=f"KT{self.rng.randrange(10000, 99999)}",
            product=PRODUCT,
        )

    def _spike(self, at: dt.datetime) -> None:
        """A systolic spike: its alarms acknowledged at the chair, the rate halved, an event
        recorded (CTCAE v5 hypertension grade 3: SBP >= 160 with a medical intervention)."""
        b = self.base
        values = {
            "sbp": float(self.rng.randrange(182, 193)),
            "dbp": float(min(b.dbp + self.rng.randrange(16, 24), 106)),
            "hr": round(b.hr + 12 + self.rng.gauss(0, 2)),
            "spo2": b.spo2,
            "rr": b.rr,
        }
        alarms = self._vitals(at, values)
        for alarm in alarms:
            monitoring.acknowledge_alarm(
                self.db,
                self.staff.nurse,
                alarm.id,
                NoteIn(note="At the chair: no headache or chest pain; cuff re-cycled."),
                now=at + _minutes(1),
            )
        self.rate_mg_per_h = round(self.rate_mg_per_h / 2, 1)
        self._give(
            "rate_change",
            at + _minutes(2),
            rate_mg_per_h=self.rate_mg_per_h,
            reason=f"SBP {values['sbp']:g} mmHg: rate halved.",
        )
        self.rise_scale = 0.6
        self._adverse_event(
            "hypertension",
            at,
            grade=3,
            actions=["rate_lowered"],
            description=f"SBP {values['sbp']:g}/{values['dbp']:g} mmHg during the infusion; "
            "the rate was halved and the pressure came down within minutes.",
        )
        self.to_resolve = [a.id for a in alarms]

    def _event(self, planned: PlannedEvent, at: dt.datetime) -> None:
        rescue = RESCUE.get(planned.term) if planned.grade == 2 else None
        if rescue is not None:
            self._give("rescue", at + _minutes(1), drug=rescue[0], dose_mg=rescue[1])
        self._adverse_event(
            planned.term,
            at,
            grade=planned.grade,
            actions=["medication_given"] if rescue else ["observed"],
            medication=f"{rescue[0]} {rescue[1]:g} mg IV" if rescue else None,
        )

    def _infuse(self, steps: list[int], spike_at: int | None, events: list[PlannedEvent]) -> None:
        dip_at = self.rng.choice(steps) if self.rng.random() < SPO2_DIP_RATE else None
        for minute in steps:
            at = self.started_at + _minutes(minute)
            if minute == spike_at:
                self._spike(at)
                continue
            values = self._infusion_reading(minute)
            if minute == dip_at:
                values["spo2"] = self.rng.choice([90, 91])
            self._vitals(at, values)
            for alarm_id in self.to_resolve:
                note = f"SBP {values['sbp']:g} mmHg after the rate was halved."
                monitoring.resolve_alarm(self.db, self.staff.nurse, alarm_id, NoteIn(note=note), now=at)
            self.to_resolve = []
            if minute % 15 == 0:
                self._score("moaas", self._moaas(), "during", at)
                self._score("cadss6", self._cadss(during=True), "during", at)
            for planned in events:
                if planned.minute == minute:
                    self._event(planned, at)

    def complete(self, *, force_spike: bool = False) -> bool:
        """A whole session, arrival to both signatures; True when it had a systolic spike."""
        rng, nurse = self.rng, self.staff.nurse
        self._arrive_and_start()
        steps = list(range(VITALS_EVERY_MIN, self.duration_min + 1, VITALS_EVERY_MIN))
        spike_at = None
        if force_spike or rng.random() < SBP_SPIKE_RATE:
            spike_at = rng.choice([m for m in steps if 15 <= m <= self.duration_min - 10])
        self._infuse(steps, spike_at, self._planned_events(steps, spike_at))
        if spike_at is None and rng.random() < HYPERTENSION_AE_RATE:
            self._adverse_event(
                "hypertension",
                self.started_at + _minutes(self.duration_min // 2),
                grade=2 if self.peak_sbp >= 140 else 1,  # CTCAE v5: SBP 140-159 grade 2, 120-139 grade 1
                actions=["observed"],
                description=f"Peak SBP {self.peak_sbp:g} mmHg during the infusion; no treatment needed.",
            )
        stop = self.started_at + _minutes(self.duration_min)
        administration.end_dosing(
            self.db, nurse, self.session_id, NoteIn(note="Planned dose given."), now=stop
        )
        for minute in range(RECOVERY_VITALS_EVERY_MIN, RECOVERY_MIN + 1, RECOVERY_VITALS_EVERY_MIN):
            at = stop + _minutes(minute)
            self._vitals(at, self._reading(self.rise * self.rise_scale * max(0.0, 1.0 - minute / 40.0)))
            if minute in (15, 30, RECOVERY_MIN):
                self._score("moaas", [5], "after", at)
            if minute == 15:
                self._score("cadss6", self._cadss(during=False), "after", at)
        end = stop + _minutes(RECOVERY_MIN + 1)
        self._score("nrs", [max(0, self.nrs_before - rng.choice([0, 1, 2, 2, 3, 3, 4]))], "after", end)
        discharge.record_discharge_checks(
            self.db,
            nurse,
            self.session_id,
            DischargeChecksIn(alert_and_oriented=True, escort_present=True, instructions_given=True),
            now=end,
        )
        discharge.discharge(self.db, nurse, self.session_id, DischargeIn(), now=end + _minutes(1))
        views.sign(self.db, nurse, self.session_id, now=end + _minutes(3))
        signed = end + _minutes(rng.randrange(30, 180))
        for ae_id in self.to_review:
            adverse_events.review_adverse_event(
                self.db,
                self.staff.prescriber,
                ae_id,
                ReasonIn(
                    reason="Reviewed: transient, settled when the rate was lowered; next dose as planned."
                ),
                now=signed - _minutes(5),
            )
        views.sign(self.db, self.staff.prescriber, self.session_id, now=signed)
        return spike_at is not None

    def running(self, now: dt.datetime) -> None:
        """Checked in, pre-checked and infusing since before ``now``, with vitals up to now."""
        self._arrive_and_start()
        minute = VITALS_EVERY_MIN
        while self.started_at + _minutes(minute) <= now:
            at = self.started_at + _minutes(minute)
            self._vitals(at, self._infusion_reading(minute))
            if minute % 15 == 0:
                self._score("moaas", self._moaas(), "during", at)
                self._score("cadss6", self._cadss(during=True), "during", at)
            minute += VITALS_EVERY_MIN


# --- for ``ketacare demo --live`` -----------------------------------------------------------


@dataclass(frozen=True)
class LiveSession:
    clinic_slug: str
    record_number: str
    session_id: int
    baseline: dict[str, float]


def running_sessions(db: Session) -> list[LiveSession]:
    """Every running session, with the patient's record number and baseline vitals."""
    rows = list(
        db.execute(
            select(TreatmentSession)
            .where(TreatmentSession.status == rules.RUNNING)
            .order_by(TreatmentSession.clinic_id, TreatmentSession.id)
        ).scalars()
    )
    out = []
    for row in rows:
        clinic = auth.clinic(db, row.clinic_id)
        system = Principal(user_id=None, username="ketacare-demo", role=None, clinic_id=clinic.id)
        number = patients.record_numbers(db, system, {row.patient_id})[row.patient_id]
        baseline = {k: float(v) for k, v in (row.baseline or {}).items()}
        out.append(LiveSession(clinic.slug, number, row.id, baseline))
    return out
