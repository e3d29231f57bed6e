"""Execute a plan's actions against a cluster. The only part of the native engine that changes anything.

Role actions run on one maintenance connection, one transaction per tenant. Database actions run as one
chain per database (CREATE DATABASE, privileges, open, schema grants), chains in parallel on a few
connections. Every identifier and literal goes through ``psycopg.sql``; privilege keywords are checked
against an allow-list, so even an edited plan file cannot inject SQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby

import psycopg
from psycopg import sql

from tenantctl.aws.secrets import SecretStore, get_or_create_password
from tenantctl.errors import BackendError, InputError
from tenantctl.failpoint import failpoint
from tenantctl.model.desired import DATABASE_PRIVILEGES, SCHEMA_PRIVILEGES, SEQUENCE_PRIVILEGES, TABLE_PRIVILEGES
from tenantctl.postgres.connect import ClusterConnection, Connection, connect_admin
from tenantctl.postgres.plan import Action, Phase
from tenantctl.postgres.scram import scram_verifier

ALLOWED_PRIVILEGES = frozenset(DATABASE_PRIVILEGES + SCHEMA_PRIVILEGES + SEQUENCE_PRIVILEGES
                               + TABLE_PRIVILEGES + ("EXECUTE", "CREATE", "USAGE"))
DEFAULT_ACL_OBJECTS = {"table": "TABLES", "sequence": "SEQUENCES", "function": "FUNCTIONS",
                       "type": "TYPES", "schema": "SCHEMAS"}
ROLE_PARAMETERS = frozenset({"statement_timeout", "idle_in_transaction_session_timeout"})
CREATE_DATABASE_STRATEGIES = ("WAL_LOG", "FILE_COPY")

Progress = Callable[[Action], None]


@dataclass(frozen=True)
class ApplyOptions:
    workers: int = 4  # parallel database chains
    create_database_strategy: str = "FILE_COPY"  # PG15+: FILE_COPY avoids WAL-logging template1 each time


def execute(actions: Sequence[Action], target: ClusterConnection, *, secrets: SecretStore | None,
            options: ApplyOptions = ApplyOptions(), progress: Progress | None = None) -> None:
    """Run ``actions`` (already ordered by the planner). Raises ``BackendError`` on the first failure.

    First every tenant's role actions (one transaction per tenant), then every database's chain; both
    stages spread over ``options.workers`` connections. Tenants touch disjoint catalog rows, so their
    transactions do not conflict ("tuple concurrently updated" needs two writers of the same row).
    """
    if options.create_database_strategy not in CREATE_DATABASE_STRATEGIES:
        raise InputError(f"unknown CREATE DATABASE strategy {options.create_database_strategy!r}")
    notify = progress or (lambda action: None)
    by_tenant: dict[str, list[Action]] = {}
    by_database: dict[str, list[Action]] = {}
    for action in actions:
        if action.phase < Phase.CREATE_DATABASES:
            by_tenant.setdefault(action.tenant, []).append(action)
        else:
            by_database.setdefault(action.subject, []).append(action)
    with _WorkerConnections(target) as connections:

        def run_roles(group: list[Action]) -> None:
            _run_transaction(connections.maintenance(), sorted(group, key=Action.sort_key), secrets, notify)

        def run_database(chain: list[Action]) -> None:
            _run_database_chain(sorted(chain, key=Action.sort_key), target, connections, options, notify)

        _in_parallel(run_roles, [by_tenant[name] for name in sorted(by_tenant)], options.workers)
        _in_parallel(run_database, [by_database[name] for name in sorted(by_database)], options.workers)


class _WorkerConnections:
    """One maintenance connection per worker thread, all closed at the end."""

    def __init__(self, target: ClusterConnection) -> None:
        self._target = target
        self._local = threading.local()
        self._opened: list[Connection] = []
        self._lock = threading.Lock()

    def maintenance(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect_admin(self._target)
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return connection

    def __enter__(self) -> _WorkerConnections:
        return self

    def __exit__(self, *_exc: object) -> None:
        for connection in self._opened:
            connection.close()


def _in_parallel(run: Callable[[list[Action]], None], groups: list[list[Action]], workers: int) -> None:
    if not groups:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(groups))),
                            thread_name_prefix="tenantctl-apply") as pool:
        futures = [pool.submit(run, group) for group in groups]
        errors = [future.exception() for future in futures]
    first = next((error for error in errors if error is not None), None)
    if first is not None:
        raise first


def _run_transaction(connection: Connection, actions: list[Action], secrets: SecretStore | None,
                     notify: Progress) -> None:
    try:
        with connection.transaction():
            for action in actions:
                for statement in statements_for(action, secrets):
                    connection.execute(statement)
    except psycopg.Error as error:
        raise _failed(actions[0], error) from error
    for action in actions:
        notify(action)


def _run_database_chain(chain: list[Action], target: ClusterConnection, connections: _WorkerConnections,
                        options: ApplyOptions, notify: Progress) -> None:
    """CREATE DATABASE (alone, not transactional), then privileges and opening, then schemas inside it."""
    for (creating, database), group in groupby(chain, key=lambda a: (a.phase == Phase.CREATE_DATABASES,
                                                                    a.database)):
        batch = list(group)
        if creating:
            for action in batch:
                _create_database(connections.maintenance(), action, options.create_database_strategy)
                notify(action)
                failpoint("postgres-database-created")
        elif database is None:
            _run_transaction(connections.maintenance(), batch, None, notify)
        else:
            with connect_admin(target, database) as connection:
                _run_transaction(connection, batch, None, notify)


def _create_database(connection: Connection, action: Action, strategy: str) -> None:
    name = sql.Identifier(action.subject)
    statement = sql.SQL("CREATE DATABASE {} OWNER {} ALLOW_CONNECTIONS false STRATEGY {}").format(
        name, sql.Identifier(action.params["owner"]), sql.SQL(strategy))
    try:
        connection.execute(statement)
        connection.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            name, sql.Literal(action.params["comment"])))
    except psycopg.Error as error:
        raise _failed(action, error) from error


def statements_for(action: Action, secrets: SecretStore | None) -> list[sql.Composed | sql.SQL]:
    """The SQL of one transactional action."""
    subject = sql.Identifier(action.subject)
    params = action.params
    kind = action.kind
    if kind == "create_role":
        clauses: list[sql.Composed | sql.SQL] = [sql.SQL("LOGIN" if params["login"] else "NOLOGIN")]
        if params["login"]:
            clauses.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(int(params["connection_limit"]))))
        return [sql.SQL("CREATE ROLE {} {}").format(subject, sql.SQL(" ").join(clauses)),
                sql.SQL("COMMENT ON ROLE {} IS {}").format(subject, sql.Literal(params["comment"]))]
    if kind == "alter_role":
        clauses = []
        if "login" in params:
            clauses.append(sql.SQL("LOGIN" if params["login"] else "NOLOGIN"))
        if "connection_limit" in params:
            clauses.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(int(params["connection_limit"]))))
        if params.get("inherit"):
            clauses.append(sql.SQL("INHERIT"))
        for attribute in params.get("revoke_attributes", []):
            if attribute not in ("bypassrls", "createdb", "createrole", "replication", "superuser"):
                raise InputError(f"plan names an unknown role attribute {attribute!r}")
            clauses.append(sql.SQL("NO" + attribute.upper()))
        return [sql.SQL("ALTER ROLE {} {}").format(subject, sql.SQL(" ").join(clauses))]
    if kind == "mark_role":
        return [sql.SQL("COMMENT ON ROLE {} IS {}").format(subject, sql.Literal(params["comment"]))]
    if kind == "set_role_setting":
        if params["parameter"] not in ROLE_PARAMETERS:
            raise InputError(f"plan names an unmanaged parameter {params['parameter']!r}")
        return [sql.SQL("ALTER ROLE {} SET {} = {}").format(
            subject, sql.Identifier(params["parameter"]), sql.Literal(str(params["value"])))]
    if kind == "grant_membership":
        return [sql.SQL("GRANT {} TO {}").format(sql.Identifier(params["group"]), subject)]
    if kind == "revoke_membership":
        return [sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(params["group"]), subject)]
    if kind == "set_password":
        if secrets is None:
            raise BackendError(f"setting the password of {action.subject} needs the secret store")
        password = get_or_create_password(secrets, params["secret"], action.subject,
                                          regenerate=bool(params.get("regenerate")))
        return [set_verifier_statement(action.subject, scram_verifier(password))]
    if kind == "remove_password":
        return [sql.SQL("ALTER ROLE {} PASSWORD NULL").format(subject)]
    if kind == "set_database_owner":
        return [sql.SQL("ALTER DATABASE {} OWNER TO {}").format(subject, sql.Identifier(params["owner"]))]
    if kind == "set_database_privileges":
        return _authoritative("DATABASE", subject, params["grantee"], params["privileges"])
    if kind == "open_database":
        return [sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(subject)]
    if kind == "mark_database":
        return [sql.SQL("COMMENT ON DATABASE {} IS {}").format(subject, sql.Literal(params["comment"]))]
    if kind == "reconcile_schemas":
        return _schema_statements(action)
    raise InputError(f"plan contains an unknown action kind {kind!r}")


def set_verifier_statement(role: str, verifier: str) -> sql.Composed | sql.SQL:
    if not verifier.startswith("SCRAM-SHA-256$"):
        raise ValueError("only pre-hashed SCRAM verifiers are sent to the server")
    return sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier))


def _grantee(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "public" else sql.Identifier(name)


def _privileges(privileges: Iterable[str]) -> sql.Composed | sql.SQL:
    names = list(privileges)
    unknown = [p for p in names if p not in ALLOWED_PRIVILEGES]
    if unknown:
        raise InputError(f"plan names unknown privileges {unknown}")
    return sql.SQL(", ").join(sql.SQL(p) for p in names)


def _authoritative(object_kind: str, subject: sql.Composable, grantee: str,
                   privileges: Sequence[str]) -> list[sql.Composed | sql.SQL]:
    statements: list[sql.Composed | sql.SQL] = [sql.SQL("REVOKE ALL ON {} {} FROM {}").format(
        sql.SQL(object_kind), subject, _grantee(grantee))]
    if privileges:
        statements.append(sql.SQL("GRANT {} ON {} {} TO {}").format(
            _privileges(privileges), sql.SQL(object_kind), subject, _grantee(grantee)))
    return statements


def _default_acl(owner: str, schema: str, object_type: str, verb: str, privileges: Sequence[str] | None,
                 role: str) -> sql.Composed | sql.SQL:
    objects = sql.SQL(DEFAULT_ACL_OBJECTS[object_type])
    in_schema = sql.SQL(" IN SCHEMA {}").format(sql.Identifier(schema)) if schema else sql.SQL("")
    what = sql.SQL("ALL") if privileges is None else _privileges(privileges)
    direction = sql.SQL("FROM") if verb == "REVOKE" else sql.SQL("TO")
    return sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {}{} {} {} ON {} {} {}").format(
        sql.Identifier(owner), in_schema, sql.SQL(verb), what, objects, direction, _grantee(role))


def _schema_statements(action: Action) -> list[sql.Composed | sql.SQL]:
    params = action.params
    statements: list[sql.Composed | sql.SQL] = []
    for grant in params["schema_grants"]:
        statements += _authoritative("SCHEMA", sql.Identifier(grant["schema"]), grant["role"], grant["privileges"])
    for grantee in params.get("revoke_schema_grantees", []):
        statements.append(sql.SQL("REVOKE ALL ON SCHEMA public FROM {}").format(_grantee(grantee)))
    for default in params["default_privileges"]:
        statements.append(_default_acl(default["owner"], default["schema"], default["object_type"], "REVOKE",
                                       None, default["role"]))
        if default["privileges"]:
            statements.append(_default_acl(default["owner"], default["schema"], default["object_type"],
                                           "GRANT", default["privileges"], default["role"]))
    for extra in params.get("revoke_default_privileges", []):
        statements.append(_default_acl(extra["owner"], extra["schema"], extra["object_type"], "REVOKE", None,
                                       extra["role"]))
    statements.append(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(action.subject), sql.Literal(params["comment"])))
    return statements


def _failed(action: Action, error: psycopg.Error) -> BackendError:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return BackendError(f"{action.description}: {text}")
