"""The session report as a PDF (fpdf2), with the timeline drawn by matplotlib (Agg, no browser).

Text is set in DejaVu Sans, which ships with matplotlib, so names and symbols outside latin-1
(≥, µ, accents) print as they are. Pure: a ``Report`` and a ``Timeline`` in, bytes out."""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from fpdf import FPDF
from fpdf.fonts import FontFace
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font

from ketacare.documents import LONGEST_WORD, SafeTextPdf, cell_text
from ketacare.exports import document_text
from ketacare.sessions.report import (
    AE_COLOUR,
    ALARM_COLOUR,
    CONC_COLOUR,
    DOSE_COLOUR,
    OTHER_DRUG_COLOUR,
    RATE_COLOUR,
    VITAL_COLOURS,
    Report,
    Section,
    Timeline,
)
from ketacare.web.templating import DISCLAIMER

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT = "DejaVu"
INK = (29, 37, 48)
MUTED = (91, 101, 114)
DANGER = (179, 38, 30)
HEAD_FILL = (233, 237, 242)


# Matplotlib's default date epoch: its date axis counts days from here.
EPOCH = dt.datetime(1970, 1, 1)


def _dates(times: Sequence[dt.datetime]) -> np.ndarray[tuple[int], np.dtype[np.datetime64]]:
    return np.array(times, dtype="datetime64[s]")


def _days(t: dt.datetime) -> float:
    return (t - EPOCH).total_seconds() / 86400.0


def _clock_label(x: float, _pos: float | None = None) -> str:
    return (EPOCH + dt.timedelta(days=x)).strftime("%H:%M")


@functools.cache
def _chart_glyphs() -> frozenset[int]:
    return frozenset(FT2Font(str(FONT_DIR / "DejaVuSans.ttf")).get_charmap())


def chart_text(value: object, *, limit: int = 80) -> str:
    """User text for the chart: one line, drawable by the chart's font, never read as math."""
    glyphs = _chart_glyphs()
    return document_text(
        value,
        limit=limit,
        longest_word=LONGEST_WORD,
        has_glyph=lambda ch: ord(ch) in glyphs,
        keep_newlines=False,
    )


def timeline_png(tl: Timeline, *, width_in: float = 10.0, height_in: float = 5.6, dpi: int = 150) -> bytes:
    """The timeline as a PNG: vital signs with alarms and adverse events above; the dose rate,
    single doses and the predicted concentration (right axis) below. No text is parsed as
    mathtext (a ``$`` in an adverse-event term is a dollar sign)."""
    with matplotlib.rc_context({"text.parse_math": False}):
        return _timeline_png(tl, width_in=width_in, height_in=height_in, dpi=dpi)


def _timeline_png(tl: Timeline, *, width_in: float, height_in: float, dpi: int) -> bytes:
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    if tl.empty:
        top.text(
            0.5, 0.5, "No readings or doses recorded yet.", ha="center", va="center", transform=top.transAxes
        )
    for s in tl.vitals:
        top.plot(
            _dates(s.times),
            list(s.values),
            marker=".",
            markersize=3,
            linewidth=1.2,
            color=VITAL_COLOURS.get(s.key, "#444444"),
            label=chart_text(s.name),
        )
    if tl.alarms:
        top.scatter(
            _dates([m.at for m in tl.alarms]),
            [m.value for m in tl.alarms],
            marker="^",
            s=60,
            color=ALARM_COLOUR,
            zorder=5,
            label="Alarm",
        )
    for i, m in enumerate(tl.adverse_events):
        x = _days(m.at)
        for ax in (top, bottom):
            ax.axvline(
                x,
                linestyle=":",
                color=AE_COLOUR,
                linewidth=1.2,
                label="Adverse event" if i == 0 and ax is top else None,
            )
        top.annotate(
            chart_text(m.label),
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, -2),
            textcoords="offset points",
            rotation=90,
            va="top",
            fontsize=6,
            color=AE_COLOUR,
            parse_math=False,
        )
    top.set_ylabel("Vital signs")
    top.set_ylim(bottom=0)
    top.grid(True, alpha=0.3)
    if tl.vitals or tl.alarms or tl.adverse_events:
        top.legend(loc="best", fontsize=6, ncol=4, framealpha=0.8)
    if tl.rate.times:
        bottom.step(
            _dates(tl.rate.times),
            list(tl.rate.values),
            where="post",
            color=RATE_COLOUR,
            linewidth=1.8,
            label=chart_text(tl.rate.name),
        )
    if tl.doses:
        bottom.scatter(
            _dates([m.at for m in tl.doses]),
            [m.value for m in tl.doses],
            marker="D",
            s=30,
            color=DOSE_COLOUR,
            zorder=5,
            label="Bolus or dose (mg)",
        )
    if tl.other_drugs:
        bottom.scatter(
            _dates([m.at for m in tl.other_drugs]),
            [m.value for m in tl.other_drugs],
            marker="s",
            s=26,
            facecolors="none",
            edgecolors=OTHER_DRUG_COLOUR,
            zorder=5,
            label="Premedication or rescue (mg)",
        )
    bottom.set_ylabel("mg/h · mg")
    bottom.set_ylim(bottom=0)
    bottom.grid(True, alpha=0.3)
    handles, labels = bottom.get_legend_handles_labels()
    if tl.concentration is not None:
        right = bottom.twinx()
        right.plot(
            _dates(tl.concentration.times),
            list(tl.concentration.values),
            linestyle="--",
            color=CONC_COLOUR,
            linewidth=1.4,
            label=chart_text(tl.concentration.name),
        )
        right.set_ylabel("ng/mL", color=CONC_COLOUR)
        right.set_ylim(bottom=0)
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        bottom.legend(handles, labels, loc="best", fontsize=6, ncol=2, framealpha=0.8)
    bottom.set_xlabel(f"Clinic time ({chart_text(tl.zone)})")
    bottom.xaxis.set_major_formatter(_clock_label)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


