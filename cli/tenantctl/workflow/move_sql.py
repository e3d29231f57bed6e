"""The SQL a tenant move runs on its source and target clusters (one narrow interface to both).

Logical replication per tenant database: a publication ``FOR ALL TABLES`` on the source, a
subscription on the target that copies the existing rows and then streams every change. The
subscription connects with a temporary ``REPLICATION`` role whose one-time password exists only in
the target's ``pg_subscription`` (readable by superusers only) and dies with the move. Identifiers are
quoted with ``psycopg.sql``; psycopg errors become ``BackendError`` (``connect.translated``).
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from tenantctl.postgres.connect import ClusterConnection, Connection, connect_admin, translated


@dataclass(frozen=True)
class TableDigest:
    """Rows of one table as a count and an order-independent 64-bit hash sum (no sort needed)."""

    table: str
    rows: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "rows": self.rows, "digest": self.digest}


class Sessions:
    """Admin connections kept open through a cut-over, one per (cluster, database): opening one costs a
    TCP and SCRAM handshake, which the tenant's pause would pay for every query."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str | None], Connection] = {}

    def get(self, connection: ClusterConnection, database: str | None = None) -> Connection:
        key = (connection.cluster, database)
        if key not in self._open or self._open[key].closed:
            self._open[key] = connect_admin(connection, database)
        return self._open[key]

    def close(self) -> None:
        for conn in self._open.values():
            conn.close()
        self._open.clear()


@contextmanager
def _open(connection: ClusterConnection, database: str | None = None) -> Iterator[Connection]:
    with connect_admin(connection, database) as conn:
        yield conn


def _rows(connection: ClusterConnection, database: str | None, what: str, query: sql.SQL | sql.Composed,
          params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with _open(connection, database) as conn, translated(what):
        cursor = conn.execute(query, params)
        return list(cursor.fetchall()) if cursor.description is not None else []


# --- source --------------------------------------------------------------------------------------

def ensure_replication_role(source: ClusterConnection, role: str) -> str:
    """Create (or reset the password of) the move's replication role; returns the new password."""
    password = secrets.token_urlsafe(32)
    exists = _rows(source, None, f"looking up role {role}",
                   sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = %s"), (role,))
    verb = "ALTER" if exists else "CREATE"
    with _open(source) as conn, translated(f"preparing replication role {role}"):
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN REPLICATION PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(role)))
    return password


def drop_replication_role(source: ClusterConnection, role: str) -> None:
    with _open(source) as conn, translated(f"dropping replication role {role}"):
        conn.execute(sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s"), (role,))
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))  # its CONNECT grants
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


_NO_IDENTITY = """
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relreplident = 'd' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
ORDER BY 1
"""


def ensure_publication(source: ClusterConnection, database: str, name: str) -> list[str]:
    """Publish every table of ``database`` to the replication role ``name``. Tables without a primary key
    get ``REPLICA IDENTITY FULL`` first: a published table without a replica identity refuses UPDATE and
    DELETE. Returns those tables."""
    with _open(source, database) as conn, translated(f"creating publication {name} in {database}"):
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database),
                                                                          sql.Identifier(name)))
        changed = [str(row[0]) for row in conn.execute(_NO_IDENTITY).fetchall()]
        # ALTER TABLE waits for the tenant's open transactions, and every query on the table queues behind
        # it: give up quickly rather than stall the tenant (a rerun tries again).
        conn.execute("SET lock_timeout = '3s'")
        for table in changed:
            conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(sql.SQL(table)))
        if conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(sql.Identifier(name)))
    return changed


def drop_publication(source: ClusterConnection, database: str, name: str) -> None:
    if not database_exists(source, database):
        return
    with _open(source, database) as conn, translated(f"dropping publication {name} in {database}"):
        conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))


def drop_slot(source: ClusterConnection, slot: str) -> None:
    """A slot left behind (its subscription dropped without it) holds WAL forever: drop it."""
    with _open(source) as conn, translated(f"dropping replication slot {slot}"):
        conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                     "WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,))
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                     (slot,))


