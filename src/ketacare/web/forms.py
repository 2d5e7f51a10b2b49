"""Form handling for server-rendered pages: read the posted fields once, keep them on error."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from ketacare.web.csrf import CSRF_FIELD


async def form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}


async def form_lists(request: Request) -> dict[str, list[str]]:
    form = await request.form()
    result: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str) and key != CSRF_FIELD:
            result.setdefault(key, []).append(value)
    return result


FormData = Annotated[dict[str, str], Depends(form_data)]
FormLists = Annotated[dict[str, list[str]], Depends(form_lists)]


def safe_next(target: str | None, default: str = "/") -> str:
    """Only same-site paths: never an open redirect to another host."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target
