"""Shared rules for files people download (CSV opened in a spreadsheet)."""

from __future__ import annotations


def spreadsheet_safe(value: object) -> object:
    """A spreadsheet runs a cell that starts with = + - @ (or a tab or CR) as a formula: quote
    such text; booleans read yes/no and None is empty."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(value):
        return "'" + value
    return value


def _is_number(text: str) -> bool:
    """A signed number such as -1.000 is data, not a formula."""
    try:
        float(text)
    except ValueError:
        return False
    return True
