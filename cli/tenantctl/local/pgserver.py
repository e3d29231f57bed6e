"""Real local PostgreSQL servers: one per cluster on the ``local`` target, and for tests.

Usage: ``srv = start_server(Path("/tmp/pg1"), name="main", admin_password=pw)``, then
``psycopg.connect(srv.dsn(password=pw))``; ``stop_server(Path("/tmp/pg1"))`` when done.

Each server listens on 127.0.0.1 only (no Unix socket), on a free port picked at start, with SCRAM-SHA-256
for every connection. The bootstrap superuser is ``admin_user`` (it stands in for the RDS master user) and
a NOLOGIN ``rds_iam`` role exists, as on RDS/Aurora. When running as root, initdb/pg_ctl run as the
``postgres`` OS user, so ``data_dir`` and its parents must be traversable by that user. The admin password
goes to initdb through a short-lived password file and to clients through the environment or the
connection parameters, never on a command line. The server log is ``<data_dir>/server.log``; the record
of the server (name, port, admin user — no password) is ``<data_dir>/tenantctl-server.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from tenantctl.errors import BackendError, ExternalCommandError
from tenantctl.fsutil import atomic_write_bytes, atomic_write_text
from tenantctl.terraform.secret_vars import MASTER_PASSWORD_VAR, local_secret_env

LOOPBACK = "127.0.0.1"
DEFAULT_ADMIN_USER = "tenantctl_admin"
RDS_IAM_ROLE = "rds_iam"
RECORD_FILE = "tenantctl-server.json"
LOG_FILE = "server.log"
CONFIG_FILE = "tenantctl.conf"
TLS_CONFIG_FILE = "tenantctl-tls.conf"
SERVICE_OS_USER = "postgres"
START_TIMEOUT_S = 120


@dataclass(frozen=True)
class PgServer:
    """Where a local server listens and who administers it. Holds no password."""

    name: str
    host: str
    port: int
    data_dir: Path
    admin_user: str

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_FILE

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        """A libpq conninfo string; the password is included only when given."""
        params: dict[str, str | int] = {
            "host": self.host, "port": self.port, "dbname": dbname, "user": user or self.admin_user,
        }
        if password is not None:
            params["password"] = password
        return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, object]:
        document = asdict(self)
        document["data_dir"] = str(self.data_dir)
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, object]) -> PgServer:
        return cls(
            name=str(document["name"]), host=str(document["host"]), port=int(str(document["port"])),
            data_dir=Path(str(document["data_dir"])), admin_user=str(document["admin_user"]),
        )


@dataclass(frozen=True)
class ServerStatus:
    data_dir: Path
    running: bool
    pid: int | None
    server: PgServer | None  # the record, also when stopped; None if never started here

    def to_json(self) -> dict[str, object]:
        return {
            "data_dir": str(self.data_dir), "running": self.running, "pid": self.pid,
            "server": self.server.to_json() if self.server else None,
        }


def start_server(
    data_dir: Path,
    *,
    name: str,
    port: int | None = None,
    admin_user: str = DEFAULT_ADMIN_USER,
    admin_password: str,
    unsafe_fast: bool = False,
    max_connections: int = 200,
) -> PgServer:
    """Start (initdb first if needed) or reuse a running server in ``data_dir``.

    ``unsafe_fast`` turns fsync/full_page_writes/synchronous_commit off: for benchmarks and tests only.
    """
    data_dir = Path(data_dir).absolute()
    status = server_status(data_dir)
    if status.running and status.server is not None:
        return status.server
    binaries = _postgres_bindir()
    if not (data_dir / "PG_VERSION").exists():
        _initdb(binaries, data_dir, admin_user, admin_password)
    previous = status.server
    attempts = 3 if port is None else 1
    last_error: ExternalCommandError | None = None
    for attempt in range(attempts):
        chosen = port or (previous.port if previous and attempt == 0 and _port_is_free(previous.port)
                          else free_port())
        _write_config(data_dir, chosen, unsafe_fast=unsafe_fast, max_connections=max_connections)
        server = PgServer(name=name, host=LOOPBACK, port=chosen, data_dir=data_dir, admin_user=admin_user)
        try:
            _pg_ctl(binaries, data_dir, "start", "-l", str(data_dir / LOG_FILE), "-w",
                    "-t", str(START_TIMEOUT_S))
        except ExternalCommandError as error:  # most likely the port was taken between pick and bind
            last_error = error
            continue
        record = json.dumps(server.to_json(), indent=2, sort_keys=True) + "\n"
        atomic_write_text(data_dir / RECORD_FILE, record)
        _ensure_rds_iam_role(server, admin_password)
        return server
    assert last_error is not None
    raise BackendError(
        f"PostgreSQL server {name!r} in {data_dir} did not start: {last_error.message}",
        hint=f"see the server log {data_dir / LOG_FILE}",
    )


def stop_server(data_dir: Path) -> bool:
    """Stop the server in ``data_dir`` (fast shutdown). Returns False if it was not running."""
    data_dir = Path(data_dir).absolute()
    if not server_status(data_dir).running:
        return False
    _pg_ctl(_postgres_bindir(), data_dir, "stop", "-m", "fast", "-w", "-t", str(START_TIMEOUT_S))
    return True


def server_status(data_dir: Path) -> ServerStatus:
    """Whether a postmaster runs in ``data_dir`` (from postmaster.pid and /proc), plus its record."""
    data_dir = Path(data_dir).absolute()
    record: PgServer | None = None
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, json.JSONDecodeError):
        record = PgServer.from_json(json.loads((data_dir / RECORD_FILE).read_text()))
    pid = _running_postmaster_pid(data_dir)
    return ServerStatus(data_dir=data_dir, running=pid is not None, pid=pid, server=record)


def admin_connect(server: PgServer, admin_password: str, dbname: str = "postgres",
                  *, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
    """Connect as the admin role; failures become ``BackendError``."""
    try:
        return psycopg.connect(
            host=server.host, port=server.port, dbname=dbname, user=server.admin_user,
            password=admin_password, autocommit=autocommit, connect_timeout=15,
        )
    except psycopg.Error as error:
        raise BackendError(f"cannot connect to local server {server.name!r} on port {server.port}: "
                           f"{error}") from error


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# --- internals -------------------------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    """Bindable the way the postmaster binds (SO_REUSEADDR: TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _postgres_bindir() -> Path:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(result.stdout.strip())
        if result.returncode == 0 and (candidate / "initdb").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise BackendError("PostgreSQL server binaries (initdb, pg_ctl) not found",
                       hint="install PostgreSQL or put its bin directory (pg_config --bindir) on PATH")


def _as_root() -> bool:
    return os.geteuid() == 0


def _service_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(SERVICE_OS_USER)
    except KeyError as error:
        raise BackendError(f"running as root, but there is no {SERVICE_OS_USER!r} OS user to run "
                           "PostgreSQL as") from error
    return entry.pw_uid, entry.pw_gid


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a server binary, as the ``postgres`` OS user when we are root."""
    full = ["runuser", "-u", SERVICE_OS_USER, "--", *argv] if _as_root() else argv
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = env.get("LC_ALL") or "C.UTF-8"
    result = subprocess.run(full, capture_output=True, text=True, env=env, check=False,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise ExternalCommandError(argv, result.returncode, result.stderr + result.stdout)
    return result


def _owned_by_service(path: Path) -> None:
    if _as_root():
        uid, gid = _service_ids()
        os.chown(path, uid, gid)


def _initdb(binaries: Path, data_dir: Path, admin_user: str, admin_password: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if any(data_dir.iterdir()):
        raise BackendError(f"{data_dir} is not empty and holds no PostgreSQL cluster",
                           hint="point the server at an empty or existing data directory")
    _owned_by_service(data_dir)
    os.chmod(data_dir, 0o700)
    if _as_root():
        _check_reachable(data_dir)
    with _password_file(admin_password) as pwfile:
        _run([str(binaries / "initdb"), "-D", str(data_dir), "-U", admin_user, f"--pwfile={pwfile}",
              "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"])


def _check_reachable(data_dir: Path) -> None:
    if _as_service(["test", "-w", str(data_dir)]):
        return
    blocking = [str(d) for d in reversed(data_dir.parents) if not _service_may_traverse(d)]
    command = f"chmod o+x {' '.join(shlex.quote(d) for d in blocking)}" if blocking else None
    raise BackendError(
        f"the {SERVICE_OS_USER!r} OS user (the local PostgreSQL servers run as it) cannot reach {data_dir}",
        hint=(f"let it through the directories above the project (traverse only, no listing): `{command}`, "
              "or keep the project under a directory it can traverse (e.g. /srv or /tmp)") if command else
             f"make {data_dir} writable by {SERVICE_OS_USER!r}",
    )


def _service_may_traverse(directory: Path) -> bool:
    """The directory's own permission bits let the service user through (its parents aside)."""
    import grp

    uid, gid = _service_ids()
    info = directory.stat()
    groups = {gid, *(g.gr_gid for g in grp.getgrall() if SERVICE_OS_USER in g.gr_mem)}
    if info.st_uid == uid:
        return bool(info.st_mode & 0o100)
    if info.st_gid in groups:
        return bool(info.st_mode & 0o010)
    return bool(info.st_mode & 0o001)


def _as_service(argv: list[str]) -> bool:
    return subprocess.run(["runuser", "-u", SERVICE_OS_USER, "--", *argv], capture_output=True,
                          check=False).returncode == 0


@contextlib.contextmanager
def _password_file(password: str) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="tenantctl-pw-")
    path = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        _owned_by_service(path)
        os.chmod(path, 0o600)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _write_config(data_dir: Path, port: int, *, unsafe_fast: bool, max_connections: int) -> None:
    lines = [
        "# written by tenantctl; included from postgresql.conf",
        f"listen_addresses = '{LOOPBACK}'",
        f"port = {port}",
        "unix_socket_directories = ''",
        "password_encryption = 'scram-sha-256'",
        f"max_connections = {max_connections}",
        "shared_buffers = '64MB'",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        # `tenantctl move` copies a tenant with logical replication (Aurora: rds.logical_replication = 1).
        "wal_level = logical",
        "max_replication_slots = 32",
        "max_wal_senders = 32",
        "max_logical_replication_workers = 16",
        "wal_receiver_status_interval = '1s'",
    ]
    if unsafe_fast:
        lines += ["fsync = off", "full_page_writes = off", "synchronous_commit = off"]
    config = data_dir / CONFIG_FILE
    atomic_write_text(config, "\n".join(lines) + "\n", mode=0o600)
    _owned_by_service(config)
    main_config = data_dir / "postgresql.conf"
    text = main_config.read_text()
    for name in (CONFIG_FILE, TLS_CONFIG_FILE):
        include = f"include_if_exists = '{name}'"
        if include not in text:
            with main_config.open("a") as handle:
                handle.write(f"\n{include}\n")


