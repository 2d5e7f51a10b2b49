"""The registry's figures on a four-patient cohort, each worked out by hand (see cohort.py)."""

from __future__ import annotations

import pytest
from scipy import stats as sps

from ketacare.analytics import disclosure, registry, stats
from tests.analytics.cohort import AS_OF, cohort


@pytest.fixture(scope="module")
def report() -> registry.Report:
    return registry.build(cohort(), AS_OF, research=False)


def _row(report: registry.Report, dim: str, group: str) -> dict:  # type: ignore[type-arg]
    return next(r for r in report.table("summary").rows if r["dimension"] == dim and r["group"] == group)


def _pct(k: int, n: int) -> tuple[float, float, float]:
    e = stats.wilson(k, n)
    assert e.value is not None and e.low is not None and e.high is not None
    return round(e.value * 100, 1), round(e.low * 100, 1), round(e.high * 100, 1)


def test_counts_and_completion(report) -> None:  # type: ignore[no-untyped-def]
    row = _row(report, "all", "all")
    assert (row["patients"], row["series"], row["sessions"], row["sessions_exposed"]) == (4, 4, 19, 20)
    assert (row["completion_pct"], row["completion_low"], row["completion_high"]) == _pct(19, 20)


def test_responders(report) -> None:  # type: ignore[no-untyped-def]
    # baseline -> week 4: 8->4 (50%), 6->4 (33%, 2 pt), 5->5, 7->6 (14%)
    row = _row(report, "all", "all")
    assert row["evaluable"] == 4
    assert (row["responder30_pct"], row["responder30_low"], row["responder30_high"]) == _pct(2, 4)
    assert row["responder50_pct"] == 25.0 and row["responder2pt_pct"] == 50.0
    assert (row["pgic_improved_pct"], row["pgic_n"]) == (50.0, 4)  # PGIC 2 and 1
    crps = _row(report, "condition", "CRPS")
    assert crps["patients"] == 3 and crps["responder30_pct"] == round(200 / 3, 1)


def test_mean_nrs_change(report) -> None:  # type: ignore[no-untyped-def]
    changes = [-4.0, -2.0, 0.0, -1.0]
    low, high = sps.t.interval(0.95, 3, loc=-1.75, scale=sps.sem(changes))
    row = _row(report, "all", "all")
    assert (row["nrs_change_mean"], row["nrs_change_low"], row["nrs_change_high"]) == (
        round(-1.75, 1),
        round(low, 1),
        round(high, 1),
    )


def test_duration_of_relief(report) -> None:  # type: ignore[no-untyped-def]
    # patient 1 loses response at day 56 (56 and 84 both < 30%), known only to lie after day 28;
    # patient 2 censored at day 56; patients 3 and 4 never responded. KM on the day the loss was
    # found: S(56) = 1 - 1/2 = 0.5 -> median 56 days; the interval-censored (Turnbull) estimate
    # puts patient 1's loss in days 29-56 and has fallen to one half by day 56.
    row = _row(report, "all", "all")
    assert (row["relief_n"], row["relief_events"], row["relief_median_days"]) == (2, 1, 56.0)
    assert row["relief_interval_median_days"] == 56.0
    assert row["relief_booster_events"] == 1  # nobody came back for another series
    assert {r["curve"] for r in report.table("relief").rows} >= {"all: all", "condition: CRPS"}


def test_adverse_events(report) -> None:  # type: ignore[no-untyped-def]
    # the same 20 sessions in numerator and denominator: 19 discharged and patient 4's aborted one
    row = _row(report, "all", "all")
    assert row["patients_with_ae_pct"] == 50.0 and row["needed_intervention_pct"] == 25.0
    rate = stats.poisson_rate(2, 20)
    assert row["ae_per_100_sessions"] == round(2 / 20 * 100, 2)
    assert row["ae_per_100_high"] == round(rate.high * 100, 2)  # type: ignore[operator]
    terms = {
        (r["term"], r["grade"]): r for r in report.table("adverse_events").rows if r["dimension"] == "all"
    }
    # the catalogue's terms of the exported codes (nausea, hypertension)
    assert set(terms) == {("Nausea", 1), ("Hypertension", 2)}
    assert (
        terms[("Hypertension", 2)]["needed_intervention"] == 1
        and terms[("Nausea", 1)]["patients_pct"] == 25.0
    )


def test_mme_paired_change(report) -> None:  # type: ignore[no-untyped-def]
    # one series per patient: the cluster-robust t is the paired t; the signed-rank test on each
    # patient's change (a zero change among three: the normal approximation)
    before, after = [60.0, 90.0, 30.0], [30.0, 90.0, 20.0]
    row = _row(report, "all", "all")
    assert row["mme_n"] == 3 and row["mme_change_mean"] == round(-40 / 3, 1)
    assert row["mme_t_p"] == round(sps.ttest_rel(after, before).pvalue, 4)
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    assert row["mme_wilcoxon_p"] == round(sps.wilcoxon(diffs, method="approx").pvalue, 4)
    assert row["mme_nonusers"] == 0


def test_dropout(report) -> None:  # type: ignore[no-untyped-def]
    # week 12 due for patients 1-3; patient 3 answered nothing from week 8 on
    row = _row(report, "all", "all")
    assert (row["dropout_n"], row["dropout_pct"]) == (3, round(100 / 3, 1))


def test_research_report_suppresses_small_cells() -> None:
    research = registry.build(cohort(), AS_OF, research=True)
    rows = research.table("summary").rows
    assert rows and all(r["suppressed"] and r["patients"] == disclosure.HIDDEN for r in rows)
    ae = research.table("adverse_events").rows
    assert all(r["events"] == r["patients"] == disclosure.HIDDEN for r in ae) and research.relief_curves == {}


def test_a_cohort_too_small_to_report_is_said_so() -> None:
    ex = cohort()
    ex.sessions = ex.sessions.iloc[0:0]
    empty = registry.build(ex, AS_OF, research=False)
    assert empty.table("summary").rows == []


def test_follow_up_answer_rate(report) -> None:  # type: ignore[no-untyped-def]
    # due by the report date: days 28, 56 and 84 for patients 1-3; answered: 3 + 2 + 1
    row = _row(report, "all", "all")
    assert (row["follow_ups_due"], row["follow_ups_answered"]) == (9, 6)
    assert (row["answered_pct"], row["answered_low"], row["answered_high"]) == _pct(6, 9)


def test_by_clinic_only_across_clinics(report) -> None:  # type: ignore[no-untyped-def]
    assert "clinic" not in {r["dimension"] for r in report.table("summary").rows}
    ex = cohort()
    ex.series.loc[ex.series["patient_id"] == 4, "clinic_id"] = 2
    two = registry.build(ex, AS_OF, research=False)
    by_clinic = {r["group"]: r["patients"] for r in two.table("summary").rows if r["dimension"] == "clinic"}
    assert by_clinic == {"clinic 1": 3, "clinic 2": 1}
