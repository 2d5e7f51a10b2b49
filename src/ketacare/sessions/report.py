"""The session report as data: the sections the printable page and the PDF both show, and the
timeline (vital signs, the ketamine dose rate, the predicted concentration, alarms and adverse
events) as series that become a Plotly figure here and a static image in ``sessions.pdf``.

Pure: built from a ``SessionView`` that is already loaded; no database, no clock read."""

from __future__ import annotations

import datetime as dt
import html
import zoneinfo
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ketacare import clinic_time
from ketacare.knowledge.billing import billing_codes
from ketacare.knowledge.sessions import session_rules
from ketacare.sessions import rules
from ketacare.sessions.device import VITAL_LABELS, VITAL_UNITS

if TYPE_CHECKING:
    from ketacare.sessions.views import SessionView

TIMELINE_VITALS = ("sbp", "dbp", "hr", "spo2", "rr")
VITAL_COLOURS = {"sbp": "#b3261e", "dbp": "#e07a5f", "hr": "#0b5cad", "spo2": "#1b6e3a", "rr": "#6a4c93"}
RATE_COLOUR = "#12324f"
DOSE_COLOUR = "#12324f"
OTHER_DRUG_COLOUR = "#5b6572"
CONC_COLOUR = "#d95f02"
ALARM_COLOUR = "#b3261e"
AE_COLOUR = "#8a5a00"
UNIT_TEXT = {"mm[Hg]": "mmHg", "/min": "/min", "%": "%", "Cel": "°C"}

KIND_LABELS = {
    "start": "Infusion start",
    "rate_change": "Rate change",
    "stop": "Infusion stop",
    "bolus": "Bolus",
    "dose": "Dose",
    "premedication": "Premedication",
    "rescue": "Rescue drug",
}
PHASE_LABELS = {"before": "before", "during": "during", "after": "after"}
ROUTE_LABELS = {
    "iv_infusion": "IV infusion",
    "iv_bolus": "IV injection",
    "oral": "Oral",
    "sublingual": "Sublingual",
    "intranasal": "Intranasal",
    "im": "Intramuscular",
    "topical": "Topical",
    "esketamine_nasal": "Esketamine (Spravato) nasal spray",
}
PREGNANCY_LABELS = {
    "negative": "negative",
    "positive": "positive",
    "not_applicable": "not applicable",
    "not_done": "not done",
}


_aware = clinic_time.as_utc


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text or "0"


# --- the timeline -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    key: str
    name: str
    times: tuple[dt.datetime, ...]  # clinic-local, naive (what the axis shows)
    values: tuple[float, ...]


@dataclass(frozen=True)
class Marker:
    at: dt.datetime  # clinic-local, naive
    value: float
    label: str


@dataclass(frozen=True)
class Timeline:
    zone: str
    vitals: tuple[Series, ...]
    rate: Series  # step points: each rate holds until the next point
    doses: tuple[Marker, ...]  # boluses and doses of the session's drug, in mg
    other_drugs: tuple[Marker, ...]  # premedication and rescue drugs, in mg
    concentration: Series | None
    concentration_note: str
    alarms: tuple[Marker, ...]
    adverse_events: tuple[Marker, ...]

    @property
    def empty(self) -> bool:
        return not (self.vitals or self.rate.times or self.doses or self.other_drugs)


def _end_of(v: SessionView) -> dt.datetime:
    s = v.session
    if s.status in (rules.DISCHARGED, rules.ABORTED):
        return _aware(s.discharged_at or s.aborted_at or v.now)
    return v.now


def _given(v: SessionView) -> list[rules.Given]:
    return [
        rules.Given(g.kind, g.drug, g.route, _aware(g.given_at), g.rate_mg_per_h, g.dose_mg) for g in v.given
    ]


