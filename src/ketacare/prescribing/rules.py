"""Take-home ketamine prescriptions: the input limits and every check before signing. Pure: no
database, no clock (``issued_on`` and ``today`` come in), each check with its source and tag.

A check passes, warns or blocks. A prescription with a block cannot be signed; the blocks say
what is missing. Warnings are acknowledged by the prescriber at signing.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from ketacare.knowledge.contraindications import mme_rule
from ketacare.knowledge.prescribing import Product, ScopeDefault, npi_rule, prescribing_rules
from ketacare.knowledge.products import fit_problem
from ketacare.planning.clinical_defaults import ClinicalDefaults
from ketacare.planning.clinical_defaults import knowledge_defaults as planning_knowledge_defaults
from ketacare.planning.dosing import CeilingsInForce, ceilings_in_force
from ketacare.prescribing.settings import RxSettings
from ketacare.screening.eligibility import MedicationFact, mme_per_day

PASS, WARN, BLOCK = "pass", "warn", "block"
STATUS_LABELS = {PASS: "passes", WARN: "warning", BLOCK: "blocks signing"}
IN_PERSON, TELEHEALTH = "in_person", "telehealth"
AUDIO_VIDEO, AUDIO_ONLY = "audio_video", "audio_only"
PRESCRIBE, ADMINISTER = "prescribe", "administer"
ALL_STATES = "*"


@dataclass(frozen=True)
class Check:
    key: str
    label: str
    status: str
    message: str
    source: str
    tag: str

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


# --- facts the service gathers -----------------------------------------------------------------


@dataclass(frozen=True)
class Licence:
    state: str
    number: str
    expires_on: dt.date


@dataclass(frozen=True)
class DeaRegistration:
    state: str
    number: str
    expires_on: dt.date


@dataclass(frozen=True)
class BoardCertification:
    board: str
    specialty: str
    expires_on: dt.date | None  # None: no end date (lifetime certificate)


@dataclass(frozen=True)
class Prescriber:
    user_id: int
    name: str
    role: str
    licences: tuple[Licence, ...] = ()
    deas: tuple[DeaRegistration, ...] = ()
    npi: str | None = None
    boards: tuple[BoardCertification, ...] = ()


@dataclass(frozen=True)
class ScopeRule:
    """The clinic's own rule: ``role`` may (or may not) ``activity`` in ``state`` ("*" = any)."""

    role: str
    activity: str
    state: str
    allowed: bool


@dataclass(frozen=True)
class Encounter:
    kind: str  # in_person or telehealth
    modality: str  # in_person, audio_video or audio_only
    occurred_on: dt.date
    patient_state: str | None


@dataclass(frozen=True)
class Supply:
    """A signed, uncancelled prescription as a supply of ketamine over time."""

    id: int
    product_key: str
    route: str
    issued_on: dt.date
    days_supply: int
    refills: int
    mg_per_day: float
    ended_on: dt.date | None = None  # cancelled: the supply is taken to stop here

    @property
    def covered_days(self) -> int:
        return self.days_supply * (1 + self.refills)

    @property
    def end(self) -> dt.date:
        """The day after the last covered day (or the cancellation day)."""
        natural = self.issued_on + dt.timedelta(days=self.covered_days)
        return min(natural, self.ended_on) if self.ended_on else natural


@dataclass(frozen=True)
class Draft:
    product: Product
    quantity: float
    days_supply: int
    refills: int
    issued_on: dt.date
    compounded_ack: str | None = None
    mme_justification: str | None = None

    @property
    def mg_per_day(self) -> float:
        return mg_per_day(self.product, self.quantity, self.days_supply)


@dataclass(frozen=True)
class PatientFacts:
    home_state: str | None
    has_address: bool
    medications: tuple[MedicationFact, ...] = ()
    last_pdmp_on: dt.date | None = None
    in_person_evaluation_on: dt.date | None = None
    holds: tuple[str, ...] = ()
    prior: tuple[Supply, ...] = ()
    session_mg_last_window: float = 0.0
    weight_kg: float | None = None  # the latest recorded weight; None = unknown


