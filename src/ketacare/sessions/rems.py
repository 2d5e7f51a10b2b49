"""The Spravato REMS Patient Monitoring Form of an esketamine session (clinical-facts 2.2).

KetaCare prefills what the record holds (patient, medicines, dose and lot, times, blood
pressures, sedation, dissociation and respiratory events), the nurse confirms or corrects every
answer, and the form is saved with the session (``session_rems_forms``). Saved forms export as
CSV for a date range, and each prints from its page. The form is submitted to the REMS by the
clinic (online or by fax); KetaCare does not send it."""

from __future__ import annotations

import datetime as dt
import io
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from ketacare import clinic_time
from ketacare.audit import service as audit
from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.db import utcnow
from ketacare.errors import Conflict, InvalidInput, NotFound
from ketacare.exports import SafeCsvWriter, spreadsheet_safe
from ketacare.knowledge import Sourced
from ketacare.knowledge.rems import RemsRules, rems_rules
from ketacare.knowledge.sessions import session_rules
from ketacare.patients import service as patients
from ketacare.sessions import rules, views
from ketacare.sessions.models import RemsForm, TreatmentSession
from ketacare.validation import Email, parse

# --- what the form asks -----------------------------------------------------------------------


class RemsIn(BaseModel):
    """The nurse's answers. Yes/no questions have no default: each must be answered."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    patient_name: str = Field(min_length=1, max_length=200)
    date_of_birth: dt.date
    sex: str = Field(min_length=1, max_length=20)
    first_treatment: bool
    enrolled: bool
    benzodiazepines: bool = False
    sedative_hypnotics: bool = False
    psychostimulants: bool = False
    maois: bool = False
    opioids: bool = False
    concomitant_details: str | None = Field(default=None, max_length=1000)
    hcp_name: str = Field(min_length=1, max_length=200)
    hcp_phone: str = Field(min_length=1, max_length=40)
    hcp_email: Email = Field(max_length=254)
    setting_name: str = Field(min_length=1, max_length=200)
    setting_address: str = Field(min_length=1, max_length=300)
    treatment_date: dt.date
    dose: str = Field(min_length=1, max_length=10)
    dose_other_mg: float | None = Field(default=None, gt=0, le=2000)
    lot: str = Field(min_length=1, max_length=200)
    total_monitoring_min: int = Field(ge=0, le=24 * 60)
    ready_to_leave_min: int = Field(ge=0, le=24 * 60)
    vitals_ok_before_dosing: bool
    vitals_ok_before_discharge: bool
    bp_before_dosing_sbp: int = Field(ge=0, le=400)
    bp_before_dosing_dbp: int = Field(ge=0, le=300)
    bp_40_min_sbp: int = Field(ge=0, le=400)
    bp_40_min_dbp: int = Field(ge=0, le=300)
    bp_before_discharge_sbp: int = Field(ge=0, le=400)
    bp_before_discharge_dbp: int = Field(ge=0, le=300)
    sedation: bool
    dissociation: bool
    respiratory_depression: bool
    event_details: str | None = Field(default=None, max_length=2000)

    @field_validator("dose")
    @classmethod
    def _dose(cls, value: str) -> str:
        choices = [str(c) for c in rems_rules().dose_choices_mg]
        if value not in (*choices, "other"):
            raise ValueError(f"Choose {', '.join(f'{c} mg' for c in choices)} or other.")
        return value


# Every answer, in the form's order, with its label: the printable page and the CSV columns.
FIELDS: tuple[tuple[str, str], ...] = (
    ("patient_name", "Patient name"),
    ("date_of_birth", "Date of birth"),
    ("sex", "Sex"),
    ("first_treatment", "First treatment"),
    ("enrolled", "Patient enrolled in the REMS"),
    ("benzodiazepines", "Concomitant: benzodiazepines"),
    ("sedative_hypnotics", "Concomitant: non-benzodiazepine sedative-hypnotics"),
    ("psychostimulants", "Concomitant: psychostimulants"),
    ("maois", "Concomitant: MAOIs"),
    ("opioids", "Concomitant: opioids"),
    ("concomitant_details", "Concomitant medicines (names)"),
    ("hcp_name", "Monitoring healthcare provider"),
    ("hcp_phone", "Provider phone"),
    ("hcp_email", "Provider email"),
    ("setting_name", "Healthcare setting"),
    ("setting_address", "Setting address"),
    ("treatment_date", "Treatment date"),
    ("dose", "Dose (mg)"),
    ("dose_other_mg", "Other dose (mg)"),
    ("lot", "Lot number(s)"),
    ("total_monitoring_min", "Total time from first device to end of monitoring (min)"),
    ("ready_to_leave_min", "Ready to leave without the 2-hour rule (min after the first device)"),
    ("vitals_ok_before_dosing", "Vital signs acceptable before dosing"),
    ("vitals_ok_before_discharge", "Vital signs acceptable before discharge"),
    ("bp_before_dosing_sbp", "BP before dosing, systolic"),
    ("bp_before_dosing_dbp", "BP before dosing, diastolic"),
    ("bp_40_min_sbp", "BP at about 40 min, systolic"),
    ("bp_40_min_dbp", "BP at about 40 min, diastolic"),
    ("bp_before_discharge_sbp", "BP before discharge, systolic"),
    ("bp_before_discharge_dbp", "BP before discharge, diastolic"),
    ("sedation", "Sedation occurred"),
    ("dissociation", "Dissociation occurred"),
    ("respiratory_depression", "Respiratory depression occurred"),
    ("event_details", "Details"),
)
BOOLEAN_FIELDS = frozenset(name for name, info in RemsIn.model_fields.items() if info.annotation is bool)
CHECKBOXES = ("benzodiazepines", "sedative_hypnotics", "psychostimulants", "maois", "opioids")
CSV_COLUMNS = ("session_id", "record_number", "form_status", "saved_at", "saved_by", *(n for n, _ in FIELDS))


# --- suggesting the answers from the record (pure) --------------------------------------------


_aware = clinic_time.as_utc


@dataclass(frozen=True)
class Reading:
    kind: str
    value: float
    at: dt.datetime


@dataclass(frozen=True)
class Context:
    """What the suggestions need beyond the session view."""

    given_name: str
    family_name: str
    date_of_birth: dt.date
    sex: str
    medications: tuple[tuple[str, str], ...]  # (name, drug class)
    first_treatment: bool
    hcp_name: str
    hcp_phone: str
    hcp_email: str
    setting_name: str
    setting_address: str


def first_device_at(v: views.SessionView) -> dt.datetime | None:
    return min(
        (_aware(g.given_at) for g in v.given if g.drug == "esketamine" and g.kind in ("dose", "bolus")),
        default=None,
    )


def _blood_pressure_at(
    readings: Sequence[Reading], choose: Reading | None
) -> tuple[float | None, float | None, dt.datetime | None]:
    """Systolic ``choose`` and the diastolic taken with it (the same time, else the nearest)."""
    if choose is None:
        return None, None, None
    dbps = [r for r in readings if r.kind == "dbp"]
    paired = min(dbps, key=lambda r: abs((r.at - choose.at).total_seconds()), default=None)
    return choose.value, paired.value if paired is not None else None, choose.at


def suggest(
    v: views.SessionView, ctx: Context, knowledge: RemsRules
) -> tuple[dict[str, object], dict[str, str]]:
    """Suggested answers and, for each, where it came from. ``None`` = the nurse answers."""
    tz = zoneinfo.ZoneInfo(v.zone)

    def clock(t: dt.datetime) -> str:
        return t.astimezone(tz).strftime("%H:%M")

    s = v.session
    values: dict[str, object] = {name: None for name, _ in FIELDS}
    hints: dict[str, str] = {}
    values.update(
        patient_name=f"{ctx.given_name} {ctx.family_name}",
        date_of_birth=ctx.date_of_birth.isoformat(),
        sex=ctx.sex,
        first_treatment=ctx.first_treatment,
        hcp_name=ctx.hcp_name,
        hcp_phone=ctx.hcp_phone or None,
        hcp_email=ctx.hcp_email or None,
        setting_name=ctx.setting_name,
        setting_address=ctx.setting_address or None,
    )
    hints["first_treatment"] = (
        "No earlier esketamine session for this patient in KetaCare."
        if ctx.first_treatment
        else "An earlier esketamine session is recorded in KetaCare."
    )
    hints["enrolled"] = "KetaCare does not hold REMS enrolment: check the patient's enrolment form."
    names: list[str] = []
    for box in knowledge.concomitant:
        found = [name for name, cls in ctx.medications if cls in box.drug_classes]
        values[box.key] = bool(found)
        names.extend(found)
        if not box.drug_classes:
            hints[box.key] = "The patient record has no such medicine class: ask the patient."
    values["concomitant_details"] = ", ".join(names) or None
    hints["concomitant_details"] = "From the patient's medication list."

    t0 = first_device_at(v)
    end = _aware(s.discharged_at) if s.discharged_at is not None else None
    doses = [g for g in v.given if g.drug == "esketamine" and g.kind in ("dose", "bolus") and g.dose_mg]
    total = round(sum(g.dose_mg or 0.0 for g in doses), 2)
    if doses:
        if total in knowledge.dose_choices_mg:
            values["dose"] = str(int(total))
        else:
            values["dose"], values["dose_other_mg"] = "other", total
        hints["dose"] = f"{len(doses)} device(s) in the administration record, {total:g} mg in all."
        lots = list(dict.fromkeys(g.lot for g in doses if g.lot))
        values["lot"] = ", ".join(lots) or None
    if t0 is not None:
        values["treatment_date"] = t0.astimezone(tz).date().isoformat()
        if end is not None:
            values["total_monitoring_min"] = int((end - t0).total_seconds() // 60)
            hints["total_monitoring_min"] = f"First device {clock(t0)}, discharged {clock(end)}."
        else:
            hints["total_monitoring_min"] = f"First device {clock(t0)}; the patient is not discharged yet."
    hints["ready_to_leave_min"] = (
        "Your judgement: minutes after the first device when the patient would have been ready "
        "to leave had there been no 2-hour rule."
    )

    readings = [Reading(r.kind, r.value, _aware(r.observed_at)) for r in v.vitals if r.kind in ("sbp", "dbp")]
    sbps = [r for r in readings if r.kind == "sbp"]
    before = [r for r in sbps if t0 is not None and r.at <= t0]
    pre = _blood_pressure_at(
        [r for r in readings if t0 is not None and r.at <= t0], before[-1] if before else None
    )
    baseline = s.baseline or {}
    if pre[0] is not None and pre[2] is not None:
        values["bp_before_dosing_sbp"], values["bp_before_dosing_dbp"] = _int(pre[0]), _int(pre[1])
        hints["bp_before_dosing_sbp"] = f"Last reading before the first device ({clock(pre[2])})."
    elif "sbp" in baseline:
        values["bp_before_dosing_sbp"] = _int(float(baseline["sbp"]))
        values["bp_before_dosing_dbp"] = _int(float(baseline["dbp"])) if "dbp" in baseline else None
        hints["bp_before_dosing_sbp"] = "The baseline taken at the pre-checks."
    if t0 is not None:
        target = t0 + dt.timedelta(minutes=knowledge.bp_check_after_first_dose_min)
        after = [r for r in sbps if r.at > t0]
        near = min(after, key=lambda r: abs((r.at - target).total_seconds()), default=None)
        mid = _blood_pressure_at([r for r in readings if r.at > t0], near)
        if mid[0] is not None and mid[2] is not None:
            values["bp_40_min_sbp"], values["bp_40_min_dbp"] = _int(mid[0]), _int(mid[1])
            minutes = (mid[2] - t0).total_seconds() / 60
            hints["bp_40_min_sbp"] = (
                f"Nearest reading to {knowledge.bp_check_after_first_dose_min} min after the first device: "
                f"{clock(mid[2])} ({minutes:.0f} min after). {knowledge.bp_check.source} "
                f"[{knowledge.bp_check.tag}]"
            )
        else:
            hints["bp_40_min_sbp"] = "No blood pressure recorded after the first device."
    last = [r for r in sbps if end is None or r.at <= end]
    post = _blood_pressure_at([r for r in readings if end is None or r.at <= end], last[-1] if last else None)
    if post[0] is not None and post[2] is not None and (t0 is None or post[2] > t0):
        values["bp_before_discharge_sbp"], values["bp_before_discharge_dbp"] = _int(post[0]), _int(post[1])
        hints["bp_before_discharge_sbp"] = f"Last reading before discharge ({clock(post[2])})."

    base = {k: float(x) for k, x in (s.baseline or {}).items()}
    if "sbp" in base and "dbp" in base and v.precheck is not None:
        high = rules.predose_bp_high(base["sbp"], base["dbp"], session_rules())
        values["vitals_ok_before_dosing"] = None if high else True
        pc = session_rules().precheck
        hints["vitals_ok_before_dosing"] = (
            f"Pre-dose BP {base['sbp']:g}/{base['dbp']:g} is above "
            f"{pc['predose_sbp_max']:g}/{pc['predose_dbp_max']:g}: your decision. "
            if high
            else f"Pre-checks passed; pre-dose BP {base['sbp']:g}/{base['dbp']:g} mmHg. "
        ) + f"{pc['predose_source']} [{pc['predose_tag']}]"
    vitals_check = next((c for c in v.checklist if c.key == "vitals"), None)
    if vitals_check is not None:
        values["vitals_ok_before_discharge"] = True if vitals_check.ok else None
        hints["vitals_ok_before_discharge"] = f"Discharge checklist: {vitals_check.detail}."

    occurred = _events(v, knowledge, clock)
    for key, (answer, evidence) in occurred.items():
        values[key] = answer
        hints[key] = "; ".join(evidence) if evidence else "Nothing in the record."
    details = [e for key in ("sedation", "dissociation", "respiratory_depression") for e in occurred[key][1]]
    values["event_details"] = "; ".join(details) or None
    return values, hints


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)


def _events(
    v: views.SessionView, knowledge: RemsRules, clock: Callable[[dt.datetime], str]
) -> dict[str, tuple[bool | None, list[str]]]:
    """Whether sedation, dissociation and respiratory depression occurred, with the evidence.
    Nothing recorded to judge by (no score, no SpO2) leaves the answer to the nurse."""
    scales = session_rules().scales
    out: dict[str, tuple[bool | None, list[str]]] = {}

    sedation: list[str] = []
    sedation_scored = False
    for x in v.scores:
        alert = knowledge.sedation_below.get(x.scale)
        if alert is None:
            continue
        sedation_scored = True
        if x.total < alert:
            sedation.append(f"{scales[x.scale].name} {x.total} at {clock(_aware(x.observed_at))}")
    sedation += [
        f"{a.term} (grade {a.grade}) at {clock(_aware(a.onset_at))}"
        for a in v.adverse_events
        if a.term_key in knowledge.sedation_terms
    ]
    out["sedation"] = (True if sedation else False if sedation_scored else None, sedation)

    dissociation: list[str] = []
    cadss = [x for x in v.scores if x.scale == "cadss6"]
    dissociation += [
        f"CADSS-6 {x.total} at {clock(_aware(x.observed_at))}"
        for x in cadss
        if x.total > knowledge.dissociation_cadss6_above
    ]
    dissociation += [
        f"{a.term} (grade {a.grade}) at {clock(_aware(a.onset_at))}"
        for a in v.adverse_events
        if a.term_key in knowledge.dissociation_terms
    ]
    out["dissociation"] = (True if dissociation else False if cadss else None, dissociation)

    breathing = [
        f"{a.term} (grade {a.grade}) at {clock(_aware(a.onset_at))}"
        for a in v.adverse_events
        if a.term_key in knowledge.respiratory_terms
    ]
    breathing += [
        f"Alarm: {a.message} ({a.value:g}) at {clock(_aware(a.observed_at))}"
        for a in v.alarms
        if a.rule_key in knowledge.respiratory_alarms
    ]
    monitored = any(r.kind in ("spo2", "rr") for r in v.vitals)
    out["respiratory_depression"] = (True if breathing else False if monitored else None, breathing)
    return out


# --- the use-cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RemsDraft:
    """The form as the page shows it: saved answers, or suggestions when nothing is saved."""

    session_id: int
    patient_name: str
    record_number: str
    zone: str
    values: dict[str, object]
    hints: dict[str, str]
    suggested: dict[str, object]
    saved: RemsForm | None
    saved_by: str | None
    first_device_at: dt.datetime | None
    discharged: bool
    min_monitoring_min: int
    min_monitoring: Sourced
    knowledge: RemsRules


def _esketamine_view(db: Session, actor: Principal, session_id: int) -> views.SessionView:
    v = views.view(db, actor, session_id, audit_read=False)
    if v.session.drug != "esketamine":
        raise NotFound(
            f"The REMS monitoring form belongs to esketamine sessions; this session gives {v.session.drug}."
        )
    return v


def _first_treatment(db: Session, row: TreatmentSession, t0: dt.datetime | None) -> bool:
    earlier = select(TreatmentSession.id).where(
        TreatmentSession.patient_id == row.patient_id,
        TreatmentSession.drug == "esketamine",
        TreatmentSession.id != row.id,
        TreatmentSession.started_at.is_not(None),
    )
    if t0 is not None:
        earlier = earlier.where(TreatmentSession.started_at < t0)
    return db.execute(earlier.limit(1)).first() is None


def _context(db: Session, actor: Principal, v: views.SessionView, t0: dt.datetime | None) -> Context:
    from ketacare.directory import service as directory  # the directory feature imports sessions

    record = patients.record(db, actor, v.patient_id)
    nurse_id = v.session.nurse_id or actor.user_id
    nurse = auth.staff_user(db, actor, nurse_id) if nurse_id is not None else None
    clinic = auth.clinic(db, actor.clinic_id)
    profile = directory.profile_row(db, actor.clinic_id)
    address = (
        f"{profile.street}, {profile.city}, {profile.state} {profile.zip}" if profile is not None else ""
    )
    return Context(
        given_name=record.patient.given_name,
        family_name=record.patient.family_name,
        date_of_birth=record.patient.date_of_birth,
        sex=record.patient.sex,
        medications=tuple((m.name, m.drug_class) for m in record.medications),
        first_treatment=_first_treatment(db, v.session, t0),
        hcp_name=nurse.full_name if nurse is not None else "",
        hcp_phone=profile.public_phone if profile is not None else "",
        hcp_email=(nurse.email or "") if nurse is not None else "",
        setting_name=clinic.name,
        setting_address=address,
    )


def form(db: Session, actor: Principal, session_id: int) -> RemsDraft:
    v = _esketamine_view(db, actor, session_id)
    audit.record(db, actor, "session.rems.read", "session", resource_id=v.session.id, patient_id=v.patient_id)
    t0 = first_device_at(v)
    knowledge = rems_rules()
    suggested, hints = suggest(v, _context(db, actor, v, t0), knowledge)
    saved = v.rems
    discharge = session_rules().discharge
    return RemsDraft(
        session_id=v.session.id,
        patient_name=v.patient_name,
        record_number=v.record_number,
        zone=v.zone,
        values=dict(saved.answers) if saved is not None else suggested,
        hints=hints,
        suggested=suggested,
        saved=saved,
        saved_by=v.staff.get(saved.recorded_by_id) if saved is not None and saved.recorded_by_id else None,
        first_device_at=t0,
        discharged=v.session.status == rules.DISCHARGED,
        min_monitoring_min=int(discharge["esketamine_min_min"]),
        min_monitoring=Sourced(discharge["esketamine_source"], discharge["esketamine_tag"]),
        knowledge=knowledge,
    )


def _problems(data: RemsIn, today: dt.date) -> dict[str, str]:
    """What pydantic cannot check alone: the rules between answers, and the knowledge limits."""
    errors: dict[str, str] = {}
    knowledge = session_rules()
    need = int(knowledge.discharge["esketamine_min_min"])
    if data.dose == "other" and data.dose_other_mg is None:
        errors["dose_other_mg"] = "Give the dose in mg."
    if data.total_monitoring_min < need:
        errors["total_monitoring_min"] = (
            f"Monitoring lasts at least {need} minutes from the first device "
            f"({knowledge.discharge['esketamine_source']} [{knowledge.discharge['esketamine_tag']}])."
        )
    if data.ready_to_leave_min > data.total_monitoring_min:
        errors["ready_to_leave_min"] = "This cannot be later than the end of monitoring."
    if data.treatment_date > today:
        errors["treatment_date"] = "The treatment date cannot be in the future."
    for when in ("bp_before_dosing", "bp_40_min", "bp_before_discharge"):
        for kind in ("sbp", "dbp"):
            name = f"{when}_{kind}"
            low, high = knowledge.plausible[kind]
            value = getattr(data, name)
            if not low <= value <= high:
                errors[name] = f"{value} mmHg is outside the plausible range {low:g}-{high:g}."
        sbp, dbp = getattr(data, f"{when}_sbp"), getattr(data, f"{when}_dbp")
        if f"{when}_sbp" not in errors and f"{when}_dbp" not in errors and sbp <= dbp:
            errors[f"{when}_dbp"] = "The diastolic pressure must be below the systolic."
    if (data.sedation or data.dissociation or data.respiratory_depression) and not data.event_details:
        errors["event_details"] = "Describe what happened and what was done."
    return errors


def save(
    db: Session, actor: Principal, session_id: int, data: RemsIn, now: dt.datetime | None = None
) -> RemsForm:
    """Validate and store the nurse's answers (one form per session; saving again replaces the
    answers and who saved them). Bad answers raise ``InvalidInput`` and store nothing."""
    at = now or utcnow()
    v = _esketamine_view(db, actor, session_id)
    if first_device_at(v) is None:
        raise Conflict("No esketamine device is recorded for this session: there is nothing to report yet.")
    today = at.astimezone(zoneinfo.ZoneInfo(v.zone)).date()
    errors = _problems(data, today)
    if errors:
        raise InvalidInput(errors=errors)
    answers = data.model_dump(mode="json")
    if data.dose != "other":
        answers["dose_other_mg"] = None
    row = v.rems
    if row is None:
        row = RemsForm(session_id=v.session.id, answers=answers, recorded_by_id=actor.user_id, recorded_at=at)
        db.add(row)
    else:
        row.answers, row.recorded_by_id, row.recorded_at = answers, actor.user_id, at
    db.flush()
    audit.record(
        db,
        actor,
        "session.rems.save",
        "session",
        resource_id=v.session.id,
        patient_id=v.patient_id,
        detail=f"dose {data.dose}, monitored {data.total_monitoring_min} min",
    )
    return row


def parse_form(form: dict[str, str]) -> RemsIn:
    """The HTML form: ticked boxes arrive as "on", unticked ones not at all."""
    data: dict[str, object] = {k: v for k, v in form.items() if k not in CHECKBOXES}
    for name in CHECKBOXES:
        data[name] = form.get(name) in ("on", "true", "yes", "1")
    return parse(RemsIn, data)


# --- export -----------------------------------------------------------------------------------


_cell = spreadsheet_safe


def export_csv(db: Session, actor: Principal, start: dt.date, end: dt.date) -> str:
    """One row per esketamine session of the clinic whose first device was on a clinic-local day
    from ``start`` to ``end``: the saved answers, or ``missing`` when no form is saved yet."""
    if end < start:
        raise InvalidInput(errors={"end": "The end date is before the start date."})
    if (end - start).days > 366:
        raise InvalidInput(errors={"end": "Export at most a year at a time."})
    tz = clinic_time.zone(db, actor.clinic_id)
    begin = dt.datetime.combine(start, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=tz).astimezone(dt.UTC)
    found = db.execute(
        select(TreatmentSession, RemsForm)
        .outerjoin(RemsForm, RemsForm.session_id == TreatmentSession.id)
        .where(
            TreatmentSession.clinic_id == actor.clinic_id,
            TreatmentSession.drug == "esketamine",
            TreatmentSession.started_at >= begin,
            TreatmentSession.started_at < until,
        )
        .order_by(TreatmentSession.started_at, TreatmentSession.id)
    ).all()
    numbers = patients.record_numbers(db, actor, {s.patient_id for s, _ in found})
    staff = {u.id: u.full_name for u in auth.staff_directory(db, actor.clinic_id)}
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    writer.writerow(CSV_COLUMNS)
    for s, form_row in found:
        answers = form_row.answers if form_row is not None else {}
        saved_at = (
            _aware(form_row.recorded_at).astimezone(tz).isoformat(timespec="minutes") if form_row else ""
        )
        saved_by = staff.get(form_row.recorded_by_id or 0, "") if form_row else ""
        writer.writerow(
            [
                s.id,
                numbers.get(s.patient_id, ""),
                "saved" if form_row is not None else "missing",
                saved_at,
                _cell(saved_by),
                *(_cell(answers.get(name)) for name, _ in FIELDS),
            ]
        )
    audit.record_many(
        db,
        actor,
        [
            audit.AuditEvent(
                "session.rems.export", "session", s.id, s.patient_id, "success", f"{start}..{end}"
            )
            for s, _ in found
        ]
        or [
            audit.AuditEvent(
                "session.rems.export", "clinic", actor.clinic_id, None, "success", f"{start}..{end}"
            )
        ],
    )
    return buffer.getvalue()
