"""Schemathesis generates requests from the OpenAPI document: no input may cause a server error,
and every error is an RFC 9457 problem (an OperationOutcome under /fhir/)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from ketacare.auth import service as auth


def test_api_never_fails_with_a_server_error(app, world, db) -> None:  # type: ignore[no-untyped-def]
    actor = auth.principal_for(world.users["admin"], None, "127.0.0.1")
    _, secret = auth.create_api_token(
        db, actor, "fuzzer", ["patient:read", "patient:write", "device:vitals", "system/*.read"]
    )
    db.commit()
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers={"Authorization": f"Bearer {secret}"})
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                content_type = response.headers.get("content-type", [""])
                content_type = content_type[0] if isinstance(content_type, list) else content_type
                expected = (
                    "application/fhir+json" if case.path.startswith("/fhir/") else "application/problem+json"
                )
                assert content_type.startswith(expected), (case.path, response.text)

        check()