def rate_steps(given: list[rules.Given], end: dt.datetime) -> list[tuple[dt.datetime, float]]:
    """The infusion as step points (time, mg/h): a pause or a stop drops to 0."""
    segs = rules.infusion_segments(given)
    points: list[tuple[dt.datetime, float]] = []
    for i, seg in enumerate(segs):
        points.append((seg.start, seg.rate_mg_per_h))
        following = segs[i + 1].start if i + 1 < len(segs) else None
        if seg.end is None:
            points.append((max(end, seg.start), seg.rate_mg_per_h))
        elif following != seg.end:
            points.append((seg.end, 0.0))
    return points


def timeline(v: SessionView) -> Timeline:
    tz = zoneinfo.ZoneInfo(v.zone)

    def local(t: dt.datetime) -> dt.datetime:
        return _aware(t).astimezone(tz).replace(tzinfo=None)

    vitals = []
    for kind in TIMELINE_VITALS:
        readings = [(local(r.observed_at), r.value) for r in v.vitals if r.kind == kind]
        if readings:
            unit = UNIT_TEXT.get(VITAL_UNITS[kind], VITAL_UNITS[kind])
            vitals.append(
                Series(
                    kind,
                    f"{VITAL_LABELS[kind]} ({unit})",
                    tuple(t for t, _ in readings),
                    tuple(x for _, x in readings),
                )
            )
    given = _given(v)
    steps = rate_steps(given, _end_of(v))
    drug = v.session.drug
    rate = Series(
        "rate",
        f"{drug.capitalize()} rate (mg/h)",
        tuple(local(t) for t, _ in steps),
        tuple(r for _, r in steps),
    )
    doses = tuple(
        Marker(local(g.given_at), g.dose_mg, f"{KIND_LABELS[g.kind]} {g.drug} {_num(g.dose_mg)} mg")
        for g in v.given
        if g.kind in ("bolus", "dose") and g.dose_mg is not None
    )
    others = tuple(
        Marker(local(g.given_at), g.dose_mg or 0.0, f"{KIND_LABELS[g.kind]}: {g.drug} {_num(g.dose_mg)} mg")
        for g in v.given
        if g.kind in ("premedication", "rescue")
    )
    p = v.prediction
    concentration = (
        Series(
            "cp",
            "Predicted plasma ketamine (ng/mL)",
            tuple(local(t) for t in p.t),
            tuple(round(c, 1) for c in p.cp_ng_per_ml),
        )
        if p.available and p.t
        else None
    )
    alarms = tuple(
        Marker(local(a.observed_at), a.value, f"{a.message} ({_num(a.value)}) · {a.status}") for a in v.alarms
    )
    aes = tuple(
        Marker(
            local(a.onset_at), float(a.grade), f"{a.term}, grade {a.grade}{', serious' if a.serious else ''}"
        )
        for a in v.adverse_events
    )
    return Timeline(v.zone, tuple(vitals), rate, doses, others, concentration, p.reason, alarms, aes)


def _hover(text: str) -> str:
    """User text shown by Plotly, which reads a subset of HTML in labels: escaped, so a ``<b>`` or
    a ``<a href>`` in an adverse-event term is shown as typed."""
    return html.escape(text, quote=False)


def _iso(values: tuple[dt.datetime, ...] | list[dt.datetime]) -> list[str]:
    return [t.isoformat(timespec="seconds") for t in values]


