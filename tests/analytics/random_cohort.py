"""A random registry cohort written into a database, with the cases the definitions turn on:
several series per patient (the next one censors the last), aborted and unfinished sessions,
end-of-session scores, baselines inside and outside the look-back (one clinic with a look-back of
its own), follow-ups of a series and unattached ones, PGIC on the primary day, ties on a day,
cancelled follow-ups, unknown MME, adverse events outside a session, two clinics."""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import Connection, insert

from ketacare import models

BASE_ID = 900_000
CONDITIONS = ("CRPS", "Fibromyalgia", "", None)
ROUTES = ("iv_infusion", "intranasal")
PROTOCOLS = ("five_day", "booster")
AE_TERMS = (("nausea", "Nausea"), ("dizziness", "Dizziness"))


def _at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


def fill(conn: Connection, seed: int, patients: int = 40) -> list[int]:
    """Writes the cohort (ids from ``BASE_ID``); returns its two clinics' ids."""
    rng = random.Random(seed)
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    clinics = [BASE_ID + 1, BASE_ID + 2]
    rows: dict[str, list[dict[str, object]]] = {
        t: []
        for t in (
            "clinics",
            "users",
            "clinic_chairs",
            "patients",
            "treatment_plans",
            "plan_sessions",
            "treatment_sessions",
            "adverse_events",
            "outcome_follow_ups",
            "outcome_scores",
            "outcome_mme",
            "outcome_settings",
        )
    }
    for c in clinics:
        rows["clinics"].append(
            {"id": c, "name": f"Random {c}", "slug": f"random-{c}", "record_prefix": "RND",
             "time_zone": "UTC", "next_record_number": 1, "created_at": now}
        )  # fmt: skip
        rows["users"].append(
            {"id": c, "clinic_id": c, "username": f"random{c}", "full_name": "R", "role": "nurse",
             "password_hash": "x", "totp_enrolled": False}
        )  # fmt: skip
        rows["clinic_chairs"].append({"id": c, "clinic_id": c, "room": "R", "name": "C", "active": True})
    rows["outcome_settings"].append(
        {"id": BASE_ID + 1, "clinic_id": clinics[1], "schedule_days": [1, 7, 28], "monthly_every_days": 30,
         "monthly_until_days": 365, "link_valid_days": 7, "reminder_after_days": 2,
         "baseline_lookback_days": 7, "updated_at": now}
    )  # fmt: skip
    ids = {k: BASE_ID for k in ("plan", "session", "fu", "score", "ae", "mme")}

    def nid(kind: str) -> int:
        ids[kind] += 1
        return ids[kind]

    for p in range(BASE_ID + 1, BASE_ID + 1 + patients):
        clinic = rng.choice(clinics)
        rows["patients"].append(
            {"id": p, "clinic_id": clinic, "record_number": f"RND-{p}", "given_name": "G", "family_name": "F",
             "date_of_birth": dt.date(1970, 1, 1), "sex": "female", "created_at": now, "updated_at": now}
        )  # fmt: skip
        start = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 200))
        for _series in range(rng.randint(1, 3)):
            plan = nid("plan")
            rows["treatment_plans"].append(
                {"id": plan, "clinic_id": clinic, "patient_id": p, "purpose": "series", "status": "scheduled",
                 "protocol_key": rng.choice(PROTOCOLS), "protocol_version": 1, "protocol_snapshot": {},
                 "indication": rng.choice(CONDITIONS), "eligibility_status": "eligible",
                 "route": rng.choice(ROUTES), "dose": 0.35, "dose_unit": "mg/kg/h",
                 "session_duration_min": 60, "sessions": 5, "interval_days": 1, "start_date": start,
                 "end_date": start,
                 "preferred_time": "09:00", "concentration_mg_per_ml": 1.0, "premedication": [],
                 "weight_kg": 70, "weight_measured_on": start, "session_doses": [], "findings": [],
                 "created_at": now}
            )  # fmt: skip
            n_sessions = rng.randint(1, 5)
            for n in range(n_sessions):
                sid = nid("session")
                day = start + dt.timedelta(days=n)
                rows["plan_sessions"].append(
                    {"id": sid, "plan_id": plan, "clinic_id": clinic, "number": n + 1, "starts_at": _at(day),
                     "ends_at": _at(day, 11), "chair_id": clinic, "staff_id": clinic, "status": "booked"}
                )  # fmt: skip
                status = rng.choices(("discharged", "aborted", "in_progress"), (8, 1, 1))[0]
                rows["treatment_sessions"].append(
                    {"id": sid, "clinic_id": clinic, "patient_id": p, "plan_id": plan, "plan_session_id": sid,
                     "number": n + 1, "status": status, "route": "iv_infusion", "drug": "ketamine",
                     "planned_duration_min": 60, "concentration_mg_per_ml": 1.0, "baseline": {},
                     "discharge_checks": {},
                     "started_at": None if status == "in_progress" and rng.random() < 0.5 else _at(day, 23),
                     "version": 1}
                )  # fmt: skip
                for _ in range(rng.choice((0, 0, 0, 1, 2))):
                    rows["adverse_events"].append(
                        {"id": nid("ae"), "clinic_id": clinic, "patient_id": p,
                         "session_id": None if rng.random() < 0.1 else sid,
                         **dict(zip(("term_key", "term"), rng.choice(AE_TERMS), strict=True)),
                         "onset_at": _at(day),
                         "grade": rng.choice((1, 2, 3)), "serious": False,
                         "needed_intervention": rng.random() < 0.3, "actions": [], "outcome": "resolved",
                         "needs_review": False, "recorded_at": _at(day)}
                    )  # fmt: skip
            end = start + dt.timedelta(days=n_sessions - 1)
            baseline = rng.randint(3, 9)
            points = [-rng.randint(0, 45), 0, 1, 7, 14, 28, 28, 42, 56, 84, 90, 120, 150, 200]
            for day_no in sorted(rng.sample(points, rng.randint(2, len(points)))):
                fu = nid("fu")
                on = end + dt.timedelta(days=day_no)
                status = rng.choices(("completed", "sent", "cancelled"), (6, 2, 1))[0]
                rows["outcome_follow_ups"].append(
                    {"id": fu, "clinic_id": clinic, "patient_id": p,
                     "plan_id": None if day_no <= 0 or rng.random() < 0.05 else plan,
                     "timepoint": "baseline" if day_no < 0 else f"d{day_no}",
                     "days_after_series": None if day_no <= 0 else day_no,
                     "series_end_on": None if day_no <= 0 else end, "due_on": on,
                     "instruments": ["nrs"], "status": status, "draft": {},
                     "completed_at": _at(on) if status == "completed" else None, "created_at": now}
                )  # fmt: skip
                if status != "completed":
                    continue
                value = baseline if day_no <= 0 else rng.randint(0, 10)
                timepoint = (
                    rng.choice(("end_of_session", "x")) if day_no == 0
                    else "baseline" if day_no < 0 else f"d{day_no}"
                )  # fmt: skip
                for instrument, score in (
                    ("nrs", value),
                    ("nrs", rng.randint(0, 10)),
                    ("pgic", rng.randint(1, 7)),
                ):
                    if instrument == "nrs" and score != value and rng.random() < 0.7:
                        continue  # sometimes a second NRS on the same day (a tie)
                    rows["outcome_scores"].append(
                        {"id": nid("score"), "follow_up_id": fu, "clinic_id": clinic, "patient_id": p,
                         "instrument": instrument, "timepoint": timepoint, "score": float(score),
                         "answered_at": _at(on, rng.randint(0, 23))}
                    )  # fmt: skip
            for offset in (
                -rng.randint(0, 120),
                -rng.randint(0, 5),
                rng.randint(20, 60),
                rng.randint(28, 100),
            ):
                rows["outcome_mme"].append(
                    {"id": nid("mme"), "clinic_id": clinic, "patient_id": p,
                     "measured_on": (start if offset < 0 else end) + dt.timedelta(days=offset),
                     "mme_per_day": None if rng.random() < 0.1 else float(rng.choice((0, 15, 30, 60, 90))),
                     "unconverted": [], "benzodiazepine": False, "recorded_at": now}
                )  # fmt: skip
            start = end + dt.timedelta(days=rng.randint(20, 200))
    for table, values in rows.items():
        if values:
            conn.execute(insert(models.metadata.tables[table]), values)
    return clinics