def _pg_ctl(binaries: Path, data_dir: Path, action: str, *options: str) -> None:
    _run([str(binaries / "pg_ctl"), action, "-D", str(data_dir), *options])


def _running_postmaster_pid(data_dir: Path) -> int | None:
    try:
        first_line = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        pid = int(first_line.strip())
    except (FileNotFoundError, IndexError, ValueError, PermissionError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"postgres" in cmdline or b"postmaster" in cmdline else None


def _ensure_rds_iam_role(server: PgServer, admin_password: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            connection = admin_connect(server, admin_password)
            break
        except BackendError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with connection:
        exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (RDS_IAM_ROLE,)).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(RDS_IAM_ROLE)))


# --- one server per cluster of the clients file (the `local` target) -------------------------------

CLUSTERS_DIR = Path("local") / "postgres"
ADMIN_SECRET_FILE = "admin-password"


def cluster_data_dir(state_dir: Path, cluster: str) -> Path:
    """``state_dir`` is the project's ``.tenantctl`` directory (as for the moto server)."""
    return Path(state_dir).absolute() / CLUSTERS_DIR / cluster / "data"


def local_admin_password(state_dir: Path, cluster: str) -> str:
    """The generated admin password of a local cluster (kept mode 0600 beside its data directory)."""
    secret = cluster_data_dir(state_dir, cluster).parent / ADMIN_SECRET_FILE
    try:
        return secret.read_text().strip()
    except FileNotFoundError as error:
        raise BackendError(f"local cluster {cluster!r} has no admin password file {secret}",
                           hint="run `tenantctl local up` first") from error


