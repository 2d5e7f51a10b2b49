"""De-identification for research (HIPAA Safe Harbor rules, 45 CFR 164.514(b)(2), as the
knowledge file sources them): names, contact details, record numbers and free text are never
extracted or are dropped; every identifier becomes a stable keyed pseudonym; dates are shifted
per patient by a keyed offset (intervals within a patient are kept); ages over 89 are grouped;
ZIP codes keep 3 digits, or 000 where the 3-digit area is small. Written as Parquet with a data
dictionary.

The keys derive from ``settings.secret_key``: without it neither a pseudonym nor a shift can be
recomputed, and the same key gives the same pseudonyms in every export (stable across releases).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ketacare.analytics.extract import Extract
from ketacare.knowledge.outcomes import outcome_rules, registry_definitions


def _key(secret_key: str, purpose: str) -> bytes:
    return hashlib.sha256(f"ketacare-deid:{purpose}:{secret_key}".encode()).digest()


def pseudonym(secret_key: str, kind: str, value: int) -> str:
    """A stable pseudonym (keyed HMAC-SHA256, 16 hex characters) for a record id."""
    digest = hmac.new(_key(secret_key, "pseudonym"), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind[0]}{digest[:16]}"


def shift_days(secret_key: str, patient_id: int) -> int:
    """The patient's date offset: 1 to ``shift_max_days`` days, earlier or later, from a keyed hash."""
    limit = outcome_rules().shift_max_days
    h = int.from_bytes(
        hmac.new(_key(secret_key, "shift"), str(patient_id).encode(), hashlib.sha256).digest()[:8]
    )
    magnitude = h % limit + 1
    return magnitude if (h >> 32) & 1 else -magnitude


def zip3(postal_code: str | None) -> str:
    """The first 3 digits, or 000 for a restricted (small-population) 3-digit area or no valid ZIP."""
    digits = (postal_code or "").strip()[:3]
    if len(digits) != 3 or not digits.isdigit() or digits in outcome_rules().restricted_zip3:
        return "000"
    return digits


def age_group(date_of_birth: dt.date, on: dt.date) -> str:
    """Age in whole years on ``on``; over 89 becomes "90+"."""
    age = on.year - date_of_birth.year - int((on.month, on.day) < (date_of_birth.month, date_of_birth.day))
    return f"{outcome_rules().max_age + 1}+" if age > outcome_rules().max_age else str(age)


def _as_date(value: Any) -> dt.date | None:
    if value is None or value is pd.NaT or (not isinstance(value, dt.date) and pd.isna(value)):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    day: dt.date = pd.Timestamp(value).date()
    return day


