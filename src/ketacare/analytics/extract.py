"""The registry extract: one read-only pass over the tables the registry needs, into pandas
frames. This is the one place that reads across features' tables (read-only, through the shared
metadata, never their model classes): a warehouse extract whose frames are also what the
de-identified Parquet export writes, so that DuckDB can run the same aggregates over it."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from ketacare import models

FRAMES = ("patients", "series", "sessions", "adverse_events", "scores", "follow_ups", "mme", "diary")


@dataclass
class Extract:
    patients: pd.DataFrame
    series: pd.DataFrame
    sessions: pd.DataFrame
    adverse_events: pd.DataFrame
    scores: pd.DataFrame
    follow_ups: pd.DataFrame
    mme: pd.DataFrame
    diary: pd.DataFrame

    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in FRAMES}


def _t(name: str) -> Table:
    return models.metadata.tables[name]


def _frame(db: Session, query: object, columns: list[str]) -> pd.DataFrame:
    rows = db.execute(query).all()  # type: ignore[call-overload]
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def extract(db: Session, clinic_id: int | None) -> Extract:
    """Everything the registry reads, for one clinic (``None``: every clinic)."""

    def scoped(table: Table, query: object) -> object:
        return query if clinic_id is None else query.where(table.c.clinic_id == clinic_id)  # type: ignore[attr-defined]

    p, tp, ts = _t("patients"), _t("treatment_plans"), _t("treatment_sessions")
    ae, sc, fu = _t("adverse_events"), _t("outcome_scores"), _t("outcome_follow_ups")
    mm, di = _t("outcome_mme"), _t("outcome_diary")
    patients = _frame(
        db,
        scoped(p, select(p.c.id, p.c.clinic_id, p.c.date_of_birth, p.c.sex, p.c.postal_code, p.c.state)),
        ["patient_id", "clinic_id", "date_of_birth", "sex", "postal_code", "state"],
    )
    series = _frame(
        db,
        scoped(
            tp,
            select(
                tp.c.id,
                tp.c.clinic_id,
                tp.c.patient_id,
                tp.c.purpose,
                tp.c.status,
                tp.c.protocol_key,
                tp.c.route,
                tp.c.indication,
                tp.c.sessions,
                tp.c.start_date,
            ),
        ),
        [
            "plan_id",
            "clinic_id",
            "patient_id",
            "purpose",
            "plan_status",
            "protocol",
            "route",
            "condition",
            "planned_sessions",
            "planned_start",
        ],
    )
    sessions = _frame(
        db,
        scoped(
            ts, select(ts.c.id, ts.c.clinic_id, ts.c.patient_id, ts.c.plan_id, ts.c.status, ts.c.started_at)
        ),
        ["session_id", "clinic_id", "patient_id", "plan_id", "status", "started_at"],
    )
    adverse = _frame(
        db,
        scoped(
            ae,
            select(
                ae.c.id,
                ae.c.clinic_id,
                ae.c.patient_id,
                ae.c.session_id,
                ae.c.term_key,
                ae.c.term,
                ae.c.grade,
                ae.c.serious,
                ae.c.needed_intervention,
                ae.c.onset_at,
            ),
        ),
        [
            "ae_id",
            "clinic_id",
            "patient_id",
            "session_id",
            "term_key",
            "term",
            "grade",
            "serious",
            "needed_intervention",
            "onset_at",
        ],
    )
    scores = _frame(
        db,
        scoped(
            sc,
            select(
                sc.c.id,
                sc.c.clinic_id,
                sc.c.patient_id,
                sc.c.follow_up_id,
                sc.c.instrument,
                sc.c.timepoint,
                sc.c.score,
                sc.c.answered_at,
                fu.c.series_end_on,
                fu.c.days_after_series,
            ).join(fu, fu.c.id == sc.c.follow_up_id),
        ),
        [
            "score_id",
            "clinic_id",
            "patient_id",
            "follow_up_id",
            "instrument",
            "timepoint",
            "score",
            "answered_at",
            "series_end_on",
            "days_after_series",
        ],
    )
    follow_ups = _frame(
        db,
        scoped(
            fu,
            select(
                fu.c.id,
                fu.c.clinic_id,
                fu.c.patient_id,
                fu.c.timepoint,
                fu.c.days_after_series,
                fu.c.series_end_on,
                fu.c.due_on,
                fu.c.status,
                fu.c.completed_at,
            ),
        ),
        [
            "follow_up_id",
            "clinic_id",
            "patient_id",
            "timepoint",
            "days_after_series",
            "series_end_on",
            "due_on",
            "status",
            "completed_at",
        ],
    )
    mme = _frame(
        db,
        scoped(mm, select(mm.c.id, mm.c.clinic_id, mm.c.patient_id, mm.c.measured_on, mm.c.mme_per_day)),
        ["mme_id", "clinic_id", "patient_id", "measured_on", "mme_per_day"],
    )
    diary = _frame(
        db,
        scoped(di, select(di.c.id, di.c.clinic_id, di.c.patient_id, di.c.nrs, di.c.flare, di.c.recorded_at)),
        ["diary_id", "clinic_id", "patient_id", "nrs", "flare", "recorded_at"],
    )
    return Extract(patients, series, sessions, adverse, scores, follow_ups, mme, diary)