def _admin_password_file(state_dir: Path, cluster: str) -> Path:
    return cluster_data_dir(state_dir, cluster).parent / ADMIN_SECRET_FILE


def _sync_admin_password(server: PgServer, state_dir: Path, current: str, wanted: str) -> None:
    """Make the server's admin password the cluster's master password (the one in its admin secret)."""
    if current != wanted:
        from tenantctl.postgres.scram import scram_verifier

        with admin_connect(server, current) as connection:  # a verifier: the password never reaches a log
            connection.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(server.admin_user), sql.Literal(scram_verifier(wanted))))
    atomic_write_text(_admin_password_file(state_dir, server.name), wanted + "\n", mode=0o600)


def up_local_clusters(model: object, state_dir: Path, *, unsafe_fast: bool = False) -> dict[str, PgServer]:
    """Start (or reuse) one server per cluster of ``model`` (a ``tenantctl.model.Model``)."""
    from tenantctl.model.types import Model

    assert isinstance(model, Model)
    servers: dict[str, PgServer] = {}
    for cluster in model.clusters:
        data_dir = cluster_data_dir(state_dir, cluster.name)
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        # The cluster stack's master password (TF_VAR_master_password, else the project's generated one) is
        # the admin password, as on RDS; the cluster stack keeps it in the admin secret the resolver reads.
        password = local_secret_env(state_dir)[MASTER_PASSWORD_VAR]
        previous_file = _admin_password_file(state_dir, cluster.name)
        current = previous_file.read_text().strip() if previous_file.exists() else password
        # The postgres OS user must traverse down to its data directory: execute only (0711), so nobody
        # else can list what lies beside it (states, plans, archives stay 0700/0600).
        root, directory = Path(state_dir).absolute(), data_dir.parent
        while True:
            os.chmod(directory, 0o711)
            if directory == root or directory == directory.parent:
                break
            directory = directory.parent
        server = start_server(data_dir, name=cluster.name, admin_password=current, unsafe_fast=unsafe_fast)
        _sync_admin_password(server, state_dir, current, password)
        ensure_server_tls(server, state_dir)
        servers[cluster.name] = server
    return servers


