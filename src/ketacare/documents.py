"""An fpdf2 document in which no user text can break the page: every string the document sets
(cells, multi-cells, table cells, headers and footers) passes through
``exports.document_text`` with the glyphs of the fonts loaded, so control characters and
characters outside the font print as a visible U+FFFD, very long words wrap, and text over
``TEXT_LIMIT`` characters is cut with a marker saying how much was cut."""

from __future__ import annotations

from fpdf import FPDF

from ketacare.exports import document_text

# Longer than any text the app itself prints (the disclaimer, an FDA warning), short enough that
# one table cell always fits on a page.
TEXT_LIMIT = 3000
# fpdf2 wraps a long word by itself; a SHA-256 (64 hex digits) must stay whole.
LONGEST_WORD = 120
# A table row must fit on one page: a table cell is cut sooner.
CELL_LIMIT = 200


def cell_text(value: object) -> str:
    """Text for one table cell, cut at ``CELL_LIMIT`` characters with a marker."""
    return document_text(value, limit=CELL_LIMIT, longest_word=LONGEST_WORD)


class SafeTextPdf(FPDF):
    """FPDF whose every string is made safe to set (see the module docstring)."""

    def _has_glyph(self, ch: str) -> bool:
        font = self.current_font
        cmap = getattr(font, "cmap", None)
        if cmap is None:
            return ord(ch) < 256
        return ord(ch) in cmap

    def normalize_text(self, text: str) -> str:
        safe = document_text(text, limit=TEXT_LIMIT, longest_word=LONGEST_WORD, has_glyph=self._has_glyph)
        return super().normalize_text(safe)
