"""Form handling for server-rendered pages: read the posted fields once, keep them on error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session
from starlette.responses import Response

from ketacare.errors import InvalidInput
from ketacare.web.csrf import CSRF_FIELD

T = TypeVar("T")


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


def form_action(
    db: Session,
    action: Callable[[], T],
    *,
    done: str | Callable[[T], str],
    again: Callable[[dict[str, str]], Response],
) -> Response:
    """The one path of a form post on a page: the action succeeds and the browser is sent on
    (303 to ``done``, Post/Redirect/Get), or its input is refused, what it began is rolled back,
    and the same form comes back (``again`` with the errors, answered 422) holding what was typed.
    A refusal for another reason (409 and the rest) is not caught: the error pages show it."""
    try:
        result = action()
    except InvalidInput as exc:
        db.rollback()
        page = again(exc.errors)
        page.status_code = 422
        return page
    return RedirectResponse(done(result) if callable(done) else done, status_code=303)
