"""The de-identification rules one by one, and the Parquet export with its data dictionary."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ketacare.analytics import deid
from ketacare.knowledge.outcomes import outcome_rules
from tests.analytics.cohort import cohort

KEY = "k" * 40


def test_restricted_zip3_become_000() -> None:
    assert len(outcome_rules().restricted_zip3) == 17
    assert deid.zip3("03601") == "000" and deid.zip3("89301") == "000" and deid.zip3("06390") == "000"
    assert deid.zip3("02139-4307") == "021"
    assert deid.zip3(None) == "000" and deid.zip3("ab") == "000"


def test_ages_over_89_grouped() -> None:
    on = dt.date(2026, 6, 1)
    assert deid.age_group(dt.date(1936, 6, 2), on) == "89"
    assert deid.age_group(dt.date(1936, 6, 1), on) == "90+"
    assert deid.age_group(dt.date(1920, 1, 1), on) == "90+"


def test_pseudonyms_are_stable_keyed_and_distinct() -> None:
    a = deid.pseudonym(KEY, "patient", 1)
    assert a == deid.pseudonym(KEY, "patient", 1)
    assert a != deid.pseudonym(KEY, "patient", 2) and a != deid.pseudonym("other" * 8, "patient", 1)
    assert a[1:] != "1" and len(a) == 17


def test_date_shift_is_per_patient_keyed_and_bounded() -> None:
    shifts = [deid.shift_days(KEY, p) for p in range(1, 200)]
    assert all(1 <= abs(s) <= outcome_rules().shift_max_days for s in shifts)
    assert len(set(shifts)) > 50 and any(s < 0 for s in shifts) and any(s > 0 for s in shifts)
    assert deid.shift_days(KEY, 7) == deid.shift_days(KEY, 7) != deid.shift_days("x" * 40, 7)


def test_safe_harbor_keeps_years_only_and_a_fresh_key_each_export() -> None:
    # HIPAA 45 CFR 164.514(b)(2)(i)(C): all elements of dates except the year
    data = deid.deidentify(cohort())
    scores = data.frames["scores"]
    assert "answered_on" not in scores.columns and set(scores["answered_year"]) <= {2025, 2026}
    assert set(data.dictionary[data.dictionary["column"] == "answered_year"]["rule"]) == {deid.YEAR}
    again = deid.deidentify(cohort())
    # pseudonyms from a random key per export: two exports do not link
    assert not set(data.frames["patients"]["patient"]) & set(again.frames["patients"]["patient"])


def test_safe_harbor_reduces_the_reproduction_columns_to_years() -> None:
    # HIPAA 45 CFR 164.514(b)(2)(i)(C): the series' days, the quarter and the export's day as years
    data = deid.deidentify(cohort(), KEY, as_of=dt.date(2026, 6, 1))
    series, pats = data.frames["series"], data.frames["patients"]
    assert {"first_year", "last_year", "period_year"} <= set(series.columns)
    assert not {"first_on", "last_on", "period"} & set(series.columns)
    assert set(series["period_year"].dropna()) <= {2025, 2026} and set(pats["as_of_year"]) == {2026}
    rules = dict(zip(data.dictionary["column"], data.dictionary["rule"], strict=True))
    assert rules["period_year"] == rules["first_year"] == deid.YEAR


def test_a_limited_data_set_names_its_agreement() -> None:
    with pytest.raises(ValueError, match="agreement"):
        deid.deidentify(cohort(), None, "limited")


def test_dataset_drops_identifiers_and_free_text_and_keeps_intervals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = deid.deidentify(cohort(), KEY, "limited", "#1 test", dt.date(2026, 6, 1))
    pats = data.frames["patients"]
    assert list(pats.columns) == ["patient", "clinic", "sex", "state", "zip3", "age_at_index", "as_of"]
    # what reproducing the report needs: the export's day and each series' days, shifted alike
    shift = deid.shift_days(KEY, 1)
    p1 = deid.pseudonym(KEY, "patient", 1)
    assert pats[pats["patient"] == p1]["as_of"].iloc[0] == dt.date(2026, 6, 1) + dt.timedelta(days=shift)
    s1 = data.frames["series"][data.frames["series"]["patient"] == p1].iloc[0]
    assert (s1["period"], s1["baseline_lookback_days"]) == ("2026-Q1", 30)
    assert (s1["last_on"] - s1["first_on"]).days == 4
    assert set(data.frames["follow_ups"]["series"]) <= set(data.frames["series"]["series"])
    assert set(pats["zip3"]) == {"021"} and set(pats["age_at_index"]) == {
        "56"
    }  # born 1970-01-01, first session 2026-01-01
    ae = data.frames["adverse_events"]
    assert "term" not in ae.columns and "description" not in ae.columns
    for frame in data.frames.values():
        for column in frame.columns:
            assert column not in ("patient_id", "date_of_birth", "postal_code", "given_name", "note")
    scores = data.frames["scores"]
    mine = scores[(scores["patient"] == p1) & (scores["timepoint"] == "d28")].iloc[0]
    # the interval from series end to the answer survives the shift
    assert (mine["answered_on"] - mine["series_end_on"]).days == 28
    assert mine["series_end_on"] == dt.date(2026, 1, 5) + dt.timedelta(days=shift)
    written = data.write(tmp_path)
    assert {p.name for p in written} >= {"patients.parquet", "scores.parquet", "data_dictionary.csv"}
    assert pq.read_table(tmp_path / "scores.parquet").num_rows == len(scores)
    dictionary = pd.read_csv(tmp_path / "data_dictionary.csv")
    assert set(dictionary["table"]) == set(data.frames)
    assert len(dictionary) == sum(len(f.columns) for f in data.frames.values())
