"""Where a cluster is and how tenantctl connects to it: the one psycopg boundary of the Postgres engine.

A ``ClusterResolver`` turns a cluster name into a ``ClusterConnection`` (host, port, admin credentials,
TLS). Every target uses the one resolver of ``tenantctl.aws.clusters`` (the cluster stack's outputs and
Secrets Manager); tests may use ``StaticClusterResolver``. psycopg errors become ``BackendError`` here
and nowhere else.
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
    """How tenantctl reaches one cluster as its administrator.

    ``host`` is the cluster's endpoint name: with ``sslmode = "verify-full"`` the server certificate must
    name it (Aurora's do, signed by the RDS CA bundle given as ``sslrootcert``, e.g.
    https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem). ``connect_address`` (an IP) and
    ``connect_port`` reach it another way (a bastion's or an SSM tunnel's local end) while the
    certificate is still checked against ``host``: libpq's ``hostaddr``.
    """

    cluster: str
    host: str
    port: int
    admin_user: str
    admin_password: str = field(repr=False)
    maintenance_db: str = MAINTENANCE_DB
    sslmode: str | None = None  # None: libpq's default (prefer)
    sslrootcert: str | None = None
    connect_address: str | None = None
    connect_port: int | None = None
    # How another cluster reaches this one (a subscription during a move): the endpoint itself unless set.
    peer_address: str | None = None
    peer_port: int | None = None

    def describe(self) -> str:
        via = (f" via {self.connect_address}:{self.connect_port or self.port}"
               if self.connect_address or self.connect_port else "")
        return f"{self.cluster} ({self.admin_user}@{self.host}:{self.port}{via})"

    def libpq_params(self) -> dict[str, str | int]:
        """Connection parameters other than user, password and database (for psycopg and the client tools)."""
        params: dict[str, str | int] = {"host": self.host, "port": self.connect_port or self.port}
        if self.connect_address:
            params["hostaddr"] = self.connect_address
        if self.sslmode:
            params["sslmode"] = self.sslmode
        if self.sslrootcert:
            params["sslrootcert"] = self.sslrootcert
        return params

    def libpq_env(self) -> dict[str, str]:
        """The same for pg_dump/pg_restore, as PG* environment variables (the password included)."""
        names = {"host": "PGHOST", "port": "PGPORT", "hostaddr": "PGHOSTADDR", "sslmode": "PGSSLMODE",
                 "sslrootcert": "PGSSLROOTCERT"}
        return {**{names[k]: str(v) for k, v in self.libpq_params().items()}, "PGPASSWORD": self.admin_password,
                "PGUSER": self.admin_user}


    def peer_params(self) -> dict[str, str | int]:
        """Where another cluster connects to this one (a move's subscription), and with which TLS mode:
        the server has no CA bundle of ours, so the channel is encrypted (``require``) when we use TLS."""
        params: dict[str, str | int] = {"host": self.host, "port": self.peer_port or self.port}
        if self.peer_address:
            params["hostaddr"] = self.peer_address
        if self.sslmode and self.sslmode not in ("disable", "allow", "prefer"):
            params["sslmode"] = "require"
        return params


class ClusterResolver(Protocol):
    def resolve(self, cluster: str) -> ClusterConnection: ...


class ClusterNotCreatedError(BackendError):
    """The cluster stack has not been applied with this cluster yet: it has no endpoint to reach."""

    def __init__(self, cluster: str) -> None:
        super().__init__(f"cluster {cluster}: no endpoint recorded: its cluster stack has not been applied",
                         hint="run `tenantctl plan` and `tenantctl apply` first (its tenants' Postgres objects "
                              "are planned once the cluster exists)")
        self.cluster = cluster


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
    if target.sslrootcert and not Path(target.sslrootcert).is_file():
        raise BackendError(f"cluster {target.cluster}: the CA bundle {target.sslrootcert} does not exist",
                           hint="set the CA bundle to a PEM file (for RDS: "
                                "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)")
    try:
        return psycopg.connect(
            **target.libpq_params(), dbname=dbname or target.maintenance_db,  # type: ignore[arg-type]
            user=target.admin_user, password=target.admin_password, autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S, application_name="tenantctl",
        )
    except psycopg.Error as error:
        message = _first_line(error)
        hint = None
        if "certificate" in message or "SSL" in message or "server name" in message:
            hint = (f"the server's certificate must be signed by the CA bundle ({target.sslrootcert or 'none set'}) "
                    f"and name {target.host!r}; through a tunnel, keep the endpoint name as the host and set the "
                    "connect address to the tunnel's end")
        raise BackendError(f"cannot connect to cluster {target.describe()} database "
                           f"{dbname or target.maintenance_db!r}: {message}", hint=hint) from error


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
