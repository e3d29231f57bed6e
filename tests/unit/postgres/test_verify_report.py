"""The verify report: matrix cells, breaches and failures from probes (no servers)."""

from __future__ import annotations

import psycopg

from tenantctl.postgres.verify import ALLOWED, DENIED, ERROR, Probe, VerifyReport, _classify


def report(*probes: Probe) -> VerifyReport:
    return VerifyReport(tenants=("a", "b"), probes=probes, via=None)


def test_matrix_marks_breaches_and_failures() -> None:
    result = report(
        Probe("a", "a", "connect", "a_app", ALLOWED, ALLOWED),
        Probe("a", "b", "connect", "b_app", DENIED, DENIED),
        Probe("b", "b", "connect", "b_app", ALLOWED, DENIED, "password authentication failed"),
        Probe("b", "a", "set_role", "a_owner", DENIED, ALLOWED),
    )
    assert result.matrix() == {"a": {"a": "ok", "b": "denied"}, "b": {"a": "BREACH", "b": "FAIL"}}
    assert [p.check for p in result.breaches] == ["set_role"]
    assert [p.as_tenant for p in result.failures] == ["b"]
    assert result.to_json()["ok"] is False


def test_network_errors_are_not_mistaken_for_refusals() -> None:
    assert _classify(psycopg.OperationalError('connection to server at "x" failed: FATAL:  permission denied '
                                              'for database "b_app"')) == DENIED
    assert _classify(psycopg.OperationalError('connection to server at "127.0.0.1", port 1 failed: '
                                              "Connection refused")) == ERROR
    unreachable = report(Probe("a", "b", "connect", "b_app", DENIED, ERROR, "Connection refused"))
    assert unreachable.cell("a", "b") == "error" and not unreachable.breaches and unreachable.failures
