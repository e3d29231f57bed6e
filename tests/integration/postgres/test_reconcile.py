"""Inspect -> plan -> apply against real PostgreSQL servers: every kind of action, idempotence, safety."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tenantctl.aws.secrets import SecretsManagerStore
from tenantctl.errors import RefusedError
from tenantctl.model.desired import DesiredState
from tenantctl.postgres.connect import ClusterConnection
from tenantctl.postgres.engine import apply_cluster, plan_cluster

pytestmark = pytest.mark.postgres


def kinds(plan: Any) -> set[str]:
    return {action.kind for action in plan.actions}


def admin(connection: ClusterConnection, dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(host=connection.host, port=connection.port, user=connection.admin_user,
                           password=connection.admin_password, dbname=dbname, autocommit=True)


def converge(desired: DesiredState, cluster: str, connection: ClusterConnection,
             store: SecretsManagerStore) -> None:
    apply_cluster(plan_cluster(desired, cluster, connection, secrets=store), desired, connection, secrets=store)
    assert plan_cluster(desired, cluster, connection, secrets=store, deep=True).actions == ()


def test_from_empty_creates_everything_and_then_plans_nothing(
        pg_servers: Any, desired_of: Callable[..., DesiredState], secret_store: SecretsManagerStore,
        prefix: str) -> None:
    _, connection = pg_servers("main")
    desired = desired_of([{"name": "alpha", "databases": ["db1", "db2"]}, {"name": "beta", "iam": True}],
                         prefix=prefix)
    plan = plan_cluster(desired, "main", connection, secrets=secret_store)
    assert kinds(plan) == {"create_role", "set_role_setting", "grant_membership", "set_password",
                           "create_database", "set_database_privileges", "open_database", "reconcile_schemas"}
    assert set(plan.by_tenant()) == {"alpha", "beta", ""}  # "": the cluster-wide revoke on database postgres
    assert [a.subject for a in plan.by_tenant()[""]] == ["postgres"]
    phases = [a.phase for a in plan.actions]
    assert phases == sorted(phases)
    apply_cluster(plan, desired, connection, secrets=secret_store)

    again = plan_cluster(desired, "main", connection, secrets=secret_store)
    assert again.actions == () and again.catalog_queries == 3
    assert plan_cluster(desired, "main", connection, secrets=secret_store, deep=True).actions == ()

    alpha = f"{prefix}alpha"
    password = secret_store.get_password(f"tenantctl/{alpha}/postgres")
    assert password
    with psycopg.connect(host=connection.host, port=connection.port, user=alpha, password=password,
                         dbname=f"{alpha}_db1") as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("2min",)
        conn.execute("CREATE TABLE t (id int)")  # login role has CREATE on schema public
    with pytest.raises(psycopg.OperationalError, match='permission denied for database "postgres"'):
        psycopg.connect(host=connection.host, port=connection.port, user=alpha, password=password,
                        dbname="postgres")  # the maintenance database lists every tenant: closed to tenants
    with admin(connection) as conn:
        row = conn.execute("SELECT rolconnlimit, rolcanlogin FROM pg_roles WHERE rolname = %s", (alpha,)).fetchone()
        assert row == (50, True)
        members = conn.execute("SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                               "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s ORDER BY 1",
                               (f"{prefix}beta",)).fetchall()
        assert set(members) == {(f"{prefix}beta_owner",), ("rds_iam",)}
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                             (f"{alpha}_db2",)).fetchone()
        assert owner == (f"{alpha}_owner",)


def test_drift_of_every_kind_is_planned_and_repaired(
        pg_servers: Any, desired_of: Callable[..., DesiredState], secret_store: SecretsManagerStore,
        prefix: str) -> None:
    _, connection = pg_servers("main")
    desired = desired_of([{"name": "alpha"}, {"name": "beta", "iam": True}], prefix=prefix)
    converge(desired, "main", connection, secret_store)
    alpha, beta = f"{prefix}alpha", f"{prefix}beta"
    with admin(connection) as conn:
        for statement in (
            f"ALTER ROLE {alpha} CONNECTION LIMIT 3 CREATEDB",
            f"ALTER ROLE {alpha} RESET statement_timeout",
            f"GRANT {beta}_owner TO {alpha}",
            f"REVOKE {alpha}_owner FROM {alpha}",
            f"ALTER ROLE {beta} PASSWORD 'leftover'",
            f"COMMENT ON ROLE {beta}_owner IS NULL",
            f"GRANT CONNECT ON DATABASE {beta}_app TO PUBLIC",
            f"GRANT CONNECT ON DATABASE {beta}_app TO {alpha}",
            f"ALTER DATABASE {alpha}_app OWNER TO {beta}_owner",
            f"ALTER DATABASE {alpha}_app WITH ALLOW_CONNECTIONS false",
        ):
            conn.execute(statement)
    with admin(connection, f"{beta}_app") as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        conn.execute(f"ALTER DEFAULT PRIVILEGES FOR ROLE {beta} IN SCHEMA public GRANT SELECT ON TABLES TO {alpha}")

    fast = plan_cluster(desired, "main", connection, secrets=secret_store)
    deep = plan_cluster(desired, "main", connection, secrets=secret_store, deep=True)
    expected = {"alter_role", "set_role_setting", "grant_membership", "revoke_membership", "remove_password",
                "mark_role", "set_database_privileges", "set_database_owner", "open_database"}
    assert expected <= kinds(fast)
    assert "reconcile_schemas" not in kinds(fast)  # in-database drift is only read with --deep
    assert "reconcile_schemas" in kinds(deep)
    described = " | ".join(a.description for a in deep.actions)
    assert "remove CREATEDB" in described and f"revoke role {beta}_owner from {alpha}" in described
    apply_cluster(deep, desired, connection, secrets=secret_store)
    assert plan_cluster(desired, "main", connection, secrets=secret_store, deep=True).actions == ()
    with admin(connection, f"{beta}_app") as conn:
        acl = conn.execute("SELECT has_schema_privilege('public', 'public', 'CREATE')").fetchone()
        assert acl == (False,)


def test_stale_plan_is_refused_and_nothing_is_applied(
        pg_servers: Any, desired_of: Callable[..., DesiredState], secret_store: SecretsManagerStore,
        prefix: str) -> None:
    _, connection = pg_servers("main")
    desired = desired_of([{"name": "alpha"}], prefix=prefix)
    plan = plan_cluster(desired, "main", connection, secrets=secret_store)
    with admin(connection) as conn:
        conn.execute(f"CREATE ROLE {prefix}alpha_owner NOLOGIN")  # someone changed the cluster meanwhile
    with pytest.raises(RefusedError, match="stale"):
        apply_cluster(plan, desired, connection, secrets=secret_store)
    with admin(connection) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s",
                            (f"{prefix}%",)).fetchone() == (0,)
    fresh = plan_cluster(desired, "main", connection, secrets=secret_store)
    assert "mark_role" in kinds(fresh)  # adopts the hand-made role instead of failing on CREATE ROLE
    apply_cluster(fresh, desired, connection, secrets=secret_store)


def test_removed_tenant_is_reported_as_orphan_never_dropped(
        pg_servers: Any, desired_of: Callable[..., DesiredState], secret_store: SecretsManagerStore,
        prefix: str) -> None:
    _, connection = pg_servers("main")
    both = desired_of([{"name": "alpha", "databases": ["db1", "db2"]}, {"name": "beta"}], prefix=prefix)
    converge(both, "main", connection, secret_store)
    fewer = desired_of([{"name": "alpha", "databases": ["db1"]}], prefix=prefix)
    plan = plan_cluster(fewer, "main", connection, secrets=secret_store)
    assert plan.actions == ()
    orphans = {(o.kind, o.name) for o in plan.orphans}
    assert orphans == {("role", f"{prefix}beta"), ("role", f"{prefix}beta_owner"),
                       ("database", f"{prefix}beta_app"), ("database", f"{prefix}alpha_db2")}


KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from tenantctl.aws.secrets import SecretsManagerStore
    from tenantctl.aws.session import AwsTarget, client
    from tenantctl.model import model_from_text
    from tenantctl.model.desired import desired_state
    from tenantctl.postgres.connect import ClusterConnection
    from tenantctl.postgres.engine import apply_cluster, plan_cluster
    from tenantctl.postgres.applier import ApplyOptions

    args = json.loads(sys.argv[1])
    desired = desired_state(model_from_text(args["clients"]))
    connection = ClusterConnection("main", args["host"], args["port"], args["user"], os.environ["ADMIN_PW"])
    store = SecretsManagerStore(client(AwsTarget("eu-west-1", args["moto"]), "secretsmanager"))
    plan = plan_cluster(desired, "main", connection, secrets=store)

    def progress(action):
        if action.kind == "create_database":
            os.kill(os.getpid(), signal.SIGKILL)  # crash right after the first CREATE DATABASE

    apply_cluster(plan, desired, connection, secrets=store, options=ApplyOptions(workers=1), progress=progress)
""")