def plotly_figure(tl: Timeline) -> dict[str, Any]:
    """Two panels on one time axis: vital signs with alarm and adverse-event markers above;
    the dose rate, single doses and the predicted concentration (right axis) below."""
    data: list[dict[str, Any]] = []
    for s in tl.vitals:
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": _hover(s.name),
                "x": _iso(s.times),
                "y": list(s.values),
                "line": {"color": VITAL_COLOURS.get(s.key, "#444")},
                "marker": {"size": 4},
                "xaxis": "x",
                "yaxis": "y",
            }
        )
    if tl.alarms:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Alarm",
                "x": _iso([m.at for m in tl.alarms]),
                "y": [m.value for m in tl.alarms],
                "text": [_hover(m.label) for m in tl.alarms],
                "hovertemplate": "%{text}<extra>alarm</extra>",
                "marker": {"symbol": "triangle-up", "size": 13, "color": ALARM_COLOUR},
                "xaxis": "x",
                "yaxis": "y",
            }
        )
    top = max([*(max(s.values) for s in tl.vitals), 100.0]) * 1.08
    shapes = []
    if tl.adverse_events:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Adverse event",
                "x": _iso([m.at for m in tl.adverse_events]),
                "y": [top for _ in tl.adverse_events],
                "text": [_hover(m.label) for m in tl.adverse_events],
                "hovertemplate": "%{text}<extra>adverse event</extra>",
                "marker": {"symbol": "x", "size": 12, "color": AE_COLOUR},
                "xaxis": "x",
                "yaxis": "y",
            }
        )
        for m in tl.adverse_events:
            t = m.at.isoformat(timespec="seconds")
            shapes.append(
                {
                    "type": "line",
                    "xref": "x",
                    "yref": "paper",
                    "x0": t,
                    "x1": t,
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": AE_COLOUR, "width": 1, "dash": "dot"},
                }
            )
    if tl.rate.times:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": _hover(tl.rate.name),
                "x": _iso(tl.rate.times),
                "y": list(tl.rate.values),
                "line": {"shape": "hv", "color": RATE_COLOUR, "width": 2},
                "xaxis": "x",
                "yaxis": "y2",
            }
        )
    if tl.doses:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Bolus or dose (mg)",
                "x": _iso([m.at for m in tl.doses]),
                "y": [m.value for m in tl.doses],
                "text": [_hover(m.label) for m in tl.doses],
                "hovertemplate": "%{text}<extra></extra>",
                "marker": {"symbol": "diamond", "size": 10, "color": DOSE_COLOUR},
                "xaxis": "x",
                "yaxis": "y2",
            }
        )
    if tl.other_drugs:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "Premedication or rescue (mg)",
                "x": _iso([m.at for m in tl.other_drugs]),
                "y": [m.value for m in tl.other_drugs],
                "text": [_hover(m.label) for m in tl.other_drugs],
                "hovertemplate": "%{text}<extra></extra>",
                "marker": {"symbol": "square-open", "size": 9, "color": OTHER_DRUG_COLOUR},
                "xaxis": "x",
                "yaxis": "y2",
            }
        )
    if tl.concentration is not None:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": _hover(tl.concentration.name),
                "x": _iso(tl.concentration.times),
                "y": list(tl.concentration.values),
                "line": {"color": CONC_COLOUR, "dash": "dash"},
                "xaxis": "x",
                "yaxis": "y3",
            }
        )
    layout = {
        "template": "plotly_white",
        "height": 560,
        "margin": {"l": 60, "r": 70, "t": 30, "b": 50},
        "hovermode": "closest",
        "legend": {"orientation": "h", "y": -0.14},
        "xaxis": {"type": "date", "anchor": "y2", "title": {"text": f"Clinic time ({tl.zone})"}},
        "yaxis": {"domain": [0.45, 1.0], "title": {"text": "Vital signs"}, "range": [0, top * 1.04]},
        "yaxis2": {
            "domain": [0.0, 0.36],
            "anchor": "x",
            "title": {"text": "mg/h · mg"},
            "rangemode": "tozero",
        },
        "yaxis3": {
            "overlaying": "y2",
            "side": "right",
            "anchor": "x",
            "title": {"text": "ng/mL"},
            "rangemode": "tozero",
            "showgrid": False,
        },
        "shapes": shapes,
    }
    return {"data": data, "layout": layout}


# --- the report sections ----------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    widths: tuple[float, ...]  # relative column widths for the PDF
    empty: str = "None."


@dataclass(frozen=True)
class Section:
    key: str  # the HTML id
    title: str
    facts: tuple[tuple[str, str], ...] = ()
    table: Table | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Signature:
    role: str
    name: str
    at: str | None

    @property
    def signed(self) -> bool:
        return self.at is not None