def slots(connection: ClusterConnection, prefix: str) -> list[str]:
    return [str(r[0]) for r in _rows(connection, None, "listing replication slots", sql.SQL(
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s ORDER BY 1"), (prefix + "%",))]


def _query(conn: Connection, what: str, query: sql.SQL | sql.Composed | str,
           params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with translated(what):
        cursor = conn.execute(query, params)
        return list(cursor.fetchall()) if cursor.description is not None else []


def set_login(conn: Connection, role: str, login: bool) -> None:
    _query(conn, f"{'enabling' if login else 'disabling'} login of {role}",
           sql.SQL("ALTER ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(sql.Identifier(role)))


def open_transactions(conn: Connection, role: str) -> int:
    """Sessions of ``role`` inside a transaction (or running a statement) now."""
    # pg_stat_activity is a snapshot per transaction: clear it so every poll sees the present.
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(_query(conn, f"looking at sessions of {role}",
                      "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND xact_start IS NOT NULL",
                      (role,))[0][0])


def terminate_sessions(conn: Connection, role: str) -> int:
    return int(_query(conn, f"ending sessions of {role}",
                      "SELECT count(pg_terminate_backend(pid, 1000)) FROM pg_stat_activity WHERE usename = %s",
                      (role,))[0][0])


def current_lsn(connection: ClusterConnection) -> str:
    return str(_rows(connection, None, "reading the WAL position", sql.SQL("SELECT pg_current_wal_lsn()"))[0][0])


def sequences(conn: Connection, database: str) -> dict[str, int | None]:
    rows = _query(conn, f"reading sequences of {database}",
                  "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value FROM pg_sequences")
    return {str(name): (int(value) if value is not None else None) for name, value in rows}


def table_digests(conn: Connection, database: str, *, hashes: bool = True) -> list[TableDigest]:
    """Row count and hash sum of every user table (``hashtextextended`` of each row's text); with
    ``hashes=False`` row counts only (no row is turned into text: several times faster)."""
    tables = [str(r[0]) for r in _query(conn, f"listing tables of {database}",
                                        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                                        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")]
    digests = []
    digest = sql.SQL("coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text" if hashes else "''")
    with translated(f"hashing the tables of {database}"):
        for table in tables:
            row = conn.execute(sql.SQL("SELECT count(*), {} FROM {} t").format(digest, sql.SQL(table))).fetchone()
            assert row is not None
            digests.append(TableDigest(table, int(row[0]), str(row[1])))
    return digests


def wal_level(connection: ClusterConnection) -> str:
    return str(_rows(connection, None, "reading wal_level", sql.SQL("SHOW wal_level"))[0][0])


def database_exists(connection: ClusterConnection, name: str) -> bool:
    return bool(_rows(connection, None, f"looking up database {name}",
                      sql.SQL("SELECT 1 FROM pg_database WHERE datname = %s"), (name,)))


def user_tables(connection: ClusterConnection, database: str) -> int:
    return int(_rows(connection, database, f"counting tables of {database}", sql.SQL(
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"))[0][0])


# --- target --------------------------------------------------------------------------------------

def copy_schema(source: ClusterConnection, target: ClusterConnection, database: str) -> None:
    """``pg_dump --schema-only`` of the source database into the (empty) target one."""
    with tempfile.TemporaryDirectory(prefix="tenantctl-move-") as scratch:
        dump = Path(scratch) / "schema.dump"
        _run(["pg_dump", "-Fc", "--schema-only", "--no-publications", "--no-subscriptions", "--no-password",
              "-d", database, "-f", str(dump)], source)
        _run(["pg_restore", "--no-password", "--exit-on-error", "-d", database, str(dump)], target)


def _run(argv: list[str], connection: ClusterConnection) -> None:
    import os

    from tenantctl.workflow.archive import run_client_tool

    run_client_tool(argv, {**os.environ, **connection.libpq_env(), "PGCONNECT_TIMEOUT": "15"})


def ensure_subscription(target: ClusterConnection, database: str, name: str, publication: str, *,
                        source: ClusterConnection, role: str, password: str) -> None:
    conninfo = " ".join(f"{key}='{_conninfo_quote(value)}'" for key, value in (
        *source.peer_params().items(), ("dbname", database), ("user", role),
        ("password", password), ("connect_timeout", 15), ("application_name", name)))
    with _open(target, database) as conn, translated(f"subscribing {database} on the target"):
        exists = conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
                                 "WITH (copy_data = true, slot_name = {})").format(
                sql.Identifier(name), sql.Literal(conninfo), sql.Identifier(publication), sql.Literal(name)))
        else:  # a resumed move: the one-time password was reset
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} CONNECTION {}").format(
                sql.Identifier(name), sql.Literal(conninfo)))
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(name)))


def _conninfo_quote(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


def subscription_synced(target: ClusterConnection, database: str, name: str) -> bool:
    """Every table's initial copy is done and the apply worker streams."""
    rows = _rows(target, database, f"reading the state of subscription {name}", sql.SQL(
        "SELECT count(*) FILTER (WHERE r.srsubstate NOT IN ('r', 's')), "
        "(SELECT count(*) FROM pg_stat_subscription s WHERE s.subname = %s AND s.pid IS NOT NULL "
        "AND s.relid IS NULL) FROM pg_subscription_rel r JOIN pg_subscription p ON p.oid = r.srsubid "
        "WHERE p.subname = %s"), (name, name))
    waiting, workers = rows[0]
    return int(waiting) == 0 and int(workers) > 0


def received_lsn(target: ClusterConnection, database: str, name: str) -> str | None:
    rows = _rows(target, database, f"reading subscription {name}", sql.SQL(
        "SELECT latest_end_lsn FROM pg_stat_subscription WHERE subname = %s AND relid IS NULL"), (name,))
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def set_sequences(conn: Connection, database: str, values: dict[str, int | None]) -> None:
    with translated(f"setting sequences of {database}"):
        for name, value in sorted(values.items()):
            if value is not None:
                conn.execute(sql.SQL("SELECT setval({}, %s, true)").format(sql.Literal(name)), (value,))


def drop_subscription(target: ClusterConnection, database: str, name: str) -> None:
    """Drop the subscription without reaching the source (its slot is dropped there by ``drop_slot``):
    DROP SUBSCRIPTION would otherwise connect back to the source and wait for its walsender."""
    if not database_exists(target, database):
        return
    with _open(target, database) as conn, translated(f"dropping subscription {name}"):
        if conn.execute("SELECT 1 FROM pg_subscription WHERE subname = %s", (name,)).fetchone() is None:
            return
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(name)))
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(name)))
