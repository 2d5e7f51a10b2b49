"""Session report (printable page and PDF), the esketamine REMS monitoring form, and the
clinic's alarm-settings page. Included by ``sessions.routes``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
