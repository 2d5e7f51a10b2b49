"""Shared rules for files people download: CSV opened in a spreadsheet, and text set in a
document (PDF, chart image, chart hover box).

CSV: a spreadsheet runs a text cell that starts with = + - @ (or a tab, CR or LF, or the
full-width ＝ ＋ － ＠) as a formula (OWASP "CSV injection"). Every CSV the app writes goes
through ``csv_text``/``SafeCsvWriter``/``frame_csv``, which prefix such a cell with a single quote.
A cell that is a genuine number (``-1.5``, ``+3``) stays as it is; ``nan``/``inf`` text is text.

Documents: ``document_text`` makes user text safe to set: control characters become a visible
substitute, characters the font has no glyph for become U+FFFD (visible, never dropped), very
long words are broken, and very long text is cut with a marker."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# The first character (after leading whitespace) that a spreadsheet reads as the start of a formula.
FORMULA_STARTS = frozenset("=+-@\t\r\n" + "\uff1d\uff0b\uff0d\uff20")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def is_number_text(text: str) -> bool:
    """A plain decimal number such as -1.000 or 2.5e3 is data, not a formula."""
    return _NUMBER.fullmatch(text) is not None


def spreadsheet_safe(value: object) -> object:
    """One CSV cell: booleans read yes/no, None is empty, numbers stay, text that a spreadsheet
    would run as a formula is prefixed with a single quote."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    if not text or is_number_text(text):
        return text
    if text[:1] in FORMULA_STARTS or text.lstrip()[:1] in FORMULA_STARTS:
        return "'" + text
    return text


class SafeCsvWriter:
    """``csv.writer`` whose every cell passes through ``spreadsheet_safe``."""

    def __init__(self, stream: Any) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([spreadsheet_safe(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_text(header: Sequence[object], rows: Iterable[Iterable[object]]) -> str:
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def frame_csv(frame: pd.DataFrame, path: Path | None = None) -> str:
    """A pandas frame as spreadsheet-safe CSV (missing values empty); written to ``path`` if given."""
    rows = (
        [None if _missing(v) else v for v in record] for record in frame.itertuples(index=False, name=None)
    )
    text = csv_text([str(c) for c in frame.columns], rows)
    if path is not None:
        path.write_text(text, encoding="utf-8", newline="")
    return text


def _missing(value: object) -> bool:
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, list | tuple | dict) else False
    except (TypeError, ValueError):
        return False


# --- text set in a document -------------------------------------------------------------------

SUBSTITUTE = "\ufffd"
CUT_MARKER = " … [cut: {n} more characters]"
_CONTROL_KEEP = {"\n"}


def document_text(
    value: object,
    *,
    limit: int = 2000,
    longest_word: int = 40,
    has_glyph: Callable[[str], bool] | None = None,
    keep_newlines: bool = True,
) -> str:
    """User text made safe to set in a document: control and format characters (other than a
    newline) become U+FFFD; characters the font cannot draw become U+FFFD; a run of more than
    ``longest_word`` non-space characters is broken with a space; text over ``limit`` characters
    is cut and says how much was cut."""
    text = "" if value is None else str(value)
    extra = 0
    if len(text) > limit:
        extra = len(text) - limit
        text = text[:limit]
    out: list[str] = []
    run = 0
    for ch in text:
        if ch in _CONTROL_KEEP and keep_newlines:
            out.append(ch)
            run = 0
            continue
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs", "Co", "Cn") or (category == "Cf" and ch not in "\u200d"):
            ch = " " if ch in "\t\r\n" else SUBSTITUTE
        elif has_glyph is not None and not ch.isspace() and not has_glyph(ch):
            ch = SUBSTITUTE
        if ch.isspace():
            run = 0
        else:
            run += 1
            if run > longest_word:
                out.append(" ")
                run = 1
        out.append(ch)
    result = "".join(out)
    if extra:
        result += CUT_MARKER.format(n=extra)
    return result


def pdf_glyphs(pdf: Any) -> Callable[[str], bool]:
    """Whether every font loaded into an fpdf2 document can draw a character (a substitute is
    visible; a missing glyph would silently vanish from the page)."""
    maps = [set(font.cmap) for font in pdf.fonts.values() if hasattr(font, "cmap")]
    common = frozenset(set.intersection(*maps)) if maps else frozenset()
    return lambda ch: ord(ch) in common
