"""What the FHIR route modules share: the base path, who may read or write, the base URL a
client sees, and a response in the FHIR media type."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Request
from starlette.responses import JSONResponse, Response

from ketacare.auth.permissions import Permission
from ketacare.auth.principal import Principal
from ketacare.web.deps import require
from ketacare.web.problems import FHIR_JSON

BASE = "/fhir/R4"
Reader = Annotated[Principal, require(Permission.fhir_read)]
Writer = Annotated[Principal, require(Permission.fhir_write)]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + BASE


def fhir_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)