@dataclass(frozen=True)
class Evaluation:
    checks: tuple[Check, ...]
    state: str | None  # the state the prescription is judged in
    mg_per_day: float
    window_mg: float  # the last 30 days, sessions and prescriptions
    next_window_mg: float  # the next 30 days: supplies still running and this prescription
    mme_per_day: float | None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def blocks(self) -> list[Check]:
        return [c for c in self.checks if c.status == BLOCK]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == WARN]

    @property
    def signable(self) -> bool:
        return not self.blocks


# --- arithmetic --------------------------------------------------------------------------------


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later (the month's last day when it has no such day)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def mg_per_day(product: Product, quantity: float, days_supply: int) -> float:
    return round(quantity * product.strength_mg / days_supply, 2) if days_supply > 0 else 0.0


def is_systemic(route: str) -> bool:
    """Topical ketamine has no meaningful systemic absorption (Lynch 2005, prescribing.toml)."""
    return route != "topical"


def supply_mg_between(supply: Supply, start: dt.date, end: dt.date) -> float:
    """Milligrams of ``supply`` taken on the days in [start, end), at its mg/day."""
    first, last = max(start, supply.issued_on), min(end, supply.end)
    days = (last - first).days
    return supply.mg_per_day * days if days > 0 else 0.0


def last_refill_due(issued_on: dt.date, days_supply: int, refills: int) -> dt.date:
    """When the last refill would be needed if each fill lasts its days' supply."""
    return issued_on + dt.timedelta(days=days_supply * refills)


def input_errors(
    product: Product | None, quantity: float, days_supply: int, refills: int, issued_on: dt.date
) -> dict[str, str]:
    """What makes a prescription impossible to write at all (the form says it; nothing is saved)."""
    r = prescribing_rules()
    errors: dict[str, str] = {}
    if product is None:
        errors["product_key"] = "Choose a product from the list."
    elif not product.home_use:
        errors["product_key"] = f"{r.never_home.text} ({r.never_home.sourced.source})"
    elif product.route not in r.take_home_routes:
        errors["product_key"] = f"Only take-home routes: {', '.join(r.take_home_routes)}."
    elif problem := fit_problem(product.drug, product.dosage_form, product.drug, product.route):
        # The right product for the route: the catalogue's form must fit its own route.
        errors["product_key"] = f"{product.name}: {problem}"
    if quantity <= 0:
        errors["quantity"] = "The quantity must be more than zero."
    if days_supply < 1 or days_supply > r.max_days_supply.value:
        errors["days_supply"] = f"Days' supply is 1 to {r.max_days_supply.value:g} days."
    if refills < 0:
        errors["refills"] = "Refills cannot be negative."
    elif refills > r.max_refills:
        errors["refills"] = (
            f"Schedule III: at most {r.max_refills} refills ({r.refills.source} [{r.refills.tag}])."
        )
    elif refills and days_supply >= 1:
        limit = add_months(issued_on, r.refill_window_months)
        due = last_refill_due(issued_on, days_supply, refills)
        if due > limit:
            errors["refills"] = (
                f"The last refill would fall on {due.isoformat()}, after {limit.isoformat()}: Schedule III "
                f"refills are allowed only within {r.refill_window_months} months of issue "
                f"({r.refills.source} [{r.refills.tag}])."
            )
    return errors


# --- scope of practice -------------------------------------------------------------------------


def scope_allows(
    rules: Sequence[ScopeRule], defaults: Sequence[ScopeDefault], role: str, activity: str, state: str
) -> tuple[bool, str, str]:
    """Whether ``role`` may ``activity`` in ``state``: the clinic's rule for that state, else its
    rule for every state, else the design default. Returns (allowed, source, tag)."""
    for wanted in (state, ALL_STATES):
        for rule in rules:
            if rule.role == role and rule.activity == activity and rule.state == wanted:
                where = "every state" if wanted == ALL_STATES else wanted
                return rule.allowed, f"the clinic's own scope rule ({role}, {activity}, {where})", "design"
    for default in defaults:
        if default.role == role and default.activity == activity:
            return default.allowed, default.sourced.source, default.sourced.tag
    return False, "No scope rule or default allows this (design)", "design"


# --- the checks --------------------------------------------------------------------------------


def _credential_check(
    key: str,
    label: str,
    items: Sequence[Licence] | Sequence[DeaRegistration],
    state: str | None,
    issued_on: dt.date,
    settings: RxSettings,
) -> Check:
    r = prescribing_rules()
    src, tag = r.state.source, r.state.tag
    if state is None:
        return Check(key, label, BLOCK, "The patient's state is not known.", src, tag)
    in_state = [c for c in items if c.state == state]
    valid = [c for c in in_state if c.expires_on >= issued_on]
    if not valid:
        if in_state:
            last = max(c.expires_on for c in in_state)
            return Check(
                key, label, BLOCK, f"The {label.lower()} in {state} expired on {last.isoformat()}.", src, tag
            )
        return Check(key, label, BLOCK, f"No {label.lower()} in {state} is on record.", src, tag)
    best = max(valid, key=lambda c: c.expires_on)
    left = (best.expires_on - issued_on).days
    if left <= settings.credential_alert_days:
        return Check(
            key,
            label,
            WARN,
            f"{label} {best.number} ({state}) expires on {best.expires_on.isoformat()}, in {left} days.",
            f"{src}; alert window: {settings.note('credential_alert_days')}",
            tag,
        )
    return Check(
        key, label, PASS, f"{label} {best.number} ({state}) valid to {best.expires_on.isoformat()}.", src, tag
    )


def _credentials(
    prescriber: Prescriber, state: str | None, issued_on: dt.date, settings: RxSettings
) -> list[Check]:
    n = npi_rule()
    checks = [
        _credential_check("licence", "State licence", prescriber.licences, state, issued_on, settings),
        _credential_check("dea", "DEA registration", prescriber.deas, state, issued_on, settings),
    ]
    if prescriber.npi:
        checks.append(
            Check("npi", "NPI", PASS, f"NPI {prescriber.npi} on record.", n.sourced.source, n.sourced.tag)
        )
    else:
        checks.append(
            Check(
                "npi",
                "NPI",
                BLOCK,
                "No NPI on record for the prescriber: missing credentials block prescribing.",
                "issue #8: expired or missing credentials block prescribing (design)",
                "design",
            )
        )
    current = [b for b in prescriber.boards if b.expires_on is None or b.expires_on >= issued_on]
    if current:
        names = ", ".join(f"{b.board} ({b.specialty})" for b in current)
        checks.append(Check("board", "Board certification", PASS, names, "issue #8 (design)", "design"))
    else:
        checks.append(
            Check(
                "board",
                "Board certification",
                WARN,
                "No current board certification on record.",
                "issue #8: board certification is recorded; not a legal requirement to prescribe (design)",
                "design",
            )
        )
    return checks


def _encounter(encounter: Encounter | None) -> Check:
    r = prescribing_rules()
    if encounter is None:
        return Check(
            "encounter",
            "Encounter",
            BLOCK,
            "Record the encounter this prescription comes from (in person, or telehealth with audio "
            "and video).",
            r.encounter.source,
            r.encounter.tag,
        )
    if encounter.modality == AUDIO_ONLY:
        return Check(
            "encounter",
            "Encounter",
            BLOCK,
            f"Audio-only telehealth on {encounter.occurred_on.isoformat()}: not allowed for ketamine; "
            "an audio-video or in-person encounter is needed.",
            r.audio_only.source,
            r.audio_only.tag,
        )
    how = "in person" if encounter.kind == IN_PERSON else "telehealth, audio and video"
    return Check(
        "encounter",
        "Encounter",
        PASS,
        f"Encounter {how} on {encounter.occurred_on.isoformat()}.",
        r.audio_only.source,
        r.audio_only.tag,
    )


def _telehealth_basis(
    encounter: Encounter | None, patient: PatientFacts, issued_on: dt.date, settings: RxSettings
) -> Check:
    r = prescribing_rules()
    key, label = "telehealth_basis", "Legal basis for telehealth"
    if encounter is None or encounter.kind == IN_PERSON:
        when = f" on {encounter.occurred_on.isoformat()}" if encounter else ""
        status = PASS if encounter else BLOCK
        message = (
            f"In-person encounter{when}: no telehealth basis needed."
            if encounter
            else "No encounter recorded yet, so no basis for a telehealth prescription either."
        )
        return Check(key, label, status, message, r.in_person.source, r.in_person.tag)
    evaluated = patient.in_person_evaluation_on
    if evaluated is not None and evaluated <= issued_on:
        return Check(
            key,
            label,
            PASS,
            f"In-person medical evaluation on record, {evaluated.isoformat()}.",
            r.in_person.source,
            r.in_person.tag,
        )
    end = settings.flexibility_end
    source = f"{r.flexibility_basis.source}; end date {end.isoformat()}: {settings.note('flexibility_end')}"
    if issued_on > end:
        return Check(
            key,
            label,
            BLOCK,
            f"The DEA telemedicine flexibility ended on {end.isoformat()}: an in-person medical evaluation "
            "must be on record before a telehealth prescription.",
            f"{r.in_person.source}; {source}",
            r.in_person.tag,
        )
    left = (end - issued_on).days
    if left <= settings.flexibility_alert_days:
        return Check(
            key,
            label,
            WARN,
            f"No in-person evaluation on record; the DEA telemedicine flexibility allows this prescription "
            f"but ends on {end.isoformat()}, in {left} days. Arrange an in-person evaluation.",
            f"{source}; alert {settings.flexibility_alert_days} days before: "
            f"{settings.note('flexibility_alert_days')}",
            r.flexibility.tag,
        )
    return Check(
        key,
        label,
        PASS,
        f"No in-person evaluation on record; the DEA telemedicine flexibility is in force until "
        f"{end.isoformat()}.",
        source,
        r.flexibility.tag,
    )


def _scope(allowed: bool, scope_source: str, scope_tag: str, role: str, state: str | None) -> Check:
    where = state or "an unknown state"
    if allowed:
        return Check(
            "scope", "Scope of practice", PASS, f"A {role} may prescribe in {where}.", scope_source, scope_tag
        )
    return Check(
        "scope",
        "Scope of practice",
        BLOCK,
        f"The clinic's scope rules do not let a {role} prescribe in {where}.",
        scope_source,
        scope_tag,
    )


def _pdmp(patient: PatientFacts, issued_on: dt.date, settings: RxSettings) -> Check:
    r = prescribing_rules()
    window = settings.pdmp_window_days
    src = f"{r.pdmp_window_days.sourced.source}; window {window} days: {settings.note('pdmp_window_days')}"
    tag = r.pdmp_window_days.sourced.tag
    last = patient.last_pdmp_on
    if last is None:
        return Check(
            "pdmp", "PDMP check", BLOCK, "No PDMP check on record: query the PDMP and record it.", src, tag
        )
    age = (issued_on - last).days
    if age > window:
        return Check(
            "pdmp",
            "PDMP check",
            BLOCK,
            f"The last PDMP check ({last.isoformat()}) is {age} days old; the clinic's window is "
            f"{window} days.",
            src,
            tag,
        )
    return Check(
        "pdmp", "PDMP check", PASS, f"PDMP checked on {last.isoformat()} ({age} days ago).", src, tag
    )


def _early_refill(draft: Draft, prior: Sequence[Supply], settings: RxSettings) -> Check:
    r = prescribing_rules()
    pct = settings.early_refill_min_used_pct
    src = (
        f"{r.early_refill_min_used_pct.sourced.source}; {pct}%: {settings.note('early_refill_min_used_pct')}"
    )
    tag = r.early_refill_min_used_pct.sourced.tag
    same = [s for s in prior if s.product_key == draft.product.key and s.issued_on <= draft.issued_on]
    if not same:
        return Check(
            "early_refill", "Early refill", PASS, "No earlier prescription of this product.", src, tag
        )
    last = max(same, key=lambda s: (s.issued_on, s.id))
    covered = (last.end - last.issued_on).days
    elapsed = (draft.issued_on - last.issued_on).days
    needed = -(-covered * pct // 100)  # days that must pass, rounded up
    if elapsed < needed:
        return Check(
            "early_refill",
            "Early refill",
            BLOCK,
            f"Too early: day {elapsed + 1} of {covered} of prescription #{last.id} "
            f"(issued {last.issued_on.isoformat()}); a new prescription from day {needed + 1}.",
            src,
            tag,
        )
    return Check(
        "early_refill",
        "Early refill",
        PASS,
        f"Day {elapsed + 1} of {covered} of prescription #{last.id}: not early.",
        src,
        tag,
    )


def _overlap(draft: Draft, prior: Sequence[Supply]) -> Check:
    r = prescribing_rules()
    same = [s for s in prior if s.product_key == draft.product.key and s.issued_on <= draft.issued_on]
    latest_same = max(same, key=lambda s: (s.issued_on, s.id)).id if same else None
    running = [s for s in prior if s.id != latest_same and s.issued_on <= draft.issued_on < s.end]
    if not running:
        return Check(
            "overlap",
            "Overlapping prescriptions",
            PASS,
            "No other ketamine supply running.",
            r.overlap.source,
            r.overlap.tag,
        )
    listed = "; ".join(f"#{s.id} {s.product_key} until {s.end.isoformat()}" for s in running)
    return Check(
        "overlap",
        "Overlapping prescriptions",
        WARN,
        f"Other ketamine supply still running: {listed}. Cancel it or say why both are needed.",
        r.overlap.source,
        r.overlap.tag,
    )


def _escalation(draft: Draft, prior: Sequence[Supply]) -> Check:
    r = prescribing_rules()
    earlier = [s for s in prior if is_systemic(s.route) and s.issued_on <= draft.issued_on]
    if not is_systemic(draft.product.route):
        return Check(
            "escalation",
            "Dose escalation",
            PASS,
            "Topical: not compared.",
            r.escalation.source,
            r.escalation.tag,
        )
    if not earlier:
        return Check(
            "escalation",
            "Dose escalation",
            PASS,
            "First systemic take-home prescription.",
            r.escalation.source,
            r.escalation.tag,
        )
    last = max(earlier, key=lambda s: (s.issued_on, s.id))
    new = draft.mg_per_day
    if new > last.mg_per_day:
        rise = 100.0 * (new - last.mg_per_day) / last.mg_per_day if last.mg_per_day else 100.0
        return Check(
            "escalation",
            "Dose escalation",
            WARN,
            f"{new:g} mg/day, up {rise:.0f}% from {last.mg_per_day:g} mg/day on prescription #{last.id}.",
            r.escalation.source,
            r.escalation.tag,
        )
    return Check(
        "escalation",
        "Dose escalation",
        PASS,
        f"{new:g} mg/day, not above {last.mg_per_day:g} mg/day on prescription #{last.id}.",
        r.escalation.source,
        r.escalation.tag,
    )


def window_mg(draft: Draft, patient: PatientFacts, today: dt.date, days: int) -> tuple[float, float, float]:
    """(prescriptions in the last ``days`` days, sessions in them, the next ``days`` days with this
    prescription and the supplies still running). Topical supplies are left out."""
    start, end = today - dt.timedelta(days=days - 1), today + dt.timedelta(days=1)
    systemic = [s for s in patient.prior if is_systemic(s.route)]
    past = sum(supply_mg_between(s, start, end) for s in systemic)
    ahead_start, ahead_end = draft.issued_on, draft.issued_on + dt.timedelta(days=days)
    ahead = sum(supply_mg_between(s, ahead_start, ahead_end) for s in systemic)
    if is_systemic(draft.product.route):
        own = Supply(
            0,
            draft.product.key,
            draft.product.route,
            draft.issued_on,
            draft.days_supply,
            draft.refills,
            draft.mg_per_day,
        )
        ahead += supply_mg_between(own, ahead_start, ahead_end)
    return round(past, 1), round(patient.session_mg_last_window, 1), round(ahead, 1)


def _monthly(
    draft: Draft, patient: PatientFacts, today: dt.date, settings: RxSettings
) -> tuple[Check, float, float]:
    r = prescribing_rules()
    days = int(r.monthly_window_days.value)
    rx_past, sessions, ahead = window_mg(draft, patient, today, days)
    total = round(rx_past + sessions, 1)
    message = (
        f"Last {days} days: {total:g} mg (sessions {sessions:g} mg, take-home {rx_past:g} mg). "
        f"Next {days} days with this prescription: {ahead:g} mg. Topical ketamine is not counted."
    )
    src = f"{r.monthly_window_days.sourced.source}; {r.topical.source}"
    limit = settings.monthly_limit_mg
    if limit is None:
        return (
            Check(
                "monthly",
                "Monthly cumulative ketamine",
                PASS,
                f"{message} {r.monthly_limit.source}.",
                src,
                "design",
            ),
            total,
            ahead,
        )
    src = f"{src}; limit {limit:g} mg: {settings.note('monthly_limit_mg')}"
    if total > limit or ahead > limit:
        return (
            Check(
                "monthly",
                "Monthly cumulative ketamine",
                WARN,
                f"{message} Above the clinic's {limit:g} mg.",
                src,
                "design",
            ),
            total,
            ahead,
        )
    return Check("monthly", "Monthly cumulative ketamine", PASS, message, src, "design"), total, ahead


def _mme(draft: Draft, medications: Sequence[MedicationFact]) -> tuple[Check, float | None]:
    """The MME check (screening's one ``mme_per_day``): the total only when every opioid was
    converted; the >= 90 review needs a written justification and keeps the >= 50 advice."""
    rule, r = mme_rule(), prescribing_rules()
    src, tag = f"{rule.sourced.source}; {rule.thresholds.source}", rule.sourced.tag
    result = mme_per_day(tuple(medications))
    if not result.opioids:
        return Check("mme", "Opioids (MME)", PASS, result.summary(), src, tag), None
    summary = result.summary()
    advice = "".join(f" {a}." for a in result.advice())
    if result.level() == "review":
        justification = (draft.mme_justification or "").strip()
        if justification:
            message = f"{summary}{advice} Justified: {justification}"
            return Check(
                "mme", "Opioids (MME)", WARN, message, f"{src}; {r.mme_justify.source}", tag
            ), result.total
        message = f"{summary}{advice} Write the justification before signing."
        return Check(
            "mme", "Opioids (MME)", BLOCK, message, f"{src}; {r.mme_justify.source}", tag
        ), result.total
    status = WARN if result.level() or result.unconverted else PASS
    return Check("mme", "Opioids (MME)", status, f"{summary}{advice}", src, tag), result.total


def _benzodiazepine(medications: Sequence[MedicationFact]) -> Check:
    r = prescribing_rules()
    benzos = sorted({m.name for m in medications if m.drug_class == "benzodiazepine"})
    if not benzos:
        return Check(
            "benzodiazepine",
            "Benzodiazepines",
            PASS,
            "No benzodiazepine on the medication list.",
            r.benzodiazepine.sourced.source,
            r.benzodiazepine.sourced.tag,
        )
    opioids = sorted({m.name for m in medications if m.drug_class == "opioid"})
    if opioids:
        m = r.benzodiazepine_with_opioid
        return Check(
            "benzodiazepine",
            "Benzodiazepines",
            WARN,
            f"{m.text}: {', '.join(benzos)} with {', '.join(opioids)}.",
            m.sourced.source,
            m.sourced.tag,
        )
    m = r.benzodiazepine
    return Check(
        "benzodiazepine",
        "Benzodiazepines",
        WARN,
        f"{m.text}: {', '.join(benzos)}.",
        m.sourced.source,
        m.sourced.tag,
    )


def _compounded(draft: Draft) -> Check:
    r = prescribing_rules()
    w = r.compounded_warning
    if not draft.product.compounded:
        return Check(
            "compounded", "Compounded product", PASS, "FDA-approved product.", w.sourced.source, w.sourced.tag
        )
    ack = (draft.compounded_ack or "").strip()
    source = f"{w.sourced.source}; {r.compounded_ack.source}"
    if len(ack) < r.compounded_ack_min_chars:
        return Check(
            "compounded",
            "Compounded product",
            BLOCK,
            f"{w.text} At-home use of a compounded product needs a documented acknowledgement "
            f"(at least {r.compounded_ack_min_chars} characters).",
            source,
            w.sourced.tag,
        )
    return Check(
        "compounded", "Compounded product", WARN, f"{w.text} Acknowledged: {ack}", source, w.sourced.tag
    )


def _holds(patient: PatientFacts) -> Check:
    src = (
        "Long-term safety holds: liver tests (ASRA/AAPM/ASA 2018) and bladder symptoms "
        "(FDA 2023 warning); the hold rules are clinic defaults (design)"
    )
    if patient.holds:
        return Check(
            "safety_hold", "Safety hold", BLOCK, "Active hold: " + "; ".join(patient.holds), src, "design"
        )
    return Check("safety_hold", "Safety hold", PASS, "No active safety hold.", src, "design")


def _content(patient: PatientFacts) -> Check:
    r = prescribing_rules()
    c = r.content
    if not patient.has_address:
        return Check(
            "content",
            "What the prescription must carry",
            BLOCK,
            "The patient's address is missing from the record.",
            f"{c.text} ({c.sourced.source})",
            c.sourced.tag,
        )
    return Check(
        "content",
        "What the prescription must carry",
        PASS,
        "Patient name and address on record.",
        c.sourced.source,
        c.sourced.tag,
    )


HOME = "home"  # the protocol setting of a take-home supply (dose_limits.toml [[ceiling]] settings)


def home_ceilings(clinic: ClinicalDefaults | None = None) -> CeilingsInForce:
    """The absolute per-day ceilings for a take-home supply: the day-visit row of dose_limits.toml
    (settings outpatient and home), lowered by the clinic where it set its own."""
    return ceilings_in_force(HOME, clinic or planning_knowledge_defaults())


def _day_ceiling(draft: Draft, patient: PatientFacts, ceilings: CeilingsInForce) -> Check:
    """No take-home supply may give more a day than the absolute per-day ceilings (mg and mg/kg):
    this prescription's mg/day plus the other systemic supplies running on its first day.
    Above either ceiling: refused, whatever the directions say. Weight unknown: the mg/kg ceiling
    cannot be checked and the check says so (never taken as met)."""
    label = "Daily ketamine within the absolute ceiling"
    src = f"{ceilings.source} [{ceilings.tag}]; {ceilings.note}"
    if not is_systemic(draft.product.route):
        r = prescribing_rules()
        return Check(
            "day_ceiling",
            label,
            PASS,
            "Topical ketamine is not counted against the ceiling.",
            r.topical.source,
            "V",
        )
    day = draft.issued_on
    running = sum(s.mg_per_day for s in patient.prior if is_systemic(s.route) and s.issued_on <= day < s.end)
    day_mg = round(draft.mg_per_day + running, 2)
    how = (
        f"{draft.quantity:g} x {draft.product.strength_mg:g} mg over {draft.days_supply} days"
        f" = {draft.mg_per_day:g} mg a day"
    )
    if running:
        how += (
            f", with {round(running, 2):g} mg a day of other take-home supplies running: {day_mg:g} mg a day"
        )
    over: list[str] = []
    if ceilings.day_max_mg is not None and day_mg > ceilings.day_max_mg:
        over.append(f"above the ceiling of {ceilings.day_max_mg:g} mg a day")
    per_kg_text = ""
    if ceilings.day_max_mg_per_kg is not None:
        if patient.weight_kg is None:
            per_kg_text = (
                " Per kg: unknown, no weight on record; the ceiling of"
                f" {ceilings.day_max_mg_per_kg:g} mg/kg a day is not checked."
            )
        else:
            per_kg = round(day_mg / patient.weight_kg, 2)
            per_kg_text = f" Per kg: {per_kg:g} mg/kg a day at {patient.weight_kg:g} kg."
            if per_kg > ceilings.day_max_mg_per_kg:
                over.append(
                    f"{per_kg:g} mg/kg a day is above the ceiling of"
                    f" {ceilings.day_max_mg_per_kg:g} mg/kg a day"
                )
    if over:
        return Check(
            "day_ceiling", label, BLOCK, f"Refused: {how}, {'; '.join(over)}.{per_kg_text}", src, ceilings.tag
        )
    status = WARN if ceilings.day_max_mg_per_kg is not None and patient.weight_kg is None else PASS
    return Check("day_ceiling", label, status, f"{how}.{per_kg_text}", src, ceilings.tag)


def _refills(draft: Draft) -> Check:
    r = prescribing_rules()
    limit = add_months(draft.issued_on, r.refill_window_months)
    if draft.refills == 0:
        message = "No refills."
    else:
        due = last_refill_due(draft.issued_on, draft.days_supply, draft.refills)
        message = (
            f"{draft.refills} refill(s); the last one falls on {due.isoformat()}, before {limit.isoformat()}."
        )
    return Check("refills", "Refills (Schedule III)", PASS, message, r.refills.source, r.refills.tag)


def evaluate(
    draft: Draft,
    prescriber: Prescriber,
    encounter: Encounter | None,
    patient: PatientFacts,
    settings: RxSettings,
    today: dt.date,
    scope: tuple[bool, str, str] | None = None,
    ceilings: CeilingsInForce | None = None,
) -> Evaluation:
    """Every check on one prescription, in the order the page shows them. ``scope`` is the result
    of :func:`scope_allows` for the prescriber's role in the state judged (None: not allowed)."""
    state = encounter.patient_state if encounter and encounter.patient_state else patient.home_state
    allowed, scope_source, scope_tag = scope or (False, "no scope rule (design)", "design")
    monthly, window_total, ahead = _monthly(draft, patient, today, settings)
    mme_check, mme = _mme(draft, patient.medications)
    product = draft.product
    r = prescribing_rules()
    product_check = Check(
        "product",
        "Take-home product",
        PASS,
        f"{product.name}: {product.strength_mg:g} mg per {product.unit}, {product.route}. "
        f"Strength source: {product.sourced.source} [{product.sourced.tag}].",
        f"{r.take_home.source}; {r.scheduling.source}",
        r.take_home.tag,
    )
    checks = (
        product_check,
        _refills(draft),
        _encounter(encounter),
        _telehealth_basis(encounter, patient, draft.issued_on, settings),
        *_credentials(prescriber, state, draft.issued_on, settings),
        _scope(allowed, scope_source, scope_tag, prescriber.role, state),
        _pdmp(patient, draft.issued_on, settings),
        _early_refill(draft, patient.prior, settings),
        _overlap(draft, patient.prior),
        _escalation(draft, patient.prior),
        _day_ceiling(draft, patient, ceilings or home_ceilings()),
        monthly,
        mme_check,
        _benzodiazepine(patient.medications),
        _compounded(draft),
        _holds(patient),
        _content(patient),
    )
    return Evaluation(checks, state, draft.mg_per_day, window_total, ahead, mme)
