"""``tenantctl verify``: prove tenant isolation by connecting as every tenant.

For each tenant A: A connects to each of its own databases (must succeed) and to every database of every
other tenant B (must be refused); in its own database A tries ``SET ROLE`` to B's roles (refused). If a
connection to B's database is wrongly accepted, A also tries to create a table there and to read B's
tables, to show how deep the breach goes. Works directly against the clusters or through the proxy.

IAM-auth tenants have no IAM tokens on the local target: for the duration of the check the admin sets a
random verification-only password on their login role (a pre-hashed SCRAM verifier) and removes it
afterwards (``ALTER ROLE ... PASSWORD NULL``), also on failure. Should a hard kill leave one behind, the
next ``pg plan`` shows a ``remove_password`` action for it.
"""

from __future__ import annotations

import contextlib
import secrets as secrets_module
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tenantctl.aws.secrets import SecretStore
from tenantctl.errors import BackendError
from tenantctl.model import naming
from tenantctl.model.desired import DesiredState, TenantState
from tenantctl.postgres.applier import set_verifier_statement
from tenantctl.postgres.connect import ClusterConnection, ClusterResolver, connect_admin
from tenantctl.postgres.scram import scram_verifier

ALLOWED = "allowed"
DENIED = "denied"
ERROR = "error"
CONNECT_TIMEOUT_S = 15


@dataclass(frozen=True)
class Endpoint:
    """Where to connect as a tenant: a cluster directly, or the proxy (``via``)."""

    host: str
    port: int
    through_proxy: bool
    libpq: tuple[tuple[str, str | int], ...] = ()  # a cluster's TLS and connect address (hostaddr)


@dataclass(frozen=True)
class Probe:
    as_tenant: str
    target_tenant: str
    check: str  # "connect" | "set_role" | "create_table" | "read_table"
    target: str  # database or role name
    expected: str  # ALLOWED | DENIED
    outcome: str  # ALLOWED | DENIED | ERROR
    detail: str = ""

    @property
    def breach(self) -> bool:
        return self.expected == DENIED and self.outcome == ALLOWED

    @property
    def failed(self) -> bool:
        return not self.breach and self.outcome != self.expected

    def to_json(self) -> dict[str, Any]:
        return {"as": self.as_tenant, "target_tenant": self.target_tenant, "check": self.check,
                "target": self.target, "expected": self.expected, "outcome": self.outcome,
                "detail": self.detail, "breach": self.breach}


@dataclass(frozen=True)
class VerifyReport:
    tenants: tuple[str, ...]
    probes: tuple[Probe, ...]
    via: str | None

    @property
    def breaches(self) -> tuple[Probe, ...]:
        return tuple(p for p in self.probes if p.breach)

    @property
    def failures(self) -> tuple[Probe, ...]:
        return tuple(p for p in self.probes if p.failed)

    def cell(self, as_tenant: str, target_tenant: str) -> str:
        probes = [p for p in self.probes if p.as_tenant == as_tenant and p.target_tenant == target_tenant]
        if any(p.breach for p in probes):
            return "BREACH"
        if any(p.failed for p in probes):
            return "error" if as_tenant != target_tenant else "FAIL"
        return "ok" if as_tenant == target_tenant else "denied"

    def matrix(self) -> dict[str, dict[str, str]]:
        return {a: {b: self.cell(a, b) for b in self.tenants} for a in self.tenants}

    def to_json(self) -> dict[str, Any]:
        return {"via": self.via, "tenants": list(self.tenants), "matrix": self.matrix(),
                "breaches": [p.to_json() for p in self.breaches],
                "failures": [p.to_json() for p in self.failures],
                "probes": len(self.probes), "ok": not self.breaches and not self.failures}


PasswordFor = Callable[[TenantState], str]


@contextlib.contextmanager
def verification_passwords(desired: DesiredState, resolver: ClusterResolver,
                           store: SecretStore | None) -> Iterator[PasswordFor]:
    """Passwords to log in as each tenant: stored ones, or temporary ones for IAM-auth tenants."""
    temporary: dict[str, str] = {}
    touched: list[tuple[ClusterConnection, str]] = []
    try:
        for tenant in desired.tenants:
            if tenant.login_role.password_auth:
                continue
            target = resolver.resolve(tenant.cluster)
            password = secrets_module.token_urlsafe(24)
            with connect_admin(target) as connection:
                touched.append((target, tenant.login_role.name))
                _execute(connection, set_verifier_statement(tenant.login_role.name, scram_verifier(password)),
                         f"setting the verification password of {tenant.login_role.name}")
            temporary[tenant.name] = password

        def password_for(tenant: TenantState) -> str:
            if tenant.name in temporary:
                return temporary[tenant.name]
            if store is None:
                raise BackendError(f"no secret store to read the password of tenant {tenant.name!r}")
            password = store.get_password(naming.secret_name(desired.model.settings, tenant.name))
            if password is None:
                raise BackendError(f"tenant {tenant.name!r} has no stored password",
                                   hint="run `tenantctl pg apply` first")
            return password

        yield password_for
    finally:
        for target, role in touched:
            with connect_admin(target) as connection:
                _execute(connection, sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(role)),
                         f"removing the verification password of {role}")


