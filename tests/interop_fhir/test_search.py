"""Search parameters, pure: dates and their prefixes as intervals (FHIR R4 search 3.1.1.4),
tokens with and without a system, strings, and any query string either parses or is a 422."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketacare.errors import InvalidInput
from ketacare.interop.fhir import search
from ketacare.interop.fhir.resources.base import Mapper, SearchParam

UTC = dt.UTC
OBS = Mapper(
    "Observation",
    read=lambda db, scope: iter(()),
    search_params=(
        SearchParam("code", "token", ("code",)),
        SearchParam("date", "date", ("effectiveDateTime", "effectivePeriod")),
        SearchParam("name", "string", ("name.family",)),
    ),
    patient_paths=("subject",),
)


def test_a_date_stands_for_the_interval_of_its_precision() -> None:
    assert search.parse_date("2026") == search.Interval(
        dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC)
    )
    assert search.parse_date("2026-12").end == dt.datetime(2027, 1, 1, tzinfo=UTC)
    assert search.parse_date("2026-02-28").end == dt.datetime(2026, 3, 1, tzinfo=UTC)
    at = search.parse_date("2026-03-02T09:30:00-05:00")
    assert at.start == dt.datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert at.end - at.start == dt.timedelta(seconds=1)
    for bad in ("yesterday", "2026-13-01", "2026-02-30", "26-01-01", "2026-01-01T25:00"):
        with pytest.raises(ValueError):
            search.parse_date(bad)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        # target 2026-03-02T10:00:00 against the day 2026-03-02 and the day before/after
        ("eq", (False, True, False)),
        ("ne", (True, False, True)),
        ("gt", (True, False, False)),
        ("ge", (True, True, False)),
        ("lt", (False, False, True)),
        ("le", (False, True, True)),
        ("sa", (True, False, False)),
        ("eb", (False, False, True)),
    ],
)
def test_prefixes(prefix: str, expected: tuple[bool, bool, bool]) -> None:
    target = search.parse_date("2026-03-02T10:00:00Z")
    days = ("2026-03-01", "2026-03-02", "2026-03-03")
    assert tuple(search.date_matches(prefix, search.parse_date(d), target) for d in days) == expected


def test_periods_match_by_overlap_rules() -> None:
    period = search.interval_of({"start": "2026-03-02T10:00:00Z", "end": "2026-03-02T11:00:00Z"})
    assert period is not None
    assert search.date_matches("eq", search.parse_date("2026-03-02"), period)
    open_ended = search.interval_of({"start": "2026-03-02T10:00:00Z"})
    assert open_ended is not None and search.date_matches("gt", search.parse_date("2030"), open_ended)


def test_tokens_with_and_without_system() -> None:
    concept = {
        "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
        "text": "HR",
    }
    assert search.token_matches("8867-4", concept)
    assert search.token_matches("http://loinc.org|8867-4", concept)
    assert search.token_matches("http://loinc.org|", concept)
    assert not search.token_matches("http://snomed.info/sct|8867-4", concept)
    assert not search.token_matches("|8867-4", concept)  # no system wanted: the coding has one
    assert search.token_matches("heart", concept, "text")
    assert search.token_matches("female", "female") and not search.token_matches("male", "female")


def test_parse_narrows_and_matches() -> None:
    request = search.parse(
        OBS, [("patient", "Patient/7"), ("code", "8867-4,8480-6"), ("date", "ge2026-03-01")]
    )
    assert request.patient_ids == (7,)
    hr = {"code": {"coding": [{"code": "8867-4"}]}, "effectiveDateTime": "2026-03-02T10:00:00+00:00"}
    old = {**hr, "effectiveDateTime": "2026-02-02T10:00:00+00:00"}
    rr = {**hr, "code": {"coding": [{"code": "9279-1"}]}}
    assert search.matches(request, hr)
    assert not search.matches(request, old) and not search.matches(request, rr)
    twice = search.parse(OBS, [("patient", "7"), ("patient", "8")])
    assert twice.patient_ids == ()  # AND of two different patients: nobody


@pytest.mark.parametrize(
    "query",
    [
        [("colour", "blue")],
        [("date", "soon")],
        [("code:exact", "x")],
        [("_count", "-1")],
        [("_count", "1001")],
        [("patient", "Practitioner/1")],
        [("_format", "xml")],
        [("code", "")],
    ],
)
def test_bad_queries_are_invalid_input(query: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput):
        search.parse(OBS, query)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "_id",
                    "patient",
                    "code",
                    "date",
                    "name",
                    "name:contains",
                    "_count",
                    "_offset",
                    "_lastUpdated",
                    "x",
                ]
            ),
            st.text(max_size=30),
        ),
        max_size=4,
    )
)
def test_any_query_parses_or_is_a_422(query: list[tuple[str, str]]) -> None:
    try:
        request = search.parse(OBS, query)
    except InvalidInput:
        return
    resource = {
        "code": {"coding": [{"code": "8867-4"}]},
        "effectiveDateTime": "2026-03-02T10:00:00+00:00",
        "name": [{"family": "Lovelace"}],
        "meta": {"lastUpdated": "2026-03-02T10:00:00+00:00"},
    }
    search.matches(request, resource)
