"""The tenant lifecycle end to end, through the real CLI: real Terraform 1.0.3 + AWS provider against
moto, real local PostgreSQL, the real proxy, psycopg clients.

onboard 3 tenants -> write data through the proxy -> offboard one (archived, access gone, the other
tenants' proxy sessions untouched) -> restore it (data intact) -> purge/restore from the dump; bad
arguments change nothing.

Crashes: tenantctl is SIGKILLed (its whole process group) during an apply at three points, and
rerun each time: the rerun converges (`plan --detailed-exitcode` exits 0, the routing map has the
tenant, it connects through the proxy) and no row written earlier is lost:

(a) inside the Terraform apply of a tenant stack, when its first resource was reported created
    (marker: the progress line `tenants/delta: create aws_iam_user.tenant done`);
(b) inside the native Postgres apply, right after a new database was created and before its
    privileges, opening and schema grants (failpoint `postgres-database-created`; `tenantctl apply`
    of a clients-file edit that gives bravo, which has data and an open proxy session, a second
    database);
(c) after the Terraform apply of a tenant stack finished, before applied.json, the Postgres apply and
    the routing map (failpoint `terraform-applied`).

Also killed and resumed: an offboarding while dumping (nothing may be left behind: no partial dump in
the archive, no temporary file), a restore while it plans, and its rerun after the applies, before the
routing map and the ledger's last entry (failpoint `routes-before-write`). Failpoints
(`tenantctl/failpoint.py`) are used only where no progress line marks the exact moment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tenantctl.local.pgserver import admin_connect, local_admin_password, running_local_server
from tenantctl.terraform.toolchain import BINARY_ENV, install_toolchain

pytestmark = [pytest.mark.postgres, pytest.mark.terraform, pytest.mark.timeout(1200)]

CLIENTS = """\
# e2e clients file: comments and layout must survive onboard/offboard
settings = {
  region                   = "eu-west-1"
  target                   = "local"
  allow_private_source_ips = true # the proxy sees 127.0.0.1
}

clusters = {
  shared-01 = { min_acu = 0.5, max_acu = 16, max_tenants = 500 }
}

clients = [
]
"""
LISTENING = re.compile(r"tenantctl proxy listening on [^:]+:(\d+)")


class Project:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.tmp = root / "tmp"  # TMPDIR of every tenantctl run: what they leave behind is checked
        self.tmp.mkdir(exist_ok=True)
        self.env = {**env, "TMPDIR": str(self.tmp)}
        self.clients = root / "clients.tfvars"
        self.proxy: subprocess.Popen[str] | None = None
        self.proxy_port = 0
        self.dsns: dict[tuple[str, str], str] = {}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tenantctl.cli.main", *args]

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def ok(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = self.cli(*args, timeout=timeout)
        assert done.returncode == 0, f"tenantctl {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}"
        return done

    def kill_when(self, args: tuple[str, ...], marker: str, timeout: float = 600) -> str:
        """Run tenantctl, SIGKILL its whole process group as soon as ``marker`` appears on stderr.

        Terraform runs in a session of its own (runner.py) and is not in that group: like after a real
        crash of tenantctl, it finishes the operation it was given."""
        process = subprocess.Popen(self.argv(*args), cwd=self.root, env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        seen: list[str] = []
        killed = threading.Event()

        def watch() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                seen.append(line)
                if marker in line and not killed.is_set():
                    killed.set()
                    os.killpg(process.pid, signal.SIGKILL)

        reader = threading.Thread(target=watch, daemon=True)
        reader.start()
        process.wait(timeout=timeout)
        reader.join(timeout=10)
        assert killed.is_set(), f"never saw {marker!r}:\n{''.join(seen)[-3000:]}"
        assert process.returncode == -signal.SIGKILL
        return "".join(seen)

    def kill_at(self, args: tuple[str, ...], point: str, timeout: float = 600) -> str:
        """Run tenantctl with the failpoint ``point`` armed: it SIGKILLs itself exactly there."""
        done = subprocess.run(self.argv(*args), cwd=self.root, env={**self.env, "TENANTCTL_FAILPOINT": point},
                              capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == -signal.SIGKILL, f"exited {done.returncode}, not at {point}:\n{done.stderr[-3000:]}"
        assert f"failpoint {point}: SIGKILL" in done.stderr
        return done.stderr

    def start_proxy(self, *extra: str) -> None:
        log = (self.root / "proxy.log").open("w")
        self.proxy = subprocess.Popen(
            self.argv("proxy", "--routes", ".tenantctl/routes.json", "--listen", "127.0.0.1:0",
                      "--watch-interval", "0.2", *extra),
            cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = LISTENING.search((self.root / "proxy.log").read_text())
            if found:
                self.proxy_port = int(found.group(1))
                return
            assert self.proxy.poll() is None, (self.root / "proxy.log").read_text()
            time.sleep(0.1)
        raise AssertionError("the proxy did not start")

    def dsn(self, tenant: str, database: str) -> str:
        """The DSN an application was given. Cached: a crash or a rerun must never change a password."""
        if (tenant, database) not in self.dsns:
            done = self.ok("credentials", tenant, "--via", f"127.0.0.1:{self.proxy_port}", "--database",
                           database, "--reveal", "--format", "json")
            self.dsns[tenant, database] = str(json.loads(done.stdout)["dsn"])
        return self.dsns[tenant, database]

    def connect(self, tenant: str, database: str) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(tenant, database), autocommit=True, connect_timeout=10)

    def ledger(self) -> list[dict[str, Any]]:
        path = self.root / ".tenantctl" / "offboarding.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def routes(self) -> dict[str, Any]:
        return dict(json.loads((self.root / ".tenantctl" / "routes.json").read_text())["tenants"])

    def applied_stacks(self) -> set[str]:
        return set(json.loads((self.root / ".tenantctl" / "applied.json").read_text())["stacks"])

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """The local cluster's admin connection, to look at the catalogs between a crash and its rerun."""
        state_dir = self.root / ".tenantctl"
        return admin_connect(running_local_server(state_dir, "shared-01"), local_admin_password(state_dir, "shared-01"),
                             dbname)

    def leftovers(self) -> list[str]:
        """What interrupted runs may leave behind: partial dumps, tenantctl's temporary files."""
        found = [str(p) for p in (self.root / ".tenantctl").glob("**/.partial")]
        found += [str(p) for p in (self.root / ".tenantctl").glob("partial-dumps")]
        return found + [str(p) for p in self.tmp.glob("tenantctl-*")]

    def stop(self) -> None:
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.terminate()
            try:
                self.proxy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
        self.cli("local", "down", timeout=120)


