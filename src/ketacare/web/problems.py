"""Errors mapped in one place: an HTML page for people, RFC 9457 problem+json for the API."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from markupsafe import escape
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route

from ketacare.errors import (
    Conflict,
    DatabaseUnavailable,
    InvalidInput,
    KetaCareError,
    NotAuthenticated,
    ReauthenticationRequired,
    Throttled,
)
from ketacare.web.deps import MfaPending, is_background
from ketacare.web.templating import render

log = logging.getLogger("ketacare")
PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"
FHIR_PREFIX = "/fhir/"
# OperationOutcome.issue.code (FHIR R4 value set issue-type) for each HTTP status we send.
_FHIR_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    503: "transient",
}


def wants_json(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", FHIR_PREFIX)):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def operation_outcome(status: int, title: str, detail: str, errors: object = None) -> dict[str, object]:
    """The FHIR shape of an error: one issue for the whole, one more per field in error."""
    code = _FHIR_ISSUE_CODES.get(status, "exception")
    severity = "error" if status < 500 else "fatal"
    issues: list[dict[str, object]] = [
        {"severity": severity, "code": code, "details": {"text": title}, "diagnostics": detail}
    ]
    if isinstance(errors, list):
        for err in errors:
            if isinstance(err, dict):
                issues.append(
                    {
                        "severity": "error",
                        "code": "invalid",
                        "diagnostics": str(err.get("message", "")),
                        "expression": [str(err.get("field", ""))],
                    }
                )
    return {"resourceType": "OperationOutcome", "issue": issues}


def problem(request: Request, status: int, title: str, detail: str, slug: str, **extra: object) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if request.url.path.startswith(FHIR_PREFIX):
        body = operation_outcome(status, title, detail, extra.get("errors"))
        return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)
    body = {
        "type": f"https://ketacare.example/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _html_error(request: Request, status: int, title: str, detail: str) -> Response:
    return render(request, "error.html", {"title": title, "detail": detail, "status": status}, status)


def _refused_page(request: Request, exc: Conflict) -> Response:
    """A form's action refused (409): the reason, that nothing changed, and the way back to the
    page the form was on; never a bare "Conflict"."""
    back = _return_path(request) if request.method not in ("GET", "HEAD") else ""
    context = {
        "title": "Not done",
        "detail": str(exc) if exc.detail else "The action was refused.",
        "status": exc.status_code,
        "refused": True,
        "back": back if back != "/" else "",
    }
    return render(request, "error.html", context, exc.status_code)


def _return_path(request: Request) -> str:
    """Where to come back to after logging in again: the page, not the address a form posted to."""
    if request.method in ("GET", "HEAD") and request.headers.get("hx-request") != "true":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc == request.url.netloc and referer.path.startswith("/"):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return "/"


def _redirect(request: Request, target: str) -> Response:
    """htmx would follow a redirect and paste the login page into a fragment: send the whole page."""
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


HTMX_STOP_POLLING = 286  # htmx swaps the fragment and stops polling


def _signed_out_fragment(request: Request, next_url: str, exc: KetaCareError) -> Response:
    """A live board whose login ended shows so, with a way back in, and stops polling."""
    reason = "&reason=idle" if exc.slug == "session-expired" else ""
    text = escape(str(exc)) if exc.slug == "session-expired" else "Your login has ended."
    body = (
        '<p class="signed-out" role="alert">Signed out — '
        f'<a href="/login?next={next_url}{reason}">sign in again</a>. {text}</p>'
    )
    return HTMLResponse(body, status_code=HTMX_STOP_POLLING)


async def handle_ketacare_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KetaCareError)
    response = await _ketacare_error_response(request, exc)
    if isinstance(exc, Throttled) and exc.retry_after_seconds:
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
    return response


async def _ketacare_error_response(request: Request, exc: KetaCareError) -> Response:
    if wants_json(request):
        return problem(request, exc.status_code, exc.title, str(exc), exc.slug, **exc.extra())
    next_url = quote(_return_path(request))
    if isinstance(exc, MfaPending):
        return _redirect(request, f"/login/mfa?next={next_url}")
    if isinstance(exc, ReauthenticationRequired):
        return _redirect(request, f"/reauth?next={next_url}")
    if isinstance(exc, NotAuthenticated) and is_background(request):
        return _signed_out_fragment(request, next_url, exc)
    if isinstance(exc, NotAuthenticated):
        reason = "&reason=idle" if exc.slug == "session-expired" else ""
        return _redirect(request, f"/login?next={next_url}{reason}")
    if isinstance(exc, Conflict):
        return _refused_page(request, exc)
    if isinstance(exc, InvalidInput):
        details = "; ".join(f"{k}: {v}" for k, v in exc.errors.items()) or str(exc)
        return _html_error(request, exc.status_code, exc.title, details)
    return _html_error(request, exc.status_code, exc.title, str(exc))


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]), "message": err["msg"]}
        for err in exc.errors()
    ]
    if wants_json(request):
        return problem(
            request,
            422,
            InvalidInput.title,
            "The request was not accepted; nothing was changed.",
            InvalidInput.slug,
            errors=errors,
        )
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return _html_error(request, 422, InvalidInput.title, detail)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    titles = {404: "Page not found", 405: "Method not allowed", 413: "The request is too large"}
    title = titles.get(exc.status_code, "Request not accepted")
    detail = "There is nothing at this address." if exc.status_code == 404 else str(exc.detail)
    if exc.status_code == 405:
        detail = "This address does not take that method; the Allow header lists those it takes."
    if wants_json(request):
        response = problem(request, exc.status_code, title, detail, f"http-{exc.status_code}")
    else:
        response = _html_error(request, exc.status_code, title, detail)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path (Starlette names only the first route's)."""
    probe = {**request.scope, "method": "GET"}
    methods: set[str] = set()
    for route in _leaf_routes(request.app.routes):
        if route.methods and route.matches(probe)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)