@dataclass(frozen=True)
class Report:
    session_id: int
    title: str
    clinic: str
    patient_name: str
    record_number: str
    date: str
    zone: str
    drug: str
    route: str
    status: str
    sections: tuple[Section, ...]
    signatures: tuple[Signature, ...]
    report_sha256: str | None
    changed_since_signed: bool
    signable: bool
    prediction_note: str

    @property
    def signed(self) -> bool:
        return any(s.signed for s in self.signatures)

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)


class _Clock:
    """Clinic-local times: HH:MM on the session's day, the date too on any other day."""

    def __init__(self, zone: str, day: dt.date) -> None:
        self.tz = zoneinfo.ZoneInfo(zone)
        self.day = day

    def __call__(self, value: dt.datetime | None) -> str:
        if value is None:
            return "—"
        local = _aware(value).astimezone(self.tz)
        return local.strftime("%H:%M") if local.date() == self.day else local.strftime("%Y-%m-%d %H:%M")


def _who(v: SessionView, user_id: int | None) -> str:
    if user_id is None:
        return "—"
    return v.staff.get(user_id, f"user #{user_id}")


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _session_section(v: SessionView, clock: _Clock) -> Section:
    s = v.session
    facts = [
        ("Patient", f"{v.patient_name} ({v.record_number})"),
        ("Session", f"#{s.number} of plan {s.plan_id} · {v.booked.protocol_name}"),
        ("Route and drug", f"{ROUTE_LABELS.get(s.route, s.route)} · {s.drug}"),
        (
            "Planned",
            (f"{_num(s.planned_dose_mg)} mg" if s.planned_dose_mg is not None else "dose by weight")
            + f" over {s.planned_duration_min} min"
            + f" · product {_num(s.concentration_mg_per_ml)} mg/mL",
        ),
        ("Weight today", f"{_num(s.weight_kg)} kg" if s.weight_kg is not None else "—"),
        ("Status", rules.STATE_LABELS[s.status]),
        ("Checked in", clock(s.checked_in_at)),
        ("Nurse", _who(v, s.nurse_id)),
        ("Prescriber", _who(v, s.prescriber_id)),
    ]
    if s.bp_decision_reason:
        facts.append(
            (
                "Pre-dose blood-pressure decision",
                f"{s.bp_decision_reason} ({_who(v, s.bp_decision_by_id)}, {clock(s.bp_decision_at)})",
            )
        )
    if s.abort_reason:
        facts.append(("Aborted", f"{clock(s.aborted_at)}: {s.abort_reason}"))
    return Section("summary", "Session", tuple(facts))


def _history_section(v: SessionView, clock: _Clock) -> Section:
    rows = tuple(
        (
            clock(t.at),
            rules.STATE_LABELS.get(t.from_status, t.from_status),
            rules.STATE_LABELS.get(t.to_status, t.to_status),
            _who(v, t.by_id) if t.by_id is not None else "system",
            t.reason or "",
        )
        for t in v.transitions
    )
    return Section(
        "history",
        "State history",
        table=Table(("When", "From", "To", "By", "Reason"), rows, (1.2, 1.6, 1.6, 1.6, 3.0)),
    )


