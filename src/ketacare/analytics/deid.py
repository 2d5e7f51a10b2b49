"""De-identified research datasets, by one of two methods of HIPAA 45 CFR 164.514 (each named
for what it is):

- ``safe_harbor`` (164.514(b)(2)): none of the 18 identifiers. Names, contact details, record
  numbers and free text are never extracted or are dropped; dates keep the year only; ages over
  89 are grouped as "90+"; ZIP codes keep 3 digits, 000 where the 3-digit area is restricted.
- ``limited`` (a limited data set, 164.514(e)): the same, except that dates are kept to the day,
  shifted per patient by a random offset (intervals within a patient survive). It may be
  released only under a data use agreement recorded in the app (``models.DataUseAgreement``);
  the export names it.

Pseudonyms and date offsets come from a random key made for each export (``new_export_key``)
and never stored: nothing the server holds for any other purpose (its secret key, its ids)
re-derives them, and two exports do not link (the same patient has different pseudonyms in
each). Within one export they are consistent across tables. Written as Parquet with a data
dictionary.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ketacare.analytics import disclosure
from ketacare.analytics.extract import Extract
from ketacare.exports import frame_csv
from ketacare.knowledge.outcomes import outcome_rules, registry_definitions
from ketacare.knowledge.protocols import ROUTES

METHODS = ("safe_harbor", "limited")


def new_export_key() -> str:
    """A key for one export (256 random bits): used, then discarded."""
    return secrets.token_hex(32)


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
    # NaT (a missing timestamp in a pandas column) is an instance of datetime: test it first
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

    method: str = "safe_harbor"
    agreement: str | None = None  # the data use agreement a limited data set is released under

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
        frame_csv(self.dictionary, path)
        written.append(path)
        path = out / "README.txt"
        path.write_text(method_statement(self.method, self.agreement), encoding="utf-8")
        written.append(path)
        return written


# table -> (column, source column or None, rule, description)
ID = "pseudonym (HMAC-SHA256 of the record id under a random key made for this export and discarded)"
SHIFT = "date shifted by the patient's offset"
YEAR = "year only (Safe Harbor)"
QUARTER = "kept (the quarter of the true day)"
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
        ("period", "period", QUARTER, "quarter the series started (the report's period)"),
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


def method_statement(method: str, agreement: str | None) -> str:
    """What the dataset is, in words, for its README."""
    if method == "limited":
        return (
            "KetaCare research dataset: a LIMITED DATA SET (HIPAA 45 CFR 164.514(e)).\n"
            f"Released under the data use agreement: {agreement}.\n"
            "Dates are kept to the day, shifted per patient by a random offset of up to "
            f"{outcome_rules().shift_max_days} days either way (intervals within a patient kept).\n"
            "Pseudonyms come from a random key made for this export and discarded: they do not "
            "link to any other export.\n"
        )
    return (
        "KetaCare research dataset: de-identified by the SAFE HARBOR method (HIPAA 45 CFR "
        "164.514(b)(2)).\nDates keep the year only; ages over 89 are grouped as 90+; ZIP codes "
        "keep 3 digits (000 where the area is restricted); no free text.\n"
        "Pseudonyms come from a random key made for this export and discarded: they do not "
        "link to any other export.\n"
    )


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


def deidentify(
    ex: Extract,
    secret_key: str | None = None,
    method: str = "safe_harbor",
    agreement: str | None = None,
    as_of: dt.date | None = None,
) -> Dataset:
    """``secret_key``: the export's own key (``new_export_key`` when omitted; pass one only to
    reproduce an export in a test). ``method``: ``safe_harbor`` or ``limited``. ``as_of``: the
    export's day (today), for 'due by then' (a year under Safe Harbor, shifted with each patient
    in a limited data set)."""
    if method not in METHODS:
        raise ValueError(f"unknown de-identification method {method!r}")
    if method == "limited" and not agreement:
        raise ValueError("a limited data set needs its data use agreement")
    secret_key = secret_key or new_export_key()
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
            if day is None:
                return None
            return day.year if method == "safe_harbor" else day + dt.timedelta(days=shift_of(pid))
        if rule == QUARTER:
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                return None
            # Safe Harbor: a quarter is an element of a date finer than the year
            return int(str(value)[:4]) if method == "safe_harbor" else str(value)
        if source == "postal_code":
            return zip3(value)
        if source == "date_of_birth":
            born = _as_date(value)
            return None if born is None else age_group(born, first_session.get(pid, today))
        if value is not None and not isinstance(value, str) and pd.isna(value):
            return None
        if isinstance(value, str):
            return _code(source, value)
        return value

    for table, spec in SPEC.items():
        src = sources[table]
        pids = [int(p) for p in src["patient_id"]]
        columns = {
            column: [convert(rule, source, v, p) for v, p in zip(src[source], pids, strict=True)]
            for column, source, rule, _ in spec
        }
        frames[table] = pd.DataFrame(columns, columns=[c for c, *_ in spec])
        if method == "safe_harbor":
            frames[table] = frames[table].rename(columns=_year_columns(spec))

    def rule_of(rule: str) -> str:
        return YEAR if method == "safe_harbor" and (rule.startswith(SHIFT) or rule == QUARTER) else rule

    dictionary = pd.DataFrame(
        [
            (t, _year_columns(spec).get(c, c) if method == "safe_harbor" else c, rule_of(rule), desc)
            for t, spec in SPEC.items()
            for c, _, rule, desc in spec
        ],
        columns=["table", "column", "rule", "description"],
    )
    return Dataset(frames, dictionary, method, agreement)


STATE = re.compile(r"^[A-Z]{2}$")


def _code(source: str, value: str) -> str:
    """A kept text column only as a code: anything else (free text typed where a code belongs)
    becomes "other (not coded)"."""
    if value == "":
        return value
    if source == "condition":
        return disclosure.coded(value, disclosure.conditions())
    if source == "route":
        return disclosure.coded(value, ROUTES)
    if source == "term_key":
        return disclosure.coded(value, disclosure.ae_terms() | {"other"})
    if source == "state":
        return value if STATE.match(value) else disclosure.OTHER
    return disclosure.coded(value)


def _year_columns(spec: list[tuple[str, str, str, str]]) -> dict[str, str]:
    """Safe Harbor: a date column holds a year, and says so (``started_on`` -> ``started_year``)."""
    return {
        c: c.removesuffix("_on").removesuffix("_start") + "_year"
        for c, _, rule, _ in spec
        if rule.startswith(SHIFT) or rule == QUARTER
    }
