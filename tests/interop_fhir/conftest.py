"""FHIR test helpers: every resource the API produces is validated with ``fhir.resources``
(its R4B models, which share R4's shape for every type served here), and system clients get
tokens with SMART-style scopes through the auth service, as the token page makes them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from ketacare.auth import service as auth
from ketacare.auth.principal import Principal
from ketacare.auth.roles import Role

FHIR_JSON = "application/fhir+json"


def validate(resource: dict[str, Any]) -> Any:
    """Parse with the fhir.resources model of the resource's type; raises on anything invalid."""
    kind = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{kind.lower()}")
    return getattr(module, kind).model_validate(resource)


def validate_bundle(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Validates the bundle and each resource in it; returns the resources."""
    validate(bundle)
    resources = [e["resource"] for e in bundle.get("entry", [])]
    for resource in resources:
        validate(resource)
    return resources


@pytest.fixture
def token_for(db: Session, world) -> Callable[..., dict[str, str]]:  # type: ignore[no-untyped-def]
    """``token_for("system/*.read")``: headers carrying a fresh token of the test clinic."""
    admin = world.users["admin"]
    actor = Principal(admin.id, admin.username, Role.clinic_admin, world.clinic.id)
    made = 0

    def make(*scopes: str, clinic_actor: Principal | None = None) -> dict[str, str]:
        nonlocal made
        made += 1
        _, secret = auth.create_api_token(db, clinic_actor or actor, f"fhir client {made}", list(scopes))
        db.commit()
        return {"Authorization": f"Bearer {secret}", "Accept": FHIR_JSON}

    return make
