"""Schemathesis against every service's OpenAPI: >= 200 generated cases per service, zero 5xx,
every status code documented, every response body matching its schema. Calls alternate between
a customer's and an admin's token, so protected routes are exercised too."""

from __future__ import annotations

import math

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from svc_stack import SERVICE_NAMES

MIN_CASES = 200
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@pytest.mark.slow
@pytest.mark.parametrize("name", [*SERVICE_NAMES, "monolith"])
def test_openapi_fuzzing_finds_no_server_error(stack, headers, request, name):
    base_url = request.getfixturevalue("monolith").url if name == "monolith" else stack.url(name)
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the schema lists no operations"
    per_operation = math.ceil(1.5 * MIN_CASES / len(operations)) + 5
    auth_cycle = [headers["alice"], headers["admin"]]
    counts: dict[str, int] = {}
    failures: list[str] = []

    def fuzz(operation, budget: int, round_: int) -> None:
        label = f"{operation.method.upper()} {operation.path}"

        @hypothesis.seed(round_)
        @given(case=operation.as_strategy())
        @settings(max_examples=budget, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])
        def run(case):
            n = counts.get(label, 0)
            counts[label] = n + 1
            case.headers = {**(case.headers or {})}
            if "authorization" not in {k.lower() for k in case.headers}:
                case.headers.update(auth_cycle[n % 2])
            try:
                case.call_and_validate(base_url=base_url, checks=CHECKS)
            except Exception as exc:  # collect, report all at the end
                failures.append(f"{label}: {str(exc)[:600]}")
            finally:
                if operation.path == "/admin/fault" and operation.method.lower() == "put":
                    httpx.delete(base_url + "/admin/fault", headers=headers["admin"])

        run()

    # Operations without parameters yield one distinct case; fuzz the others again with new
    # seeds until the service has had its MIN_CASES.
    for round_ in range(6):
        for operation in operations:
            fuzz(operation, per_operation, round_)
        if sum(counts.values()) >= MIN_CASES:
            break

    total = sum(counts.values())
    print(f"{name}: {total} cases over {len(operations)} operations: {counts}")
    assert not failures, f"{len(failures)} failing cases, first ones:\n" + "\n".join(failures[:5])
    assert total >= MIN_CASES, f"only {total} cases generated for {name}"