def _leaf_routes(routes: Iterable[BaseRoute]) -> Iterator[Route]:
    """The routes themselves: an included router (no prefix in this app) is walked into."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        elif isinstance(route, Route):
            yield route


async def handle_database_error(request: Request, exc: Exception) -> Response:
    log.error("database error on %s: %s", request.url.path, exc)
    unavailable = DatabaseUnavailable(
        "The database is busy or unavailable, so nothing was saved. Try again in a moment."
    )
    return await handle_ketacare_error(request, unavailable)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    detail = "Something went wrong on our side and nothing was saved. The error was logged."
    if wants_json(request):
        return problem(request, 500, "Internal error", detail, "internal-error")
    return _html_error(request, 500, "Something went wrong", detail)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem: what went wrong, and that nothing was changed.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
OPERATION_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 OperationOutcome: one issue for the whole, one per field in error.",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"type": "string"},
        "issue": {"type": "array", "items": {"type": "object"}},
    },
}

# A FHIR success without a model of its own: some R4 resource (a Bundle, a CapabilityStatement, a
# Patient ...), which the FHIR specification describes.
FHIR_RESOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 resource.",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Say in the OpenAPI document what the handlers above answer: every operation may answer an
    error as problem+json (an OperationOutcome as application/fhir+json under /fhir/), including
    the 422 FastAPI would otherwise document as its own JSON shape; FHIR successes are fhir+json."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    components["OperationOutcome"] = OPERATION_OUTCOME_SCHEMA
    for path, item in schema.get("paths", {}).items():
        fhir = path.startswith(FHIR_PREFIX)
        media, ref = (FHIR_JSON, "OperationOutcome") if fhir else (PROBLEM_JSON, "Problem")
        error = {"schema": {"$ref": f"#/components/schemas/{ref}"}}
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "422" in responses:
                responses["422"]["content"] = {media: error}
            responses.setdefault(
                "default", {"description": "An error; nothing was changed.", "content": {media: error}}
            )
            if fhir:
                for code, response in responses.items():
                    content = response.get("content", {})
                    if code.startswith("2") and "application/json" in content:
                        if not content["application/json"].get("schema"):
                            content["application/json"] = {"schema": {"type": "object"}}
                            content.setdefault(FHIR_JSON, {"schema": FHIR_RESOURCE_SCHEMA})
                        content.setdefault(FHIR_JSON, content["application/json"])
    return schema


def install(app: FastAPI) -> None:
    app.add_exception_handler(KetaCareError, handle_ketacare_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    app.add_exception_handler(OperationalError, handle_database_error)
    app.add_exception_handler(PoolTimeout, handle_database_error)
    app.add_exception_handler(Exception, handle_unexpected)