def _precheck_section(v: SessionView, clock: _Clock) -> Section:
    p = v.precheck
    if p is None:
        return Section("prechecks", "Pre-checks", notes=("Pre-checks not completed.",))
    base = v.session.baseline or {}

    def b(kind: str) -> str:
        return _num(base.get(kind)) if kind in base else "—"

    facts = (
        ("Completed", f"{clock(p.completed_at)} by {_who(v, p.completed_by_id)}"),
        ("Weight", f"{_num(p.weight_kg)} kg"),
        (
            "Baseline",
            f"BP {b('sbp')}/{b('dbp')} mmHg · HR {b('hr')}/min · SpO2 {b('spo2')}% · RR {b('rr')}/min",
        ),
        ("Consent on file", _yes(p.consent_on_file)),
        (
            "ECG",
            ("required, " if p.ecg_required else "not required, ")
            + ("on file" if p.ecg_on_file else "not on file"),
        ),
        (
            "Liver tests",
            ("required, " if p.lft_required else "not required, ")
            + ("on file" if p.lft_on_file else "not on file"),
        ),
        ("Pregnancy test", PREGNANCY_LABELS.get(p.pregnancy_test, p.pregnancy_test)),
        ("Escort", f"{p.escort_name} ({p.escort_phone})" if p.escort_phone else p.escort_name),
        ("Pulse oximeter connected", _yes(p.oximeter_connected)),
        ("Prescriber on site", _who(v, p.prescriber_on_site_id)),
    )
    return Section("prechecks", "Pre-checks", facts)


def _amount(kind: str, rate: float | None, dose: float | None) -> str:
    if kind in ("start", "rate_change"):
        return f"{_num(rate, 2)} mg/h"
    if kind == "stop":
        return "0 mg/h"
    return f"{_num(dose, 2)} mg" if dose is not None else "—"


def _administration_section(v: SessionView, clock: _Clock) -> Section:
    rows = tuple(
        (
            clock(g.given_at),
            KIND_LABELS.get(g.kind, g.kind),
            g.drug,
            _amount(g.kind, g.rate_mg_per_h, g.dose_mg),
            g.lot or "—",
            g.product or "—",
            _who(v, g.recorded_by_id),
            "; ".join(
                x
                for x in (
                    g.reason or "",
                    f"Dose override by {_who(v, g.override_by_id)}: {g.override_reason}"
                    if g.override_reason
                    else "",
                )
                if x
            ),
        )
        for g in v.given
    )
    return Section(
        "given",
        "Administration record",
        table=Table(
            ("Time", "Kind", "Drug", "Rate / dose", "Lot", "Product", "By", "Reason"),
            rows,
            (1.0, 1.4, 1.2, 1.1, 1.0, 1.2, 1.3, 2.0),
            "Nothing given.",
        ),
    )


def _totals_section(v: SessionView, clock: _Clock) -> Section:
    t = v.totals
    s = v.session
    end = _end_of(v)
    since_first = (end - t.first_dose_at).total_seconds() / 60.0 if t.first_dose_at else None
    session_min = (end - _aware(s.checked_in_at)).total_seconds() / 60.0 if s.checked_in_at else None
    others = [g for g in v.given if g.kind in ("premedication", "rescue")]
    end_label = {rules.DISCHARGED: "discharge", rules.ABORTED: "abort"}.get(s.status, "now")
    facts = [
        (f"{s.drug.capitalize()} given", f"{_num(t.total_mg, 2)} mg"),
        ("Per kg", f"{_num(t.mg_per_kg, 3)} mg/kg" if t.mg_per_kg is not None else "— (no weight)"),
        ("Infusion duration", f"{_num(t.infusion_min)} min" if t.infusion_min else "— (no infusion)"),
        ("First dose", clock(t.first_dose_at)),
        (
            "End of dosing",
            clock(t.last_dose_at) if t.last_dose_at else ("running" if t.infusion_running else "—"),
        ),
        (
            f"First dose to {end_label}",
            f"{since_first:.0f} min" if since_first is not None else "—",
        ),
        (
            f"Check-in to {end_label}",
            f"{session_min:.0f} min" if session_min is not None else "—",
        ),
        (
            "Predicted plasma ketamine at the end",
            f"{_num(v.prediction.now_ng_per_ml)} ng/mL" if v.prediction.now_ng_per_ml is not None else "—",
        ),
        (
            "Premedication and rescue",
            "; ".join(f"{g.drug} {_num(g.dose_mg)} mg ({KIND_LABELS[g.kind].lower()})" for g in others)
            or "none",
        ),
    ]
    return Section("totals", "Totals", tuple(facts), notes=(f"Prediction: {v.prediction.reason}",))


