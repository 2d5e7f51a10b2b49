"""Each registry definition on the hand-made cohort (cohort.py), changed one fact at a time, with
its source: IMMPACT (Dworkin 2008) for responders, the registry's own design defaults
(knowledge/data/outcomes.toml [definitions]) for look-backs and windows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from ketacare.analytics import registry
from ketacare.analytics.extract import Extract
from ketacare.knowledge.outcomes import registry_definitions
from tests.analytics.cohort import AS_OF, END, START, _at, cohort

DEF = registry_definitions()


def _all(ex: Extract) -> dict[str, Any]:
    report = registry.build(ex, AS_OF, research=False)
    return next(r for r in report.table("summary").rows if r["dimension"] == "all")


def _score(ex: Extract, patient: int, instrument: str, timepoint: str, day: dt.date, value: float,
           plan: int | None, follow_up: int) -> None:  # fmt: skip
    row = {"score_id": 90_000 + follow_up, "clinic_id": 1, "patient_id": patient, "follow_up_id": follow_up,
           "instrument": instrument, "timepoint": timepoint, "score": value, "answered_at": _at(day),
           "series_end_on": None, "days_after_series": None, "plan_id": plan}  # fmt: skip
    ex.scores = pd.concat([ex.scores, pd.DataFrame([row])], ignore_index=True)


def _move_baseline(days_before: int) -> Callable[[Extract], None]:
    def change(ex: Extract) -> None:
        base = (ex.scores["timepoint"] == "baseline") & (ex.scores["patient_id"] == 1)
        ex.scores.loc[base, "answered_at"] = _at(START - dt.timedelta(days=days_before))

    return change


def _earlier_series_follow_up(ex: Extract) -> None:
    # patient 1's only baseline is replaced by a follow-up of an earlier series, 3 days before
    ex.scores = ex.scores[~((ex.scores["timepoint"] == "baseline") & (ex.scores["patient_id"] == 1))]
    _score(ex, 1, "nrs", "month_3", START - dt.timedelta(days=3), 8.0, 999, 1)


@pytest.mark.parametrize(
    ("rule", "change", "evaluable"),
    [
        ("baseline inside the look-back counts", _move_baseline(DEF.baseline_lookback_days), 4),
        ("baseline older than the look-back does not", _move_baseline(DEF.baseline_lookback_days + 1), 3),
        ("a previous series' follow-up is never a baseline", _earlier_series_follow_up, 3),
    ],
)  # fmt: skip
def test_baseline(rule: str, change: Callable[[Extract], None], evaluable: int) -> None:
    ex = cohort()
    change(ex)
    assert _all(ex)["evaluable"] == evaluable, rule


def test_a_clinics_own_look_back_is_used() -> None:
    ex = cohort()
    ex.settings = pd.DataFrame([{"clinic_id": 1, "baseline_lookback_days": 1}])
    assert _all(ex)["evaluable"] == 0  # every baseline is two days before


def test_missing_counted_as_non_response_beside_complete_case() -> None:
    """IMMPACT responders (>= 30%): patient 1 and 2 respond; patient 3's week-4 answer is missing."""
    ex = cohort()
    ex.scores = ex.scores[~((ex.scores["patient_id"] == 3) & (ex.scores["timepoint"] == "d28"))]
    row = _all(ex)
    assert (row["evaluable"], row["primary_due"]) == (3, 4)
    assert row["responder30_pct"] == round(200 / 3, 1) and row["responder30_mnr_pct"] == 50.0
    # a primary window still open is not missing: as of day 40 nothing is due yet for patient 3
    early = registry.build(ex, END + dt.timedelta(days=40), research=False).table("summary").rows[0]
    assert (early["evaluable"], early["primary_due"]) == (3, 3)


def test_the_next_series_baseline_is_not_a_point_and_relief_is_censored_at_last_contact() -> None:
    """Duration of relief (KM, loss = two consecutive follow-ups below 30%): patient 2 (baseline 6;
    4 at days 28 and 56) starts a new series on day 70 with a baseline of 6 on day 68."""
    ex = cohort()
    plan = 99
    ex.series = pd.concat(
        [ex.series, ex.series[ex.series["patient_id"] == 2].assign(plan_id=plan)], ignore_index=True
    )
    second = END + dt.timedelta(days=70)
    ex.sessions = pd.concat(
        [ex.sessions, pd.DataFrame([{"session_id": 9_901, "clinic_id": 1, "patient_id": 2, "plan_id": plan,
                                     "status": "discharged", "started_at": _at(second)}])],
        ignore_index=True,
    )  # fmt: skip
    _score(ex, 2, "nrs", "baseline", second - dt.timedelta(days=2), 6.0, None, 2)
    row = _all(ex)
    # patient 2's first series: censored on day 56 (its last contact), not on day 70 and not lost
    # at day 68 (the next baseline is not one of its points)
    assert (row["relief_n"], row["relief_events"]) == (2, 1)
    assert row["relief_booster_events"] == 2  # counting the return for a series as a loss
    assert row["relief_median_days"] == 56.0


def test_dropout_counts_a_series_own_follow_ups_only() -> None:
    """Dropout: week 12 due, nothing of the series' own from week 8 on. Patient 3 answered an
    unattached questionnaire on day 90: still a dropout."""
    ex = cohort()
    _score(ex, 3, "nrs", "baseline", END + dt.timedelta(days=90), 5.0, None, 3)
    assert (_all(ex)["dropout_n"], _all(ex)["dropout_pct"]) == (3, round(100 / 3, 1))


def test_adverse_events_of_an_aborted_session_count_with_it_in_the_denominator() -> None:
    ex = cohort()
    extra = ex.adverse_events.iloc[[0]].assign(ae_id=3, patient_id=4, session_id=404)  # the aborted one
    ex.adverse_events = pd.concat([ex.adverse_events, extra], ignore_index=True)
    row = _all(ex)
    assert (row["ae_events"], row["sessions_exposed"], row["ae_per_100_sessions"]) == (3, 20, 15.0)


def test_mme_change_among_opioid_users_non_users_apart_and_the_after_window() -> None:
    """MME change: users only (> 0 before); the after reading 28-90 days after the series."""
    ex = cohort()
    extra = pd.DataFrame(
        [
            (7, 1, 4, START - dt.timedelta(days=1), 0.0),  # patient 4: no opioid before
            (8, 1, 4, END + dt.timedelta(days=40), 15.0),  # ... and started one
            (9, 1, 1, END + dt.timedelta(days=DEF.mme_after_window[1] + 1), 0.0),  # outside the window
        ],
        columns=ex.mme.columns,
    )
    ex.mme = pd.concat([ex.mme, extra], ignore_index=True)
    row = _all(ex)
    assert (row["mme_n"], row["mme_change_mean"]) == (3, round(-40 / 3, 1))
    assert (row["mme_nonusers"], row["mme_nonusers_started"]) == (1, 1)