def test_killed_right_after_create_database_the_next_run_converges(
        pg_servers: Any, desired_of: Callable[..., DesiredState], secret_store: SecretsManagerStore,
        prefix: str, moto_state: Any, clients_text: Callable[..., str]) -> None:
    from tenantctl.local.moto import moto_status

    _, connection = pg_servers("main")
    tenants: list[dict[str, object]] = [{"name": "alpha", "databases": ["db1", "db2"]}, {"name": "beta"}]
    text = clients_text(tenants, prefix=prefix)
    moto = moto_status(moto_state)
    assert moto is not None
    args = {"clients": text, "host": connection.host, "port": connection.port, "user": connection.admin_user,
            "moto": moto.url}
    result = subprocess.run([sys.executable, "-c", KILL_SCRIPT, json.dumps(args)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "ADMIN_PW": connection.admin_password})
    assert result.returncode == -9, result.stderr

    desired = desired_of(tenants, prefix=prefix)
    with admin(connection) as conn:
        created = conn.execute("SELECT datname, datallowconn FROM pg_database WHERE datname LIKE %s",
                               (f"{prefix}%",)).fetchall()
    assert created == [(f"{prefix}alpha_db1", False)]  # exists, but nobody can connect yet
    resumed = plan_cluster(desired, "main", connection, secrets=secret_store)
    assert [a.subject for a in resumed.actions if a.kind == "create_database"] == [
        f"{prefix}alpha_db2", f"{prefix}beta_app"]
    assert any(a.kind == "open_database" and a.subject == f"{prefix}alpha_db1" for a in resumed.actions)
    apply_cluster(resumed, desired, connection, secrets=secret_store)
    assert plan_cluster(desired, "main", connection, secrets=secret_store, deep=True).actions == ()