def verify(desired: DesiredState, resolver: ClusterResolver, password_for: PasswordFor, *,
           via: Endpoint | None = None, workers: int = 4) -> VerifyReport:
    endpoints: dict[str, Endpoint] = {}
    for cluster in sorted({t.cluster for t in desired.tenants}):
        target = resolver.resolve(cluster)
        endpoints[cluster] = via or Endpoint(target.host, target.port, through_proxy=False,
                                             libpq=tuple(sorted(target.libpq_params().items())))
    tenants = desired.tenants
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tenantctl-verify") as pool:
        results = list(pool.map(lambda t: _probe_tenant(t, tenants, endpoints, password_for(t)), tenants))
    probes = tuple(p for batch in results for p in batch)
    return VerifyReport(tenants=tuple(t.name for t in tenants), probes=probes,
                        via=f"{via.host}:{via.port}" if via else None)


def _probe_tenant(tenant: TenantState, everyone: tuple[TenantState, ...], endpoints: Mapping[str, Endpoint],
                  password: str) -> list[Probe]:
    probes: list[Probe] = []
    user = tenant.login_role.name
    own_endpoint = endpoints[tenant.cluster]
    others = [t for t in everyone if t.name != tenant.name]
    for index, database in enumerate(tenant.databases):
        dbname = database.logical if own_endpoint.through_proxy else database.name
        try:
            connection = _connect(own_endpoint, dbname, user, password)
        except psycopg.Error as error:
            probes.append(Probe(tenant.name, tenant.name, "connect", database.name, ALLOWED,
                                _classify(error), _message(error)))
            continue
        with connection:
            probes.append(Probe(tenant.name, tenant.name, "connect", database.name, ALLOWED, ALLOWED))
            if index == 0:
                for other in others:
                    for role in other.roles:
                        probes.append(_try(connection, tenant, other, "set_role", role.name,
                                           sql.SQL("SET ROLE {}").format(sql.Identifier(role.name))))
    for other in others:
        endpoint = endpoints[other.cluster]
        for database in other.databases:
            try:
                connection = _connect(endpoint, database.name, user, password)
            except psycopg.Error as error:
                probes.append(Probe(tenant.name, other.name, "connect", database.name, DENIED,
                                    _classify(error), _message(error)))
                continue
            with connection:
                probes.append(Probe(tenant.name, other.name, "connect", database.name, DENIED, ALLOWED,
                                    "connection accepted"))
                probes += _probe_breached_database(connection, tenant, other, database.name)
    return probes


def _probe_breached_database(connection: psycopg.Connection[Any], tenant: TenantState, other: TenantState,
                             database: str) -> list[Probe]:
    probes = [_try(connection, tenant, other, "create_table", database,
                   sql.SQL("CREATE TABLE public.tenantctl_verify_probe (id int)"))]
    try:
        tables = connection.execute(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1 LIMIT 3").fetchall()
    except psycopg.Error:
        tables = []
    for (table,) in tables:
        probes.append(_try(connection, tenant, other, "read_table", f"{database}.{table}",
                           sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.SQL(table))))
    return probes


def _try(connection: psycopg.Connection[Any], tenant: TenantState, other: TenantState, check: str,
         target: str, statement: sql.Composed | sql.SQL) -> Probe:
    """Run ``statement`` in a transaction that is always rolled back; refused means isolated."""
    try:
        with connection.transaction(force_rollback=True):
            connection.execute(statement)
    except psycopg.Error as error:
        return Probe(tenant.name, other.name, check, target, DENIED, _classify(error), _message(error))
    return Probe(tenant.name, other.name, check, target, DENIED, ALLOWED, f"{check} succeeded")


def _connect(endpoint: Endpoint, dbname: str, user: str, password: str) -> psycopg.Connection[Any]:
    params: dict[str, Any] = {"host": endpoint.host, "port": endpoint.port, **dict(endpoint.libpq)}
    return psycopg.connect(**params, dbname=dbname, user=user, password=password, autocommit=True,
                           connect_timeout=CONNECT_TIMEOUT_S,
                           application_name="tenantctl-verify")


def _classify(error: psycopg.Error) -> str:
    """Refused by the server (authorization, authentication, unknown object) vs. anything else."""
    state = error.sqlstate or ""
    if state.startswith(("28", "42", "3D", "22")) or "FATAL:" in str(error):
        return DENIED
    return ERROR


def _message(error: psycopg.Error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _execute(connection: psycopg.Connection[Any], statement: sql.Composed | sql.SQL, what: str) -> None:
    try:
        connection.execute(statement)
    except psycopg.Error as error:
        raise BackendError(f"{what}: {_message(error)}") from error