def _scores_section(v: SessionView, clock: _Clock) -> Section:
    scales = session_rules().scales
    rows = tuple(
        (
            clock(x.observed_at),
            scales[x.scale].name if x.scale in scales else x.scale,
            PHASE_LABELS.get(x.phase, x.phase),
            " ".join(str(i) for i in x.items),
            str(x.total),
        )
        for x in v.scores
    )
    notes = tuple(
        f"{sc.name}: {sc.note} Source: {sc.sourced.source} [{sc.sourced.tag}]"
        for key, sc in scales.items()
        if any(x.scale == key for x in v.scores)
    )
    return Section(
        "scores",
        "Scores",
        table=Table(
            ("Time", "Scale", "Phase", "Items", "Total"), rows, (1.0, 2.6, 1.0, 2.0, 0.8), "No scores."
        ),
        notes=notes,
    )


def _alarm_value(rule_key: str, value: float, threshold: float) -> str:
    kinds = {a.key: a.kind for a in session_rules().alarms}
    if kinds.get(rule_key) == "rise_pct":
        return f"{_num(value)} (limit: baseline +{_num(threshold)}%)"
    return f"{_num(value)} (limit {_num(threshold)})"


def _alarms_section(v: SessionView, clock: _Clock) -> Section:
    def step(at: dt.datetime | None, by: int | None, note: str | None) -> str:
        if at is None:
            return "—"
        return f"{clock(at)} {_who(v, by)}" + (f": {note}" if note else "")

    rows = tuple(
        (
            clock(a.observed_at),
            a.message,
            a.severity,
            _alarm_value(a.rule_key, a.value, a.threshold),
            a.status,
            step(a.acknowledged_at, a.acknowledged_by_id, a.acknowledge_note),
            step(a.resolved_at, a.resolved_by_id, a.resolve_note),
            clock(a.escalated_at) if a.escalated_at else "no",
        )
        for a in v.alarms
    )
    return Section(
        "alarms",
        "Alarms",
        table=Table(
            ("Raised", "Alarm", "Severity", "Value", "Status", "Acknowledged", "Resolved", "Escalated"),
            rows,
            (0.9, 2.4, 0.9, 1.3, 1.1, 1.7, 1.7, 1.1),
            "No alarms.",
        ),
    )


def _ae_section(v: SessionView, clock: _Clock) -> Section:
    grades = dict(session_rules().ctcae_grades)
    rows = []
    for a in v.adverse_events:
        if a.reviewed_at is not None:
            review = f"{clock(a.reviewed_at)} {_who(v, a.reviewed_by_id)}: {a.review_note or ''}".strip()
        else:
            review = "needed, not yet done" if a.needs_review else "not needed"
        actions = ", ".join(x.replace("_", " ") for x in a.actions) or "none"
        if a.medication_given:
            actions += f" ({a.medication_given})"
        rows.append(
            (
                clock(a.onset_at),
                a.term + (f" — {a.description}" if a.description else ""),
                f"{a.grade}: {grades.get(a.grade, '')}",
                _yes(a.serious),
                actions,
                a.outcome.replace("_", " "),
                review,
            )
        )
    knowledge = session_rules()
    return Section(
        "ae",
        "Adverse events",
        table=Table(
            ("Onset", "Event", "CTCAE grade", "Serious", "Actions", "Outcome", "Review"),
            tuple(rows),
            (0.9, 2.2, 2.6, 0.8, 1.6, 1.1, 1.8),
            "No adverse events.",
        ),
        notes=(f"Grades: {knowledge.ctcae.source} [{knowledge.ctcae.tag}]",),
    )


