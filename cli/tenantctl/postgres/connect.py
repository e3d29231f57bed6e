"""Where a cluster is and how tenantctl connects to it: the one psycopg boundary of the Postgres engine.

A ``ClusterResolver`` turns a cluster name into a ``ClusterConnection`` (host, port, admin credentials).
The ``local`` target reads the records of the servers started by ``tenantctl local up``; the ``aws``
target will plug in a resolver reading Terraform outputs and the master secret. psycopg errors become
``BackendError`` here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg

from tenantctl.errors import BackendError

MAINTENANCE_DB = "postgres"
CONNECT_TIMEOUT_S = 15

Connection = psycopg.Connection[Any]


@dataclass(frozen=True)
class ClusterConnection:
    cluster: str
    host: str
    port: int
    admin_user: str
    admin_password: str = field(repr=False)
    maintenance_db: str = MAINTENANCE_DB

    def describe(self) -> str:
        return f"{self.cluster} ({self.admin_user}@{self.host}:{self.port})"


class ClusterResolver(Protocol):
    def resolve(self, cluster: str) -> ClusterConnection: ...


@dataclass(frozen=True)
class LocalClusterResolver:
    """Clusters of the ``local`` target: servers started by ``tenantctl local up`` under ``state_dir``."""

    state_dir: Path

    def resolve(self, cluster: str) -> ClusterConnection:
        from tenantctl.local.pgserver import local_admin_password, running_local_server

        server = running_local_server(self.state_dir, cluster)
        return ClusterConnection(cluster=cluster, host=server.host, port=server.port,
                                 admin_user=server.admin_user,
                                 admin_password=local_admin_password(self.state_dir, cluster))


@dataclass(frozen=True)
class StaticClusterResolver:
    """Fixed connections, e.g. from tests or an explicit configuration."""

    connections: dict[str, ClusterConnection]

    def resolve(self, cluster: str) -> ClusterConnection:
        try:
            return self.connections[cluster]
        except KeyError as error:
            raise BackendError(f"no connection information for cluster {cluster!r}") from error


def connect_admin(target: ClusterConnection, dbname: str | None = None, *,
                  autocommit: bool = True) -> Connection:
    try:
        return psycopg.connect(
            host=target.host, port=target.port, dbname=dbname or target.maintenance_db,
            user=target.admin_user, password=target.admin_password, autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S, application_name="tenantctl",
        )
    except psycopg.Error as error:
        raise BackendError(f"cannot connect to cluster {target.describe()} database "
                           f"{dbname or target.maintenance_db!r}: {_first_line(error)}") from error


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn a psycopg error raised inside into a ``BackendError`` saying what was being done."""
    try:
        yield
    except psycopg.Error as error:
        raise BackendError(f"{what}: {_first_line(error)}") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
