"""Every CSV the app writes is safe to open in a spreadsheet (OWASP "CSV injection": a text cell
that starts with = + - @ TAB CR LF, or their full-width forms, is prefixed with a single quote;
a genuine number stays a number)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest

from ketacare.exports import SafeCsvWriter, csv_text, document_text, frame_csv, spreadsheet_safe

PLANT = '=HYPERLINK("http://x","y")'

# (cell, written) — source: OWASP "CSV Injection" (formula-trigger characters), full-width forms
# because spreadsheets normalise them.
RULE = [
    ("=1+1", "'=1+1"),
    ("+cmd", "'+cmd"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("\n=1", "'\n=1"),
    ("  =1", "'  =1"),
    ("\u3000=1", "'\u3000=1"),
    ("\uff1d1+1", "'\uff1d1+1"),
    ("\uff0bx", "'\uff0bx"),
    ("\uff0dx", "'\uff0dx"),
    ("\uff20x", "'\uff20x"),
    (PLANT, "'" + PLANT),
    ("-1.000", "-1.000"),
    ("+3", "+3"),
    ("-.5", "-.5"),
    ("2.5e3", "2.5e3"),
    ("-inf", "'-inf"),
    ("-nan", "'-nan"),
    ("nan", "nan"),
    ("inf", "inf"),
    ("- 1", "'- 1"),
    ("1-2", "1-2"),
    ("Broken lock", "Broken lock"),
    ("", ""),
    (None, ""),
    (True, "yes"),
    (False, "no"),
    (-4, -4),
    (-1.5, -1.5),
]


@pytest.mark.parametrize(("cell", "written"), RULE)
def test_spreadsheet_safe_rule(cell: object, written: object) -> None:
    assert spreadsheet_safe(cell) == written


def test_writer_and_text_quote_every_cell() -> None:
    buffer = io.StringIO()
    SafeCsvWriter(buffer).writerow([PLANT, -1, "-1", "@x"])
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == ["'" + PLANT, "-1", "-1", "'@x"]
    text = csv_text(["a", "b"], [[PLANT, 2]])
    assert list(csv.DictReader(io.StringIO(text))) == [{"a": "'" + PLANT, "b": "2"}]


def test_pandas_frames_are_written_safely(tmp_path: Path) -> None:
    frame = pd.DataFrame({"term": [PLANT, "nausea", None], "n": [1, -2, 3], "x": [0.5, float("nan"), -1.25]})
    path = tmp_path / "t.csv"
    text = frame_csv(frame, path)
    assert path.read_bytes().decode("utf-8") == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["term"] for r in rows] == ["'" + PLANT, "nausea", ""]
    assert [r["n"] for r in rows] == ["1", "-2", "3"]
    assert [r["x"] for r in rows] == ["0.5", "", "-1.25"]


DOC = [
    ("plain", "plain"),
    ("a\x00b", "a\ufffdb"),
    ("a\u202eb", "a\ufffdb"),
    ("line\nnext", "line\nnext"),
    ("x" * 45, "x" * 40 + " " + "x" * 5),
]


@pytest.mark.parametrize(("text", "shown"), DOC)
def test_document_text(text: str, shown: str) -> None:
    assert document_text(text, longest_word=40) == shown


def test_document_text_cuts_with_a_marker_and_substitutes_missing_glyphs() -> None:
    assert document_text("a" * 10, limit=4, longest_word=100) == "aaaa … [cut: 6 more characters]"
    assert document_text("a😀b", has_glyph=lambda ch: ch != "😀") == "a\ufffdb"
