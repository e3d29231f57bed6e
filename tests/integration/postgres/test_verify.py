"""`verify` against real servers: 4 tenants on 2 clusters isolated; deliberate breaches are detected."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tenantctl.aws.secrets import SecretsManagerStore
from tenantctl.model.desired import DesiredState
from tenantctl.postgres.connect import ClusterConnection, StaticClusterResolver
from tenantctl.postgres.engine import apply_cluster, plan_cluster
from tenantctl.postgres.verify import VerifyReport, verification_passwords, verify

pytestmark = pytest.mark.postgres

TENANTS: list[dict[str, object]] = [
    {"name": "alpha", "databases": ["db1", "db2"], "cluster": "one"},
    {"name": "beta", "iam": True, "cluster": "one"},
    {"name": "gamma", "cluster": "two"},
    {"name": "delta", "iam": True, "databases": ["app", "reports"], "cluster": "two"},
]


def setup(pg_servers: Any, desired_of: Callable[..., DesiredState], store: SecretsManagerStore,
          prefix: str) -> tuple[DesiredState, dict[str, ClusterConnection]]:
    connections = {name: pg_servers(name)[1] for name in ("one", "two")}
    desired = desired_of(TENANTS, clusters=("one", "two"), prefix=prefix)
    for name, connection in connections.items():
        apply_cluster(plan_cluster(desired, name, connection, secrets=store), desired, connection, secrets=store)
    return desired, connections


def run_verify(desired: DesiredState, connections: dict[str, ClusterConnection],
               store: SecretsManagerStore) -> VerifyReport:
    resolver = StaticClusterResolver(connections)
    with verification_passwords(desired, resolver, store) as password_for:
        return verify(desired, resolver, password_for)


def admin(connection: ClusterConnection, dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(host=connection.host, port=connection.port, user=connection.admin_user,
                           password=connection.admin_password, dbname=dbname, autocommit=True)


def test_four_tenants_on_two_clusters_are_isolated(
        pg_servers: Any, desired_of: Callable[..., DesiredState], secret_store: SecretsManagerStore,
        prefix: str) -> None:
    desired, connections = setup(pg_servers, desired_of, secret_store, prefix)
    report = run_verify(desired, connections, secret_store)
    matrix = report.matrix()
    assert sorted(matrix) == ["alpha", "beta", "delta", "gamma"]
    for row, cells in matrix.items():
        for column, cell in cells.items():
            assert cell == ("ok" if row == column else "denied"), (row, column, report.to_json())
    assert not report.breaches and not report.failures
    checks = {p.check for p in report.probes}
    assert checks == {"connect", "set_role"}
    # the verification-only passwords of the IAM tenants are gone again
    with admin(connections["one"]) as conn:
        assert conn.execute("SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = %s",
                            (f"{prefix}beta",)).fetchone() == (True,)
    assert plan_cluster(desired, "two", connections["two"], secrets=secret_store).actions == ()


def test_public_connect_grant_is_a_breach(
        pg_servers: Any, desired_of: Callable[..., DesiredState], secret_store: SecretsManagerStore,
        prefix: str) -> None:
    desired, connections = setup(pg_servers, desired_of, secret_store, prefix)
    with admin(connections["one"]) as conn:
        conn.execute(f"GRANT CONNECT ON DATABASE {prefix}alpha_db1 TO PUBLIC")
    with admin(connections["one"], f"{prefix}alpha_db1") as conn:
        conn.execute("CREATE TABLE secrets_of_alpha (id int)")
        conn.execute(f"ALTER TABLE secrets_of_alpha OWNER TO {prefix}alpha_owner")
    report = run_verify(desired, connections, secret_store)
    assert report.cell("beta", "alpha") == "BREACH"
    assert report.cell("gamma", "alpha") == "denied"  # other cluster: beta's grant there does not exist
    breached = {(p.as_tenant, p.check, p.target) for p in report.breaches}
    assert ("beta", "connect", f"{prefix}alpha_db1") in breached
    assert report.cell("alpha", "beta") == "denied"


def test_membership_in_another_tenants_role_is_a_breach(
        pg_servers: Any, desired_of: Callable[..., DesiredState], secret_store: SecretsManagerStore,
        prefix: str) -> None:
    desired, connections = setup(pg_servers, desired_of, secret_store, prefix)
    with admin(connections["two"]) as conn:
        conn.execute(f"GRANT {prefix}gamma_owner TO {prefix}delta")
    report = run_verify(desired, connections, secret_store)
    assert report.cell("delta", "gamma") == "BREACH"
    checks = {p.check for p in report.breaches}
    assert {"connect", "set_role"} <= checks
    assert report.cell("gamma", "delta") == "denied"