class _ReportPdf(SafeTextPdf):
    def __init__(self, report: Report) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.report = report
        self.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.set_margins(14, 14, 14)
        self.set_auto_page_break(True, margin=16)
        self.alias_nb_pages()

    def header(self) -> None:
        r = self.report
        self.set_font(FONT, "", 7.5)
        self.set_text_color(*MUTED)
        self.cell(
            0,
            4,
            f"{r.clinic} · {r.patient_name} · {r.record_number} · session #{r.session_id} · {r.date}",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        self.ln(2)
        self.set_text_color(*INK)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, "", 7)
        self.set_text_color(*MUTED)
        self.cell(0, 4, f"KetaCare session report · page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(*INK)


def _heading(pdf: FPDF, text: str) -> None:
    if pdf.will_page_break(32):  # keep a heading with the first rows under it
        pdf.add_page()
    pdf.ln(2)
    pdf.set_font(FONT, "B", 11)
    pdf.cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 8.5)


def _facts(pdf: FPDF, facts: tuple[tuple[str, str], ...]) -> None:
    if not facts:
        return
    with pdf.table(
        col_widths=(1.3, 4.0),
        first_row_as_headings=False,
        borders_layout="HORIZONTAL_LINES",
        line_height=4.6,
        text_align="LEFT",
        padding=0.8,
    ) as table:
        for label, value in facts:
            row = table.row()
            row.cell(cell_text(label), style=FontFace(emphasis="BOLD"))
            row.cell(cell_text(value) or "—")


def _table(pdf: FPDF, section: Section) -> None:
    t = section.table
    if t is None:
        return
    if not t.rows:
        pdf.multi_cell(0, 4.6, t.empty, align="L", new_x="LMARGIN", new_y="NEXT")
        return
    pdf.set_font(FONT, "", 7.5)
    with pdf.table(
        col_widths=t.widths,
        headings_style=FontFace(emphasis="BOLD", fill_color=HEAD_FILL),
        borders_layout="SINGLE_TOP_LINE",
        line_height=4.0,
        text_align="LEFT",
        padding=0.8,
    ) as table:
        head = table.row()
        for h in t.headers:
            head.cell(cell_text(h))
        for cells in t.rows:
            row = table.row()
            for text in cells:
                row.cell(cell_text(text) or "—")
    pdf.set_font(FONT, "", 8.5)


def _notes(pdf: FPDF, notes: tuple[str, ...]) -> None:
    if not notes:
        return
    pdf.set_font(FONT, "", 7)
    pdf.set_text_color(*MUTED)
    for note in notes:
        pdf.multi_cell(0, 3.6, note, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*INK)
    pdf.set_font(FONT, "", 8.5)


def _timeline(pdf: FPDF, tl: Timeline, note: str) -> None:
    _heading(pdf, "Timeline")
    width = pdf.epw
    height = width * 5.6 / 10.0
    if pdf.will_page_break(height + 6):
        pdf.add_page()
        pdf.set_font(FONT, "B", 11)
        pdf.cell(0, 7, "Timeline", new_x="LMARGIN", new_y="NEXT")
    pdf.image(io.BytesIO(timeline_png(tl)), w=width, h=height, alt_text="Session timeline")
    _notes(pdf, (note,))


def _signatures(pdf: FPDF, report: Report) -> None:
    _heading(pdf, "Signatures")
    if not report.signed:
        pdf.set_font(FONT, "B", 10)
        pdf.set_text_color(*DANGER)
        pdf.cell(0, 6, "NOT SIGNED", new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(*INK)
        pdf.set_font(FONT, "", 8.5)
    facts = tuple(
        (s.role, f"{s.name}, {s.at} ({report.zone})" if s.signed else "NOT SIGNED") for s in report.signatures
    )
    _facts(pdf, (*facts, ("Report SHA-256", report.report_sha256 or "—")))
    if report.changed_since_signed:
        pdf.set_text_color(*DANGER)
        pdf.multi_cell(
            0,
            4.6,
            "The record changed after the first signature: this report differs from what was signed.",
            align="L",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        pdf.set_text_color(*INK)


def build(report: Report, tl: Timeline, *, compress: bool = True) -> bytes:
    """The PDF. ``compress=False`` leaves the page content readable (tests search it)."""
    pdf = _ReportPdf(report)
    pdf.set_compression(compress)
    pdf.set_title(f"{report.title} — {report.patient_name}")
    pdf.set_author(report.clinic)
    pdf.set_creator("KetaCare")
    pdf.add_page()
    pdf.set_font(FONT, "B", 15)
    pdf.cell(0, 8, report.clinic, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "B", 12)
    pdf.cell(
        0, 6, f"{report.title}: {report.patient_name} · {report.record_number}", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font(FONT, "", 9)
    pdf.cell(
        0,
        5,
        f"{report.date} · {report.route} · {report.drug} · {report.status} · times in {report.zone}",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    for section in report.sections:
        _heading(pdf, section.title)
        _facts(pdf, section.facts)
        _table(pdf, section)
        _notes(pdf, section.notes)
        if section.key == "totals":
            _timeline(pdf, tl, tl.concentration_note)
    _signatures(pdf, report)
    pdf.ln(4)
    pdf.set_font(FONT, "", 7.5)
    pdf.set_text_color(*MUTED)
    pdf.multi_cell(0, 3.8, DISCLAIMER, align="L", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
