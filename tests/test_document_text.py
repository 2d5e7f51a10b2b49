"""No user text can break a document: arbitrary text (dollar signs that matplotlib would read as
math, backslashes, NUL and other control characters, emoji, right-to-left marks, 10,000-character
words) goes through every PDF builder, the timeline chart and the Plotly figure, and a valid
document comes out."""

from __future__ import annotations

import datetime as dt
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ketacare.prescribing.pdf import RxDocument, render_pdf
from ketacare.sessions import pdf as session_pdf
from ketacare.sessions.report import (
    Marker,
    Report,
    Section,
    Series,
    Signature,
    Table,
    Timeline,
    plotly_figure,
)
from tests.sessions.test_report import pdf_text

NASTY = [
    "$x^2$",
    "$\\frac{1}{0}$",
    "$x^$ $\\nosuch$",
    "\\",
    "a\x00b\x07c\x1b[31m",
    "😀🧪",
    "\u202eevil\u202c עברית العربية",
    "x" * 10_000,
    "word " * 2_000,
    '=HYPERLINK("http://x","y")',
    "<b>bold</b><script>alert(1)</script>",
    "\ud7ff\ufffe\U0010ffff",
    "",
]
TEXT = st.one_of(st.sampled_from(NASTY), st.text(max_size=300), st.text(alphabet="$\\{}^_", max_size=40))
EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = dt.datetime(2026, 12, 7, 9, 0)


def _timeline(text: str) -> Timeline:
    times = (T0, T0 + dt.timedelta(minutes=10))
    return Timeline(
        zone=text or "UTC",
        vitals=(Series("spo2", text, times, (97.0, 96.0)),),
        rate=Series("rate", text, times, (10.0, 0.0)),
        doses=(Marker(T0, 5.0, text),),
        other_drugs=(Marker(T0, 1.0, text),),
        concentration=Series("conc", text, times, (50.0, 40.0)),
        concentration_note=text,
        alarms=(Marker(T0, 90.0, text),),
        adverse_events=(Marker(T0 + dt.timedelta(minutes=5), 0.0, text),),
    )


def _report(text: str) -> Report:
    widths = (0.8, 0.6, 2.6, 3.4, 1.6)  # the narrowest columns the session report uses
    return Report(
        session_id=1,
        title=text,
        clinic=text,
        patient_name=text,
        record_number=text,
        date=text,
        zone=text,
        drug=text,
        route=text,
        status=text,
        sections=(
            Section("session", text, facts=((text, text), ("Plain", text))),
            Section(
                "events", text, table=Table((text,) * 5, ((text,) * 5, ("a", "b", text, "c", "d")), widths)
            ),
            Section("totals", text, table=Table(("a",), (), (1.0,), empty=text), notes=(text,)),
        ),
        signatures=(Signature(text, text, text), Signature("Nurse", text, None)),
        report_sha256="ab" * 32,
        changed_since_signed=True,
        signable=False,
        prediction_note=text,
    )


def _is_pdf(data: bytes) -> bool:
    return data.startswith(b"%PDF-") and len(data) > 1000 and data.rstrip().endswith(b"%%EOF")


@EXAMPLES
@given(TEXT)
def test_session_report_pdf_survives_any_text(text: str) -> None:
    assert _is_pdf(session_pdf.build(_report(text), _timeline(text)))


@EXAMPLES
@given(TEXT)
def test_prescription_pdf_survives_any_text(text: str) -> None:
    doc = RxDocument(
        prescription_id=1, status="cancelled", clinic_name=text, prescriber_name=text, prescriber_dea=text,
        prescriber_npi=text, prescriber_licence=text, patient_name=text,
        patient_date_of_birth=dt.date(1980, 1, 1), patient_address=text, drug=text, product_name=text,
        strength=text, dosage_form=text, route=text,
        quantity=text, days_supply=30, directions=text, refills=0, issued_on=dt.date(2026, 12, 7),
        signed_at=T0, content_sha256="cd" * 32, compounded_warning=text, compounded_ack=text,
        cancel_reason=text, schedule_note=text, epcs_note=text,
    )  # fmt: skip
    assert _is_pdf(render_pdf(doc))


def test_a_dollar_term_is_drawn_as_typed_and_a_long_text_is_cut_with_a_marker() -> None:
    data = session_pdf.build(
        _report("y" * 10_000 + "\x00"), _timeline("$\\nosuch$ $x^$ nausea"), compress=False
    )
    text = pdf_text(data).replace("\n", "")
    assert _is_pdf(data) and "more characters]" in text and "y" * 10_000 not in text
    assert session_pdf.chart_text("$a$\x00") == "$a$\ufffd"


@EXAMPLES
@given(TEXT)
def test_plotly_hover_text_is_escaped(text: str) -> None:
    figure = plotly_figure(_timeline(text))
    json.dumps(figure)
    for trace in figure["data"]:
        for label in [*trace.get("text", []), trace.get("name", "")]:
            assert "<" not in label and ">" not in label