@dataclass
class Dataset:
    frames: dict[str, pd.DataFrame]
    dictionary: pd.DataFrame

    def rows(self) -> int:
        return sum(len(f) for f in self.frames.values())

    def write(self, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, frame in self.frames.items():
            path = out / f"{name}.parquet"
            frame.to_parquet(path, index=False, engine="pyarrow")
            written.append(path)
        path = out / "data_dictionary.csv"
        self.dictionary.to_csv(path, index=False)
        written.append(path)
        return written


# table -> (column, source column or None, rule, description)
ID = "keyed pseudonym (HMAC-SHA256 of the record id)"
SHIFT = "date shifted by the patient's keyed offset"
SPEC: dict[str, list[tuple[str, str, str, str]]] = {
    "patients": [
        ("patient", "patient_id", ID, "the patient"),
        ("clinic", "clinic_id", ID, "the clinic"),
        ("sex", "sex", "kept", "sex as recorded"),
        ("state", "state", "kept (a state is allowed)", "US state"),
        ("zip3", "postal_code", "first 3 ZIP digits; 000 for the 17 restricted areas", "3-digit ZIP area"),
        ("age_at_index", "date_of_birth", "age in years at the first session; over 89 grouped as 90+", "age"),
        ("as_of", "as_of", SHIFT, "the export's day: compare with the patient's dates for 'due by then'"),
    ],
    "series": [
        ("series", "plan_id", ID, "a treatment plan (series or booster)"),
        ("patient", "patient_id", ID, "the patient"),
        ("clinic", "clinic_id", ID, "the clinic"),
        ("purpose", "purpose", "kept", "series or booster"),
        ("plan_status", "plan_status", "kept", "plan status"),
        ("protocol", "protocol", "kept (library key)", "protocol"),
        ("route", "route", "kept", "route of administration"),
        ("condition", "condition", "kept (from the condition list)", "indication"),
        ("planned_sessions", "planned_sessions", "kept", "sessions planned"),
        ("planned_start", "planned_start", SHIFT, "planned first day"),
        ("first_on", "first_on", SHIFT, "day of the first discharged session (the series starts)"),
        ("last_on", "last_on", SHIFT, "day of the last discharged session (the series ends)"),
        ("period", "period", "kept (from the true day)", "quarter the series started (the report's period)"),
        (
            "baseline_lookback_days",
            "baseline_lookback_days",
            "kept",
            "the clinic's baseline look-back (days before the series start)",
        ),
    ],
    "sessions": [
        ("session", "session_id", ID, "a treatment session"),
        ("patient", "patient_id", ID, "the patient"),
        ("series", "plan_id", ID, "its plan"),
        ("status", "status", "kept", "session status"),
        ("started_on", "started_at", SHIFT + "; time of day dropped", "day the session started"),
    ],
    "adverse_events": [
        ("adverse_event", "ae_id", ID, "an adverse event"),
        ("patient", "patient_id", ID, "the patient"),
        ("session", "session_id", ID, "its session (blank: outside a session)"),
        ("term_key", "term_key", "kept (catalogue key; the free-text term is dropped)", "AE term"),
        ("grade", "grade", "kept", "CTCAE grade"),
        ("serious", "serious", "kept", "serious adverse event"),
        ("needed_intervention", "needed_intervention", "kept", "needed medical intervention"),
        ("onset_on", "onset_at", SHIFT + "; time of day dropped", "onset day"),
    ],
    "scores": [
        ("patient", "patient_id", ID, "the patient"),
        ("follow_up", "follow_up_id", ID, "the questionnaire"),
        ("series", "plan_id", ID, "the series the follow-up belongs to (blank: baseline, end of session)"),
        ("instrument", "instrument", "kept", "nrs, peg, pgic, bladder, bpi_sf"),
        ("timepoint", "timepoint", "kept", "baseline, day_1, week_4, month_n ..."),
        ("score", "score", "kept", "instrument score (see knowledge/data/outcomes.toml)"),
        ("answered_on", "answered_at", SHIFT + "; time of day dropped", "day answered"),
        ("series_end_on", "series_end_on", SHIFT, "end of the series the follow-up belongs to"),
        ("days_after_series", "days_after_series", "kept (an interval)", "scheduled day after the series"),
    ],
    "follow_ups": [
        ("follow_up", "follow_up_id", ID, "the questionnaire"),
        ("patient", "patient_id", ID, "the patient"),
        ("series", "plan_id", ID, "the series it follows (blank: baseline, end of session)"),
        ("timepoint", "timepoint", "kept", "timepoint"),
        ("days_after_series", "days_after_series", "kept (an interval)", "scheduled day after the series"),
        ("series_end_on", "series_end_on", SHIFT, "end of the series"),
        ("due_on", "due_on", SHIFT, "due day"),
        ("status", "status", "kept", "scheduled, sent, completed, cancelled"),
        ("completed_on", "completed_at", SHIFT + "; time of day dropped", "day completed"),
    ],
    "mme": [
        ("patient", "patient_id", ID, "the patient"),
        ("measured_on", "measured_on", SHIFT, "day of the reading"),
        (
            "mme_per_day",
            "mme_per_day",
            "kept",
            "opioid load, CDC 2022 MME/day (blank: an opioid without factor)",
        ),
    ],
    "diary": [
        ("patient", "patient_id", ID, "the patient"),
        ("nrs", "nrs", "kept", "pain 0-10"),
        ("flare", "flare", "kept", "a flare"),
        (
            "recorded_on",
            "recorded_at",
            SHIFT + "; time of day dropped; the note (free text) is dropped",
            "day",
        ),
    ],
}
KINDS = {"patient_id": "patient", "clinic_id": "clinic", "plan_id": "series", "session_id": "session",
         "ae_id": "adverse", "follow_up_id": "follow"}  # fmt: skip


def _with_series_periods(ex: Extract, as_of: dt.date) -> dict[str, pd.DataFrame]:
    """The frames, the series with their first and last discharged session days, quarter and
    baseline look-back, and the patients with the export's day: what reproducing the report
    needs beyond the rows themselves."""
    sources = dict(ex.frames())
    done = ex.sessions[(ex.sessions["status"] == "discharged") & ex.sessions["started_at"].notna()]
    days: dict[int, list[dt.date]] = {}
    for plan_id, started in zip(done["plan_id"], done["started_at"], strict=True):
        day = _utc_day(started)
        days.setdefault(int(plan_id), []).append(day)
    lookback = {
        int(c): int(v)
        for c, v in zip(ex.settings["clinic_id"], ex.settings["baseline_lookback_days"], strict=True)
        if v is not None and not pd.isna(v)
    }
    series = ex.series.copy()
    first = [min(days[int(p)]) if int(p) in days else None for p in series["plan_id"]]
    series["first_on"] = first
    series["last_on"] = [max(days[int(p)]) if int(p) in days else None for p in series["plan_id"]]
    series["period"] = [None if d is None else f"{d.year}-Q{(d.month - 1) // 3 + 1}" for d in first]
    series["baseline_lookback_days"] = [
        lookback.get(int(c), registry_definitions().baseline_lookback_days) for c in series["clinic_id"]
    ]
    sources["series"] = series
    sources["patients"] = ex.patients.assign(as_of=as_of)
    return sources


def _utc_day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).date()
    day = _as_date(value)
    assert day is not None
    return day


