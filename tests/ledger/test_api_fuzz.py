"""Schemathesis on the ledger's JSON API as a logged-in clinic admin (the suite-wide fuzzer uses
an API token, which the ledger refuses): no input may cause a server error."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings


def test_the_ledger_api_never_fails_with_a_server_error(app, as_role, stock) -> None:  # type: ignore[no-untyped-def]
    admin = as_role("admin")
    cookies = dict(admin.client.cookies)
    headers = {"X-CSRF-Token": admin.csrf}
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [o for o in operations if o.path.startswith("/api/v1/ledger")]
    assert len(operations) >= 20
    failures: list[tuple[str, int, str]] = []
    accepted = 0

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # type: ignore[no-untyped-def]
            nonlocal accepted
            response = case.call(headers=headers, cookies=cookies)
            accepted += response.status_code < 300
            if response.status_code >= 500:
                failures.append((case.path, response.status_code, response.text[:300]))
            elif response.status_code >= 400:
                content_type = response.headers.get("content-type", [""])
                content_type = content_type[0] if isinstance(content_type, list) else content_type
                assert content_type.startswith("application/problem+json"), response.text

        check()
    assert not failures, failures[:5]
    assert accepted > 10  # the fuzzer got past log-in and CSRF, not only refusals
