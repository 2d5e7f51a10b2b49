"""A hand-made registry extract of four patients, with the expected figures worked out by hand."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from ketacare.analytics.extract import Extract

START = dt.date(2026, 1, 1)
END = dt.date(2026, 1, 5)  # five daily sessions
AS_OF = dt.date(2026, 6, 1)


def _at(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 10, 0, tzinfo=dt.UTC)


def cohort() -> Extract:
    patients = pd.DataFrame(
        [(p, 1, dt.date(1970, 1, 1), "female", "02139", "MA") for p in (1, 2, 3, 4)],
        columns=["patient_id", "clinic_id", "date_of_birth", "sex", "postal_code", "state"],
    )
    series = pd.DataFrame(
        [
            (10 + p, 1, p, "series", "scheduled", "five_day", "iv_infusion", cond, 5, START)
            for p, cond in ((1, "CRPS"), (2, "CRPS"), (3, "CRPS"), (4, "Fibromyalgia"))
        ],
        columns=[
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
    sessions = []
    for p in (1, 2, 3, 4):
        for n in range(5):
            status = "aborted" if (p == 4 and n == 4) else "discharged"
            sessions.append((100 * p + n, 1, p, 10 + p, status, _at(START + dt.timedelta(days=n))))
    sessions_df = pd.DataFrame(
        sessions, columns=["session_id", "clinic_id", "patient_id", "plan_id", "status", "started_at"]
    )
    adverse = pd.DataFrame(
        [
            (1, 1, 1, 100, "nausea", "Nausea", 1, False, False, _at(START)),
            (2, 1, 2, 201, "hypertension", "Hypertension", 2, False, True, _at(START)),
        ],
        columns=[
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
    nrs = {  # patient: baseline, then (day after series, NRS)
        1: (8, [(7, 3), (28, 4), (56, 7), (84, 8)]),
        2: (6, [(28, 4), (56, 4)]),
        3: (5, [(28, 5)]),
        4: (7, [(28, 6)]),
    }
    pgic = {1: 2, 2: 3, 3: 4, 4: 1}
    scores, follow_ups, fid = [], [], 0
    for p, (base, points) in nrs.items():
        fid += 1
        scores.append(
            (
                fid,
                1,
                p,
                fid,
                "nrs",
                "baseline",
                float(base),
                _at(START - dt.timedelta(days=2)),
                None,
                None,
                None,
            )
        )
        for day, value in points:
            fid += 1
            on = END + dt.timedelta(days=day)
            scores.append((fid, 1, p, fid, "nrs", f"d{day}", float(value), _at(on), END, day, 10 + p))
            if day == 28:
                scores.append(
                    (1000 + fid, 1, p, fid, "pgic", f"d{day}", float(pgic[p]), _at(on), END, day, 10 + p)
                )
        if p != 4:  # patient 4 has no follow-up schedule
            for day in (28, 56, 84):
                follow_ups.append(
                    (
                        5000 + 10 * p + day,
                        1,
                        p,
                        10 + p,
                        f"d{day}",
                        day,
                        END,
                        END + dt.timedelta(days=day),
                        "completed" if any(d == day for d, _ in points) else "sent",
                        None,
                    )
                )
    mme = pd.DataFrame(
        [
            (1, 1, 1, START - dt.timedelta(days=1), 60.0),
            (2, 1, 1, END + dt.timedelta(days=40), 30.0),
            (3, 1, 2, START - dt.timedelta(days=1), 90.0),
            (4, 1, 2, END + dt.timedelta(days=40), 90.0),
            (5, 1, 3, START - dt.timedelta(days=1), 30.0),
            (6, 1, 3, END + dt.timedelta(days=40), 20.0),
        ],
        columns=["mme_id", "clinic_id", "patient_id", "measured_on", "mme_per_day"],
    )
    return Extract(
        patients=patients,
        series=series,
        sessions=sessions_df,
        adverse_events=adverse,
        scores=pd.DataFrame(
            scores,
            columns=[
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
                "plan_id",
            ],
        ),
        follow_ups=pd.DataFrame(
            follow_ups,
            columns=[
                "follow_up_id",
                "clinic_id",
                "patient_id",
                "plan_id",
                "timepoint",
                "days_after_series",
                "series_end_on",
                "due_on",
                "status",
                "completed_at",
            ],
        ),
        mme=mme,
        diary=pd.DataFrame(columns=["diary_id", "clinic_id", "patient_id", "nrs", "flare", "recorded_at"]),
    )