@contextlib.contextmanager
def new_project(prefix: str) -> Iterator[Project]:
    """A project directory with the e2e clients file; its proxy and local target are stopped afterwards."""
    layout = install_toolchain()
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)  # the postgres OS user must traverse into .tenantctl/local/
    (root / "clients.tfvars").write_text(CLIENTS)
    env = {**os.environ, BINARY_ENV: str(layout.terraform)}
    env.pop("PGPASSWORD", None)
    created = Project(root, env)
    try:
        yield created
    finally:
        created.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    with new_project("tenantctl-e2e-") as created:
        yield created


def eventually(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def refused(project: Project, tenant: str, database: str, dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=5):
            return False
    except psycopg.OperationalError:
        return True


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(project: Project, tenant: str, database: str, query: str) -> list[tuple[Any, ...]]:
    """Through the proxy, as the tenant (its cached DSN), once it is routed and accepted again."""
    eventually(lambda: not refused(project, tenant, database, project.dsn(tenant, database)),
               what=f"{tenant}/{database} reachable through the proxy")
    with psycopg.connect(project.dsn(tenant, database), autocommit=True, connect_timeout=10) as conn:
        return conn.execute(query).fetchall()


def assert_converged(project: Project, tenant: str, databases: tuple[str, ...]) -> None:
    """A following plan has nothing to do, the tenant is routed, and it connects through the proxy."""
    plan = project.cli("plan", "--detailed-exitcode", "-q")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert sorted(project.routes()[tenant]["databases"]) == sorted(databases), project.routes()[tenant]
    for database in databases:
        assert rows(project, tenant, database, "SELECT current_user") == [(tenant,)]


def test_lifecycle(project: Project) -> None:
    # --- onboard three tenants (one shared cluster; the first onboard also creates it) ------------
    project.ok("onboard", "alpha", "--db", "db1", "--db", "db2", "--allowed-ip", "127.0.0.1/32", "--yes")
    text = project.clients.read_text()
    assert text.startswith(CLIENTS.split("clients = [")[0]), "onboard must leave the rest of the file as it was"
    assert 'cluster      = "shared-01"' in text, "the placement is pinned in the block"
    project.ok("onboard", "bravo", "--db", "db1", "--allowed-ip", "127.0.0.1/32", "--tier", "basic", "--yes")
    project.ok("onboard", "carol", "--db", "app", "--allowed-ip", "127.0.0.1/32", "--iam-auth", "--yes")
    project.start_proxy()

    # --- bad arguments: clear error, exit 2, file unchanged ---------------------------------------
    before = project.clients.read_bytes()
    for args, message in [
        (("offboard", "nosuch", "--yes"), "no tenant named 'nosuch'"),
        (("onboard", "bravo", "--db", "other", "--allowed-ip", "127.0.0.1/32", "--yes"), "already exists"),
        (("onboard", "delta", "--db", "db1", "--allowed-ip", "10.0.0.300/32", "--yes"), "not a valid CIDR"),
        (("restore", "bravo"), "cannot be restored"),
    ]:
        done = project.cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert project.clients.read_bytes() == before, args

    done = project.ok("onboard", "echo", "--db", "db1", "--allowed-ip", "127.0.0.1/32", "--plan-only")
    assert "planned (file unchanged)" in done.stdout
    assert project.clients.read_bytes() == before, "--plan-only leaves the file unchanged"
    assert not (project.root / "stacks" / "tenants" / "echo").exists(), "--plan-only leaves no rendered stack"
    project.ok("render", "--check")

    # --- data through the proxy; a long-lived session of another tenant ---------------------------
    with project.connect("alpha", "db1") as alpha:
        alpha.execute("CREATE TABLE orders (id int PRIMARY KEY, item text)")
        alpha.execute("INSERT INTO orders SELECT g, 'item-' || g FROM generate_series(1, 500) g")
    bravo = project.connect("bravo", "db1")
    bravo.execute("CREATE TABLE notes (body text)")
    bravo.execute("INSERT INTO notes VALUES ('kept')")
    alpha_dsn = project.dsn("alpha", "db1")

    # --- offboard alpha, interrupted by SIGKILL right after it started dumping, then resumed ------
    project.kill_when(("offboard", "alpha", "--yes", "--retain-days", "0"), "dumping alpha_db1")
    assert not refused(project, "bravo", "db1", project.dsn("bravo", "db1"))
    assert "alpha" in project.clients.read_text(), "the block leaves the file only after the archive"
    project.ok("offboard", "alpha", "--yes")  # resumes the interrupted run
    assert project.leftovers() == [], "the resumed offboarding left partial dumps or temporary files behind"
    steps = [e["step"] for e in project.ledger() if e["tenant"] == "alpha"]
    assert steps[0] == "offboard_started" and steps[-1] == "offboard_completed"
    assert steps.count("offboard_started") == 1, "the rerun resumed the same run"
    dumps = {e["database"]: e for e in project.ledger() if e["step"] == "database_dumped"}
    assert set(dumps) == {"alpha_db1", "alpha_db2"}
    for entry in dumps.values():
        assert sha256(Path(entry["location"])) == entry["sha256"]
    assert "alpha" not in project.clients.read_text()
    assert "alpha" not in project.routes() and "bravo" in project.routes()
    eventually(lambda: refused(project, "alpha", "db1", alpha_dsn), what="alpha refused by the proxy")
    assert bravo.execute("SELECT body FROM notes").fetchone() == ("kept",), "bravo's session survived"

    status = json.loads(project.ok("status", "--format", "json").stdout)
    by_name = {row["tenant"]: row for row in status["tenants"]}
    assert by_name["alpha"]["state"] == "offboarded" and by_name["bravo"]["drift"] == "in sync"
    assert by_name["carol"]["auth"] == "iam"

    # --- restore alpha, SIGKILLed while converging (planning), rerun and SIGKILLed again after its
    # applies (IAM, Postgres), before the routing map and the ledger's last entry, then resumed -----
    project.kill_when(("restore", "alpha"), "converging")
    project.kill_at(("restore", "alpha"), "routes-before-write")
    assert "alpha" not in project.routes(), "killed before the routing map"
    assert "restore_completed" not in [e["step"] for e in project.ledger() if e["tenant"] == "alpha"]
    project.ok("restore", "alpha")
    assert project.ledger()[-1]["step"] == "restore_completed"
    assert rows(project, "alpha", "db1", "SELECT count(*), max(item) FROM orders") == [(500, "item-99")]
    assert bravo.execute("SELECT count(*) FROM notes").fetchone() == (1,), "bravo's session survived"

    # --- offboard again, purge (dump verified), restore from the dump -----------------------------
    project.ok("offboard", "alpha", "--yes", "--retain-days", "0")
    purged = json.loads(project.ok("purge", "--older-than", "0", "--format", "json").stdout)["purged"]
    assert [p["purged"] for p in purged if p["tenant"] == "alpha"] == [
        ["alpha_db1__archived_" + time.strftime("%Y%m%d", time.gmtime()),
         "alpha_db2__archived_" + time.strftime("%Y%m%d", time.gmtime())]]
    done = project.ok("restore", "alpha")
    assert "restored from its dump" in done.stdout
    assert rows(project, "alpha", "db1", "SELECT count(*) FROM orders") == [(500,)]

    def no_data_lost() -> None:
        assert rows(project, "alpha", "db1", "SELECT count(*), max(item) FROM orders") == [(500, "item-99")]
        assert bravo.execute("SELECT body FROM notes").fetchall() == [("kept",)], "bravo's session survived"
        for tenant in written:
            assert rows(project, tenant, "db1", "SELECT body FROM notes") == [(f"{tenant} was here",)]

    def write(tenant: str) -> None:
        with psycopg.connect(project.dsn(tenant, "db1"), autocommit=True, connect_timeout=10) as conn:
            conn.execute("CREATE TABLE notes (body text)")
            conn.execute("INSERT INTO notes VALUES (%s)", (f"{tenant} was here",))
        written.append(tenant)

    written: list[str] = []

    # --- (a) SIGKILL inside the Terraform apply of a tenant stack, after its first resource -------
    onboard_delta = ("onboard", "delta", "--db", "db1", "--allowed-ip", "127.0.0.1/32", "--yes")
    project.kill_when(onboard_delta, "tenants/delta: create aws_iam_user.tenant done")
    assert "delta" in project.clients.read_text(), "applying had started: the block stays for the rerun"
    assert "delta" not in project.routes(), "killed before the routing map"
    project.ok(*onboard_delta)
    assert_converged(project, "delta", ("db1",))
    write("delta")
    no_data_lost()

    # --- (b) SIGKILL inside the Postgres apply: bravo (data, open session) gets a second database;
    # killed after CREATE DATABASE, before its privileges, opening and schema grants ----------------
    text = project.clients.read_text()
    edited = re.sub(r'(name\s*=\s*"bravo"\s*\n\s*databases\s*=\s*)\{ db1 = true \}', r"\1{ db1 = true, db2 = true }",
                    text)
    assert edited != text, text
    project.clients.write_text(edited)
    project.ok("plan", "-q")
    project.kill_at(("apply", "--auto-approve"), "postgres-database-created")
    with project.admin() as admin:
        assert admin.execute("SELECT datallowconn FROM pg_database WHERE datname = 'bravo_db2'").fetchall() == [
            (False,)], "killed after CREATE DATABASE, before the database was opened"
    assert sorted(project.routes()["bravo"]["databases"]) == ["db1"], "killed before the routing map"
    assert bravo.execute("SELECT body FROM notes").fetchall() == [("kept",)], "bravo's session survived the crash"
    again = project.cli("apply", "--auto-approve")  # the half-applied plan is not applied twice
    assert again.returncode == 3 and "tenantctl plan" in again.stderr, again.stderr
    project.ok("plan", "-q")
    project.ok("apply", "--auto-approve")
    assert_converged(project, "bravo", ("db1", "db2"))
    no_data_lost()

    # --- (c) SIGKILL after the Terraform apply, before applied.json, Postgres and the routing map --
    onboard_echo = ("onboard", "echo", "--db", "db1", "--allowed-ip", "127.0.0.1/32", "--yes")
    project.kill_at(onboard_echo, "terraform-applied")
    assert "tenants/echo" not in project.applied_stacks() and "echo" not in project.routes()
    state = json.loads((project.root / ".tenantctl" / "state" / "tenants" / "echo.tfstate").read_text())
    assert {r["type"] for r in state["resources"]} == {"aws_iam_user", "aws_iam_role"}, "Terraform had applied"
    with project.admin() as admin:
        assert admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'echo'").fetchall() == [], "before Postgres"
    project.ok(*onboard_echo)
    assert_converged(project, "echo", ("db1",))
    write("echo")
    no_data_lost()
    assert project.leftovers() == []
    bravo.close()
    assert_private(project.root / ".tenantctl")


def assert_private(state_dir: Path) -> None:
    """Nothing under .tenantctl that can hold data or secrets is readable by other local users."""
    # the routing map (no secrets) and the local CA's certificate (public; its key stays 0600): proxies read both
    shared = {state_dir / "routes.json", state_dir / "local" / "ca" / "ca.pem"}
    exposed = []

    def reachable(path: Path) -> bool:  # every directory above it lets others through
        return all(parent.stat().st_mode & 0o001 for parent in path.parents if parent.is_relative_to(state_dir))

    for path in [state_dir, *state_dir.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            if mode & 0o066:  # others may traverse (0711: the postgres user reaches its data dir), never list
                exposed.append(f"{oct(mode)} {path}")
        elif path not in shared and mode & 0o077 and reachable(path):
            exposed.append(f"{oct(mode)} {path}")
    assert not exposed, "readable by other users:\n" + "\n".join(exposed[:40])
    assert (state_dir / "routes.json").stat().st_mode & 0o777 == 0o644
    assert (state_dir / "local" / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