def _discharge_section(v: SessionView, clock: _Clock) -> Section:
    s = v.session
    rows = tuple(
        (c.label, "met" if c.ok else "NOT MET", c.detail, f"{c.source} [{c.tag}]") for c in v.checklist
    )
    facts: list[tuple[str, str]] = []
    if s.discharged_at is not None:
        facts.append(("Discharged", f"{clock(s.discharged_at)} by {_who(v, s.discharged_by_id)}"))
    if s.discharge_override_reason:
        facts.append(
            (
                "Prescriber override",
                f"{s.discharge_override_reason} ({_who(v, s.discharge_override_by_id)})",
            )
        )
    checks = s.discharge_checks or {}
    if checks.get("at"):
        confirmed = [
            label
            for key, label in (
                ("alert_and_oriented", "alert and oriented"),
                ("escort_present", "escort present"),
                ("instructions_given", "written instructions given"),
            )
            if checks.get(key)
        ]
        facts.append(("Nurse confirmed", ", ".join(confirmed) or "nothing yet"))
    notes = () if v.checklist else ("The discharge checklist applies from recovery on.",)
    return Section(
        "discharge",
        "Discharge checklist",
        tuple(facts),
        Table(("Criterion", "Met", "Detail", "Source"), rows, (2.4, 0.8, 2.0, 3.4), "—"),
        notes,
    )


def _billing_section(v: SessionView) -> Section:
    known = billing_codes()
    rows = []
    for code, units in v.billing:
        c = known.get(code)
        rows.append(
            (
                code,
                str(units),
                c.label if c else "",
                c.rule if c else "",
                f"{c.sourced.source} [{c.sourced.tag}]" if c else "",
            )
        )
    basis = (
        f"Counted from the actual infusion time ({_num(v.totals.infusion_min)} min)."
        if v.session.route == "iv_infusion"
        else f"Counted from the route ({ROUTE_LABELS.get(v.session.route, v.session.route)}) and the dose."
    )
    return Section(
        "billing",
        "Billing units",
        table=Table(
            ("Code", "Units", "Description", "Rule", "Source"),
            tuple(rows),
            (0.8, 0.6, 2.6, 3.4, 1.6),
            "No billable units yet.",
        ),
        notes=(basis,),
    )


def build(v: SessionView, clinic_name: str, current_digest: str) -> Report:
    """Everything the report states. ``current_digest`` is ``service.report_digest(v)``: a
    report signed over a different digest has changed since it was signed."""
    s = v.session
    tz = zoneinfo.ZoneInfo(v.zone)
    day_at = s.started_at or s.checked_in_at or v.booked.starts_at
    day = _aware(day_at).astimezone(tz).date()
    clock = _Clock(v.zone, day)
    sections = (
        _session_section(v, clock),
        _history_section(v, clock),
        _precheck_section(v, clock),
        _administration_section(v, clock),
        _totals_section(v, clock),
        _scores_section(v, clock),
        _alarms_section(v, clock),
        _ae_section(v, clock),
        _discharge_section(v, clock),
        _billing_section(v),
    )

    def full(value: dt.datetime | None) -> str | None:
        return None if value is None else _aware(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")

    signatures = (
        Signature("Nurse", _who(v, s.nurse_signed_by_id), full(s.nurse_signed_at)),
        Signature("Prescriber", _who(v, s.prescriber_signed_by_id), full(s.prescriber_signed_at)),
    )
    return Report(
        session_id=s.id,
        title=f"Session report #{s.id}",
        clinic=clinic_name,
        patient_name=v.patient_name,
        record_number=v.record_number,
        date=day.isoformat(),
        zone=v.zone,
        drug=s.drug,
        route=ROUTE_LABELS.get(s.route, s.route),
        status=rules.STATE_LABELS[s.status],
        sections=sections,
        signatures=signatures,
        report_sha256=s.report_sha256,
        changed_since_signed=s.report_sha256 is not None and s.report_sha256 != current_digest,
        signable=s.status in (rules.DISCHARGED, rules.ABORTED),
        prediction_note=v.prediction.reason,
    )