def deidentify(ex: Extract, secret_key: str, as_of: dt.date | None = None) -> Dataset:
    """``as_of``: the export's day (today), for 'due by then' (shifted with each patient)."""
    shifts: dict[int, int] = {}

    def shift_of(pid: int) -> int:
        if pid not in shifts:
            shifts[pid] = shift_days(secret_key, pid)
        return shifts[pid]

    first_session: dict[int, dt.date] = {}
    for pid, started in zip(ex.sessions["patient_id"], ex.sessions["started_at"], strict=True):
        day = _as_date(started)
        if day is not None and (int(pid) not in first_session or day < first_session[int(pid)]):
            first_session[int(pid)] = day
    today = dt.datetime.now(dt.UTC).date()
    frames: dict[str, pd.DataFrame] = {}
    sources = _with_series_periods(ex, as_of or today)

    def convert(rule: str, source: str, value: Any, pid: int) -> Any:
        if rule == ID:
            return (
                None if value is None or pd.isna(value) else pseudonym(secret_key, KINDS[source], int(value))
            )
        if rule.startswith(SHIFT):
            day = _as_date(value)
            return None if day is None else day + dt.timedelta(days=shift_of(pid))
        if source == "postal_code":
            return zip3(value)
        if source == "date_of_birth":
            born = _as_date(value)
            return None if born is None else age_group(born, first_session.get(pid, today))
        if value is not None and not isinstance(value, str) and pd.isna(value):
            return None
        return value

    for table, spec in SPEC.items():
        src = sources[table]
        pids = [int(p) for p in src["patient_id"]]
        columns = {
            column: [convert(rule, source, v, p) for v, p in zip(src[source], pids, strict=True)]
            for column, source, rule, _ in spec
        }
        frames[table] = pd.DataFrame(columns, columns=[c for c, *_ in spec])
    dictionary = pd.DataFrame(
        [(t, c, rule, desc) for t, spec in SPEC.items() for c, _, rule, desc in spec],
        columns=["table", "column", "rule", "description"],
    )
    return Dataset(frames, dictionary)
