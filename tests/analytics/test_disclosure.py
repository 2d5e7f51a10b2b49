"""Disclosure control of the research report (CMS cell-size suppression policy: no cell of 1 to
10, nor one that can be worked out). The attacker (tests/analytics/attack.py) parses the CSVs a
researcher downloads and tries every subtraction; it must find no cell of 1 to 10."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy.orm import Session

from ketacare.analytics import disclosure, extract, registry
from tests.analytics.attack import read_csv, small_cells_found, true_counts
from tests.analytics.random_cohort import fill

AS_OF = dt.date(2026, 11, 1)
SOURCE = "CMS cell-size suppression policy (cells of 1-10 not shown nor derivable)"


def _csv(report: registry.Report, table: str) -> list[dict[str, Any]]:
    return read_csv(report.table(table).frame().to_csv(index=False))


@pytest.mark.parametrize(("seed", "patients"), [(11, 120), (12, 250), (13, 400)])
def test_no_small_cell_is_shown_or_derivable_from_the_research_csvs(
    db: Session, seed: int, patients: int
) -> None:
    fill(db.connection(), seed, patients=patients)
    cols = extract.columns(db, None)
    truth_report = registry.build(disclosure.coded_columns(cols), AS_OF, research=False)
    truth = true_counts(truth_report.table("summary").rows, truth_report.table("adverse_events").rows)
    assert any(0 < v < 11 for v in truth.values()), "the cohort must have small cells to hide"
    research = registry.build(cols, AS_OF, research=True)
    found = small_cells_found((_csv(research, "summary"), _csv(research, "adverse_events")), truth)
    assert found == [], SOURCE
    # and something is still shown: the overall figures of a cohort this size
    overall = research.table("summary").rows[0]
    assert overall["dimension"] == "all" and overall["series"] != disclosure.HIDDEN


def _cells(values: dict[str, int], lines: list[tuple[str, list[str]]]) -> disclosure.Cells:
    cells = disclosure.Cells(11)
    for name, v in values.items():
        cells.add((name,), v)
    for total, parts in lines:
        cells.line((total,), [(p,) for p in parts])
    cells.solve()
    return cells


@pytest.mark.parametrize(
    ("case", "values", "lines", "hidden"),
    [
        # a group of 5 beside groups of 30 and 40: the 5 and a complement (the smaller other)
        ("one small group", {"T": 75, "a": 5, "b": 30, "c": 40}, [("T", ["a", "b", "c"])], {"a", "b"}),
        # 10 responders of 12: the 2 non-responders are a small cell, so the 10 goes too
        ("numerator beside its denominator", {"n": 12, "k": 10, "c": 2}, [("n", ["k", "c"])], {"k", "c"}),
        # two small cells summing to 8: a third part joins so that the hidden sum reaches 11
        (
            "hidden sum small",
            {"T": 100, "a": 3, "b": 5, "c": 40, "d": 52},
            [("T", ["a", "b", "c", "d"])],
            {"a", "b", "c"},
        ),
        ("no small cell", {"T": 70, "a": 30, "b": 40}, [("T", ["a", "b"])], set()),
        ("zero is not a small cell", {"T": 70, "a": 0, "b": 70}, [("T", ["a", "b"])], set()),
        # parts short of the total (a group not listed, of 4): the 4 is protected too
        ("an unlisted rest", {"T": 74, "a": 30, "b": 40}, [("T", ["a", "b"])], {"a"}),
    ],
)
def test_suppression_rules(case: str, values: dict[str, int], lines: Any, hidden: set[str]) -> None:
    cells = _cells(values, lines)
    assert {c[0] for c in cells.hidden if c[0] != "rest"} == hidden, (case, SOURCE)


def test_a_cell_pinned_by_two_lines_is_caught_by_the_linear_algebra_check() -> None:
    # rows r1, r2 and columns c1, c2 of a 2x2 table with margins; one small cell x11 = 4
    values = {"x11": 4, "x12": 20, "x21": 30, "x22": 50, "r1": 24, "r2": 80, "c1": 34, "c2": 70, "T": 104}
    lines = [
        ("r1", ["x11", "x12"]),
        ("r2", ["x21", "x22"]),
        ("c1", ["x11", "x21"]),
        ("c2", ["x12", "x22"]),
        ("T", ["r1", "r2"]),
        ("T", ["c1", "c2"]),
    ]
    cells = _cells(values, lines)
    assert ("x11",) in cells.hidden
    # every hidden cell keeps a degree of freedom
    assert cells._determined() == []


def test_kaplan_meier_stops_before_fewer_than_11_at_risk() -> None:
    assert disclosure.at_risk_cut([0, 5, 9, 30], [40, 20, 11, 10], 11) == 3
    assert disclosure.at_risk_cut([0, 5], [8, 3], 11) == 0


def test_every_summary_and_ae_column_is_classified() -> None:
    # a column disclosure control does not know is withheld from research outputs: a new column
    # needs its place in analytics/disclosure.py first
    assert set(registry.SUMMARY_COLUMNS) <= disclosure.classified_summary_columns()
    assert set(registry.AE_COLUMNS) <= disclosure.classified_ae_columns()


@pytest.mark.parametrize(
    ("value", "allowed", "expected"),
    [
        ("iv_infusion", None, "iv_infusion"),
        ("Zebulon Quackenbush", None, disclosure.OTHER),
        ("555-0100", None, disclosure.OTHER),
        ("z.q@example.org", None, disclosure.OTHER),
        ("CRPS", {"Complex regional pain syndrome type I"}, disclosure.OTHER),
        (None, None, disclosure.OTHER),
    ],
)
def test_labels_in_research_outputs_are_codes(value: str | None, allowed: Any, expected: str) -> None:
    assert disclosure.coded(value, allowed) == expected


def test_an_uncoded_other_term_is_never_its_own_label() -> None:
    assert disclosure.ae_label("other") == disclosure.OTHER
    assert disclosure.ae_label("nausea") == "Nausea"
