"""FastAPI application factory: mounts each feature's router, templates and static files."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.responses import Response

from ketacare import __version__, integrity
from ketacare.config import Settings
from ketacare.db import make_engine, make_sessionmaker
from ketacare.features import FEATURES
from ketacare.interop.fhir.bulk import start_worker as start_fhir_export_worker
from ketacare.migrations import ensure_at_head
from ketacare.web import csrf, problems
from ketacare.web.limits import BodySizeLimit
from ketacare.web.templating import PACKAGE_DIR, build_templates

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'"
)

HSTS = "max-age=31536000; includeSubDomains"


def create_app(settings: Settings, *, engine: Engine | None = None, check_migrations: bool = True) -> FastAPI:
    engine = engine or make_engine(
        settings.resolved_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    integrity.configure_from(settings)  # the chain key: required in production

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if check_migrations:
            ensure_at_head(engine)
        fhir_export_worker = start_fhir_export_worker(settings, engine)  # FHIR Bulk Data jobs
        try:
            yield
        finally:
            if fhir_export_worker is not None:
                fhir_export_worker.stop()

    app = FastAPI(
        title="KetaCare API",
        version=__version__,
        description=(
            "Ketamine pain-therapy programme. Decision support for licensed clinicians; "
            "errors are RFC 9457 problem+json."
        ),
        docs_url=None,  # served by web.routes from vendored Swagger UI: no CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.templates = build_templates(settings.clinic_time_zone)

    problems.install(app)
    _document_problems(app)
    _install_middleware(app, settings)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "web" / "static"), name="static")
    for feature in FEATURES:
        module = importlib.import_module(f"ketacare.{feature}.routes")
        # The feature routers have no prefix, tags or dependencies of their own, so their routes
        # join the app as they are: include_router would make each app build its own copy of all
        # of them on its first request (about 0.25 s per app on a CI core).
        app.router.routes.extend(module.router.routes)
    return app


def _document_problems(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems.document_problems(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    # Added first, so it runs inside the security middleware: a 413 carries the same headers.
    app.add_middleware(BodySizeLimit, settings=settings)

    @app.middleware("http")
    async def security(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        fresh_cookie = None
        if csrf.CSRF_COOKIE not in request.cookies:
            fresh_cookie = csrf.new_cookie_value()
            request.state.csrf_cookie = fresh_cookie
        response = await call_next(request)
        if fresh_cookie and not request.url.path.startswith("/static"):
            response.set_cookie(
                csrf.CSRF_COOKIE,
                fresh_cookie,
                httponly=True,
                samesite="lax",
                secure=settings.secure_cookies,
                path="/",
            )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        if settings.secure_cookies:
            # Secure cookies mean the site is served over HTTPS: browsers keep to HTTPS for a year.
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        if not request.url.path.startswith("/static"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