LOCAL_NAMES = ("localhost", LOOPBACK)
TLS_RELOAD_TIMEOUT_S = 10.0


def ensure_server_tls(server: PgServer, state_dir: Path, names: tuple[str, ...] = ()) -> bool:
    """Serve TLS with a certificate from the project's local CA naming ``names`` (the endpoint names of the
    cluster stack's outputs) and the loopback names. Issues a new certificate and reloads the server only
    when the current one does not name them all. Returns True when it did.

    Crash-safe: a new key and certificate go to new files (``server-<serial>.*``); the TLS include file is
    then switched to them in one rename, so a crash leaves either the old pair or the new one in force."""
    import re
    import secrets as token

    from tenantctl.local.pki import certificate_covers, ensure_ca, issue_server_certificate

    wanted = (*LOCAL_NAMES, *names)
    ca = ensure_ca(state_dir).read_bytes()
    tls_config = server.data_dir / TLS_CONFIG_FILE
    configured = re.search(r"ssl_cert_file = '([^']+)'", tls_config.read_text()) if tls_config.is_file() else None
    cert_path = server.data_dir / configured.group(1) if configured else None
    if cert_path is not None and cert_path.is_file() and certificate_covers(cert_path.read_bytes(), wanted, ca):
        return False
    issued = issue_server_certificate(state_dir, wanted)
    stem = f"server-{token.token_hex(4)}"
    for suffix, data in ((".key", issued.key_pem), (".crt", issued.cert_pem)):
        path = server.data_dir / f"{stem}{suffix}"
        atomic_write_bytes(path, data, mode=0o600)
        _owned_by_service(path)
    atomic_write_text(tls_config, "# written by tenantctl: TLS from the project's local CA\n"
                      f"ssl = on\nssl_cert_file = '{stem}.crt'\nssl_key_file = '{stem}.key'\n"
                      "ssl_min_protocol_version = 'TLSv1.2'\n", mode=0o600)
    _owned_by_service(tls_config)
    _pg_ctl(_postgres_bindir(), server.data_dir, "reload")
    _wait_for_certificate(server, issued.cert_pem)
    for old in server.data_dir.glob("server-*.*"):
        if old.stem != stem and old.suffix in (".crt", ".key"):
            old.unlink(missing_ok=True)
    return True


def _wait_for_certificate(server: PgServer, cert_pem: bytes) -> None:
    """A reload is asynchronous: wait until new connections get the new certificate."""
    import ssl

    from tenantctl.proxy import wire  # the protocol's SSLRequest, as the proxy speaks it

    expected = ssl.PEM_cert_to_DER_cert(cert_pem.decode())
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + TLS_RELOAD_TIMEOUT_S
    while True:
        try:
            with socket.create_connection((server.host, server.port), timeout=2) as raw:
                raw.sendall(wire.encode_ssl_request())
                if raw.recv(1) == wire.SSL_ACCEPT:
                    with context.wrap_socket(raw) as wrapped:
                        if wrapped.getpeercert(binary_form=True) == expected:
                            return
        except (OSError, ssl.SSLError):
            pass
        if time.monotonic() > deadline:
            raise BackendError(f"the local server of cluster {server.name!r} did not take its new TLS certificate",
                               hint=f"see the server log {server.log_file}")
        time.sleep(0.05)


def _local_cluster_dirs(state_dir: Path) -> list[Path]:
    root = Path(state_dir).absolute() / CLUSTERS_DIR
    if not root.is_dir():
        return []
    return sorted(path / "data" for path in root.iterdir() if (path / "data").is_dir())


def down_local_clusters(state_dir: Path) -> list[str]:
    """Stop every local cluster server; data stays. Returns the names of the servers stopped."""
    stopped = []
    for data_dir in _local_cluster_dirs(state_dir):
        if stop_server(data_dir):
            stopped.append(data_dir.parent.name)
    return stopped


def local_clusters_status(state_dir: Path) -> dict[str, ServerStatus]:
    return {data_dir.parent.name: server_status(data_dir) for data_dir in _local_cluster_dirs(state_dir)}


def running_local_server(state_dir: Path, cluster: str) -> PgServer:
    """The running server of ``cluster``, or a ``BackendError`` telling how to start it."""
    status = server_status(cluster_data_dir(state_dir, cluster))
    if not status.running or status.server is None:
        raise BackendError(f"the local server of cluster {cluster!r} is not running",
                           hint="run `tenantctl local up`")
    return status.server
