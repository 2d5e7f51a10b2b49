"""The printable prescription (fpdf2). Pure: an ``RxDocument`` in, PDF bytes out.

Text is set in DejaVu Sans, which ships with matplotlib, so names outside latin-1 print as they
are. A draft or a cancelled prescription is marked across the page and is not valid."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from fpdf import FPDF

from ketacare.documents import SafeTextPdf

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT = "DejaVu"
INK = (29, 37, 48)
MUTED = (91, 101, 114)
DANGER = (179, 38, 30)


@dataclass(frozen=True)
class RxDocument:
    prescription_id: int
    status: str  # draft, signed, cancelled
    clinic_name: str
    prescriber_name: str
    prescriber_dea: str
    prescriber_npi: str
    prescriber_licence: str
    patient_name: str
    patient_date_of_birth: dt.date
    patient_address: str
    drug: str
    product_name: str
    strength: str
    dosage_form: str
    route: str
    quantity: str
    days_supply: int
    directions: str
    refills: int
    issued_on: dt.date
    signed_at: dt.datetime | None
    content_sha256: str | None
    compounded_warning: str | None
    compounded_ack: str | None
    cancel_reason: str | None
    schedule_note: str
    epcs_note: str


def _pdf() -> FPDF:
    pdf = SafeTextPdf(format="Letter")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_margins(18, 16, 18)
    pdf.add_page()
    return pdf


def _pair(pdf: FPDF, label: str, value: str) -> None:
    pdf.set_font(FONT, "B", 10)
    pdf.set_text_color(*MUTED)
    pdf.cell(48, 6, label)
    pdf.set_font(FONT, "", 10)
    pdf.set_text_color(*INK)
    pdf.multi_cell(0, 6, value, new_x="LMARGIN", new_y="NEXT")


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(2)
    pdf.set_font(FONT, "B", 12)
    pdf.set_text_color(*INK)
    pdf.cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")


def render_pdf(doc: RxDocument) -> bytes:
    pdf = _pdf()
    pdf.set_title(f"Prescription {doc.prescription_id}")
    pdf.set_font(FONT, "B", 16)
    pdf.set_text_color(*INK)
    pdf.cell(0, 9, doc.clinic_name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 10)
    pdf.set_text_color(*MUTED)
    pdf.cell(
        0, 6, f"Prescription #{doc.prescription_id} · {doc.schedule_note}", new_x="LMARGIN", new_y="NEXT"
    )
    if doc.status != "signed":
        pdf.set_text_color(*DANGER)
        pdf.set_font(FONT, "B", 13)
        banner = (
            "DRAFT — NOT A VALID PRESCRIPTION"
            if doc.status == "draft"
            else f"CANCELLED — DO NOT DISPENSE ({doc.cancel_reason})"
        )
        pdf.multi_cell(0, 8, banner, new_x="LMARGIN", new_y="NEXT")

    _heading(pdf, "Prescriber")
    _pair(pdf, "Name", doc.prescriber_name)
    _pair(pdf, "DEA registration", doc.prescriber_dea)
    _pair(pdf, "NPI", doc.prescriber_npi)
    _pair(pdf, "State licence", doc.prescriber_licence)

    _heading(pdf, "Patient")
    _pair(pdf, "Name", doc.patient_name)
    _pair(pdf, "Date of birth", doc.patient_date_of_birth.isoformat())
    _pair(pdf, "Address", doc.patient_address)

    _heading(pdf, "Prescription")
    _pair(pdf, "Date of issue", doc.issued_on.isoformat())
    _pair(pdf, "Drug", f"{doc.drug} — {doc.product_name}")
    _pair(pdf, "Strength", doc.strength)
    _pair(pdf, "Dosage form, route", f"{doc.dosage_form}, {doc.route}")
    _pair(pdf, "Quantity", f"{doc.quantity} ({doc.days_supply} days' supply)")
    _pair(pdf, "Directions", doc.directions)
    _pair(pdf, "Refills", "none" if doc.refills == 0 else str(doc.refills))

    if doc.compounded_warning:
        _heading(pdf, "Compounded product: FDA warning")
        pdf.set_font(FONT, "", 9)
        pdf.set_text_color(*INK)
        pdf.multi_cell(0, 5, doc.compounded_warning, new_x="LMARGIN", new_y="NEXT")
        if doc.compounded_ack:
            pdf.set_text_color(*MUTED)
            pdf.multi_cell(
                0, 5, f"Prescriber's acknowledgement: {doc.compounded_ack}", new_x="LMARGIN", new_y="NEXT"
            )

    _heading(pdf, "Signature")
    pdf.set_font(FONT, "", 10)
    pdf.set_text_color(*INK)
    if doc.signed_at is not None:
        pdf.multi_cell(
            0,
            6,
            f"Signed in KetaCare by {doc.prescriber_name} at {doc.signed_at.isoformat(timespec='minutes')}; "
            f"content SHA-256 {doc.content_sha256}.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.ln(10)
    pdf.cell(110, 6, "_" * 48)
    pdf.cell(0, 6, "Date: ____________", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(*MUTED)
    pdf.cell(0, 6, "Prescriber's manual signature", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font(FONT, "", 8)
    pdf.multi_cell(0, 4, doc.epcs_note, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
