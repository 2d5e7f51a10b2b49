"""The vetting score: a pure function with its breakdown.

Four criteria patients are told to weigh (experience, reputation, credentials, set and
setting) and the safety signals the platform itself holds. The points are a KetaCare design
choice (knowledge/data/front_door.toml [vetting]); the facts behind individual items (ACLS, a
pulse oximeter, the equipment list) name their sources. An item whose data the platform does
not hold yet says "no data yet" and counts neither for nor against: the score is the share of
the points that could be judged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ketacare.knowledge.front_door import vetting_defaults

NO_DATA = "no data yet"
MIN_REVIEWS = 3  # (design) fewer published reviews are not enough to judge a reputation


@dataclass(frozen=True)
class ClinicFacts:
    years_experience: int
    physicians: int
    crnas: int
    nurse_practitioners: int
    acls_certified: bool
    board_certified: bool
    setting: str  # office, ambulatory, hospital
    room_type: str  # private, shared
    equipment: frozenset[str]
    review_count: int
    review_average: float | None
    # Signals from features not built yet: None means "no data yet".
    sessions_on_platform: int | None = None
    adverse_event_reporting: bool | None = None
    controlled_substance_compliance: bool | None = None
    controlled_substance_detail: str = ""


@dataclass(frozen=True)
class Item:
    label: str
    earned: float | None  # None: no data yet
    possible: float
    detail: str
    sources: tuple[str, ...] = ("design",)


@dataclass(frozen=True)
class Criterion:
    key: str
    name: str
    items: tuple[Item, ...]

    @property
    def earned(self) -> float:
        return sum(i.earned for i in self.items if i.earned is not None)

    @property
    def possible(self) -> float:
        return sum(i.possible for i in self.items if i.earned is not None)


@dataclass(frozen=True)
class Score:
    criteria: tuple[Criterion, ...]

    @property
    def earned(self) -> float:
        return sum(c.earned for c in self.criteria)

    @property
    def possible(self) -> float:
        return sum(c.possible for c in self.criteria)

    @property
    def value(self) -> int:
        """0-100: the share of the judgeable points earned."""
        return round(100 * self.earned / self.possible) if self.possible else 0


def _experience(f: ClinicFacts, points: int) -> Criterion:
    years_pts = points * 0.6
    share = 1.0 if f.years_experience >= 5 else 0.5 if f.years_experience >= 2 else 0.0
    sessions = (
        Item(
            "Sessions delivered on KetaCare",
            None,
            points * 0.4,
            f"{NO_DATA}: no session delivered on KetaCare yet",
        )
        if f.sessions_on_platform is None
        else Item(
            "Sessions delivered on KetaCare",
            points * 0.4 * min(1.0, f.sessions_on_platform / 100),
            points * 0.4,
            f"{f.sessions_on_platform} sessions",
        )
    )
    years = Item(
        "Years of ketamine experience",
        round(years_pts * share, 1),
        years_pts,
        f"{f.years_experience} years (full points from 5 years, half from 2)",
    )
    return Criterion("experience", "Experience", (years, sessions))


def _reputation(f: ClinicFacts, points: int) -> Criterion:
    if f.review_count < MIN_REVIEWS or f.review_average is None:
        item = Item(
            "Patient reviews",
            None,
            points,
            f"{NO_DATA}: {f.review_count} published review(s), at least {MIN_REVIEWS} needed",
        )
    else:
        item = Item(
            "Patient reviews",
            round(points * (f.review_average - 1) / 4, 1),
            points,
            f"average {f.review_average:.1f} of 5 from {f.review_count} reviews",
        )
    return Criterion("reputation", "Reputation", (item,))


def _credentials(f: ClinicFacts, points: int) -> Criterion:
    d = vetting_defaults()
    anaesthesia = f.physicians + f.crnas
    return Criterion(
        "credentials",
        "Credentials",
        (
            Item(
                "A physician or nurse anaesthetist (CRNA) on staff",
                points * 0.4 if anaesthesia else 0.0,
                points * 0.4,
                f"{f.physicians} physician(s), {f.crnas} CRNA(s), "
                f"{f.nurse_practitioners} nurse practitioner(s)",
            ),
            Item(
                "ACLS certification of the staff who give infusions",
                points * 0.4 if f.acls_certified else 0.0,
                points * 0.4,
                "yes" if f.acls_certified else "not stated",
                d.acls_sources,
            ),
            Item(
                "Board certification",
                points * 0.2 if f.board_certified else 0.0,
                points * 0.2,
                "yes" if f.board_certified else "not stated",
            ),
        ),
    )


def _setting(f: ClinicFacts, points: int) -> Criterion:
    return Criterion(
        "setting",
        "Set and setting",
        (
            Item(
                "A private treatment room",
                points * 0.6 if f.room_type == "private" else 0.0,
                points * 0.6,
                f.room_type,
            ),
            Item(
                "An ambulatory-clinic or hospital setting",
                points * 0.4 if f.setting in ("ambulatory", "hospital") else 0.0,
                points * 0.4,
                f.setting,
                ("asra_personnel_memory", "design"),
            ),
        ),
    )


def _safety(f: ClinicFacts, points: int) -> Criterion:
    d = vetting_defaults()
    wanted = dict(d.equipment)
    have = sorted(wanted[k] for k in f.equipment if k in wanted)
    missing = sorted(label for k, label in wanted.items() if k not in f.equipment)
    equipment_pts = points * 0.5
    ae = (
        Item(
            "Adverse-event reporting on record",
            None,
            points * 0.25,
            f"{NO_DATA}: fewer than {d.ae_reporting_min_sessions} sessions on KetaCare, too few to judge",
        )
        if f.adverse_event_reporting is None
        else Item(
            "Adverse-event reporting on record",
            points * 0.25 if f.adverse_event_reporting else 0.0,
            points * 0.25,
            "adverse events are recorded for its sessions"
            if f.adverse_event_reporting
            else f"none recorded over {f.sessions_on_platform} sessions",
        )
    )
    cs = (
        Item(
            "Controlled-substance compliance",
            None,
            points * 0.25,
            f"{NO_DATA}: {f.controlled_substance_detail or 'no controlled-substance ledger on KetaCare'}",
        )
        if f.controlled_substance_compliance is None
        else Item(
            "Controlled-substance compliance",
            points * 0.25 if f.controlled_substance_compliance else 0.0,
            points * 0.25,
            f.controlled_substance_detail or ("yes" if f.controlled_substance_compliance else "no"),
        )
    )
    return Criterion(
        "safety",
        "Safety signals",
        (
            Item(
                "Monitoring and resuscitation equipment",
                round(equipment_pts * len(have) / len(wanted), 1),
                equipment_pts,
                f"{len(have)} of {len(wanted)}" + (f"; missing: {', '.join(missing)}" if missing else ""),
                d.equipment_sources + d.pulse_oximeter_sources,
            ),
            ae,
            cs,
        ),
    )


def score(facts: ClinicFacts) -> Score:
    d = vetting_defaults()
    return Score(
        (
            _experience(facts, d.experience_points),
            _reputation(facts, d.reputation_points),
            _credentials(facts, d.credentials_points),
            _setting(facts, d.setting_points),
            _safety(facts, d.safety_points),
        )
    )
