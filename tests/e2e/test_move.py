"""`tenantctl move` of a live tenant under write load, through the real CLI, the real proxy and two
real local clusters: every acknowledged commit survives, the pause is short, the other tenants never
see an error, a cut-over that cannot finish in time changes nothing, and a SIGKILL at each phase is
resumed (or undone) by rerunning the same command, leaving no replication slot behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_lifecycle import Project, eventually, new_project  # type: ignore[import-not-found]

from tenantctl.local.pgserver import admin_connect, local_admin_password, running_local_server

pytestmark = [pytest.mark.postgres, pytest.mark.terraform, pytest.mark.timeout(1500)]

CLIENTS = """\
settings = {
  region                   = "eu-west-1"
  target                   = "local"
  allow_private_source_ips = true
}

clusters = {
  shared-01 = { min_acu = 0.5, max_acu = 16, max_tenants = 500 }
  shared-02 = { min_acu = 0.5, max_acu = 16, max_tenants = 500 }
}

clients = [
  {
    name         = "mover" # the tenant that moves; this comment must survive
    databases    = { app = true }
    allowed_ips  = ["127.0.0.1/32"]
    rds_iam_auth = false
    cluster      = "shared-01"
  },
  { name = "steady", databases = { app = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false,
    cluster = "shared-01" },
  { name = "other", databases = { app = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false,
    cluster = "shared-02" },
  { name = "third", databases = { app = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false,
    cluster = "shared-01" },
]
"""


class Writer(threading.Thread):
    """A client that commits one row at a time through the proxy and keeps a ledger of what the server
    acknowledged. On any error (its session ended by the cut-over) it reconnects, as applications do."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.acked: list[tuple[int, float]] = []  # (id, when the commit was acknowledged)
        self.errors: list[tuple[float, str]] = []
        self.connects: list[tuple[float, float]] = []  # (when, how long)
        self.stop = threading.Event()

    def run(self) -> None:
        connection: psycopg.Connection[Any] | None = None
        number = 0
        while not self.stop.is_set():
            try:
                if connection is None:
                    began = time.monotonic()
                    connection = psycopg.connect(self.dsn, autocommit=True, connect_timeout=60)
                    self.connects.append((began, time.monotonic() - began))
                number += 1
                row = connection.execute("INSERT INTO acks (n) VALUES (%s) RETURNING id", (number,)).fetchone()
                assert row is not None
                self.acked.append((int(row[0]), time.monotonic()))
            except psycopg.Error as error:
                self.errors.append((time.monotonic(), str(error).splitlines()[0]))
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
                connection = None
                time.sleep(0.01)
            time.sleep(0.003)
        if connection is not None:
            connection.close()

    def worst_gap(self, start: float, end: float) -> float:
        """The longest time between two acknowledged commits within [start, end]."""
        return self.worst_gap_at(start, end)[0]

    def worst_gap_at(self, start: float, end: float) -> tuple[float, float]:
        times = [at for _, at in self.acked if start <= at <= end]
        return max(((b - a, a - start) for a, b in itertools.pairwise(times)), default=(0.0, 0.0))


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    with new_project("tenantctl-move-") as created:
        created.clients.write_text(CLIENTS)
        yield created


def admin(project: Project, cluster: str, dbname: str = "postgres") -> psycopg.Connection[Any]:
    state_dir = project.root / ".tenantctl"
    return admin_connect(running_local_server(state_dir, cluster), local_admin_password(state_dir, cluster), dbname)


def replication_leftovers(project: Project) -> list[str]:
    found = []
    for cluster in ("shared-01", "shared-02"):
        with admin(project, cluster) as conn:
            found += [f"{cluster}: slot {r[0]}" for r in conn.execute("SELECT slot_name FROM pg_replication_slots")]
            found += [f"{cluster}: role {r[0]}" for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenantctl_move_%'")]
            databases = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn "
                                                    "AND datname NOT IN ('template1')")]
        for database in databases:
            with admin(project, cluster, database) as conn:
                found += [f"{cluster}/{database}: subscription {r[0]}" for r in conn.execute(
                    "SELECT subname FROM pg_subscription WHERE subdbid = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())")]
                found += [f"{cluster}/{database}: publication {r[0]}" for r in conn.execute(
                    "SELECT pubname FROM pg_publication")]
    return found


class Bench(threading.Thread):
    """pgbench (select-only, 2 clients) through the proxy for another tenant, in 5-second rounds until
    stopped; every round's report is kept."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.rounds: list[tuple[int, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            done = subprocess.run(["pgbench", "-n", "-c", "2", "-T", "5", "-S", self.dsn], capture_output=True,
                                  text=True, timeout=120, check=False)
            self.rounds.append((done.returncode, done.stdout + done.stderr))


def test_move_under_load_survives_timeouts_and_crashes(project: Project) -> None:
    project.ok("plan", "-q")
    project.ok("apply", "--auto-approve", "--then-deferred")
    socket_path = project.root / "proxy.sock"
    project.start_proxy("--control-socket", str(socket_path))
    with project.connect("mover", "app") as mover:
        mover.execute("CREATE TABLE acks (id bigserial PRIMARY KEY, n int, at timestamptz DEFAULT clock_timestamp())")
        mover.execute("CREATE TABLE notes (body text)")  # no primary key: needs REPLICA IDENTITY FULL
        mover.execute("INSERT INTO notes SELECT 'note ' || g FROM generate_series(1, 300) g")
        mover.execute("INSERT INTO acks (n) SELECT g FROM generate_series(1, 5000) g")
    for tenant in ("steady", "other", "third"):
        done = subprocess.run(["pgbench", "-i", "-s", "1", "-q", project.dsn(tenant, "app")], capture_output=True,
                              text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
    move = ("move", "mover", "--to", "shared-02", "--proxy-socket", str(socket_path), "--yes")

    # --- plan only, and a move without the proxy's socket, change nothing ------------------------------
    planned = project.ok("move", "mover", "--to", "shared-02", "--plan-only")
    assert "cut-over: pause mover" in planned.stdout and "plan only" in planned.stdout
    assert project.cli("move", "mover", "--to", "shared-02", "--yes").returncode == 2
    assert project.cli("move", "mover", "--to", "nowhere", *move[4:]).returncode == 2
    assert not (project.root / ".tenantctl" / "moves.jsonl").exists()

    writer = Writer(project.dsn("mover", "app"))
    writer.start()
    bench = [Bench(project.dsn(tenant, "app")) for tenant in ("steady", "other", "third")]
    for thread in bench:
        thread.start()
    try:
        # --- an open transaction outlives --timeout: the cut-over aborts, nothing changes ------------
        # (opened once the copy is set up: creating a replication slot waits for open transactions)
        project.kill_at(move, "move-copied")
        holder = psycopg.connect(project.dsn("mover", "app"))
        holder.execute("INSERT INTO notes VALUES ('in an open transaction')")
        done = project.cli(*move, "--timeout", "1")
        assert done.returncode == 3, done.stdout + done.stderr
        assert "stays on shared-01" in done.stderr and "open transactions" in done.stderr
        assert project.routes()["mover"]["cluster"] == "shared-01"
        holder.commit()  # the session was never touched
        holder.close()
        count = len(writer.acked)
        eventually(lambda: len(writer.acked) > count + 20, what="writes go on after the abort")

        # --- replication lagging beyond --timeout (its subscription stopped): the same ---------------
        with admin(project, "shared-02", "mover_app") as conn:
            (subscription,) = conn.execute("SELECT subname FROM pg_subscription").fetchone() or ("",)
            conn.execute(f'ALTER SUBSCRIPTION "{subscription}" DISABLE')
        done = project.cli(*move, "--timeout", "1")
        assert done.returncode == 3 and "did not catch up in time" in done.stderr, done.stdout + done.stderr
        assert project.routes()["mover"]["cluster"] == "shared-01"
        count = len(writer.acked)
        eventually(lambda: len(writer.acked) > count + 20, what="writes go on after the abort")
        with admin(project, "shared-02", "mover_app") as conn:
            conn.execute(f'ALTER SUBSCRIPTION "{subscription}" ENABLE')

        # --- SIGKILL in the cut-over (paused, login disabled), then after the map was written --------
        project.kill_at(move, "move-fenced")
        assert project.routes()["mover"]["cluster"] == "shared-01"
        status = json.loads(project.ok("status", "--format", "json").stdout)
        states = {t["tenant"]: t["state"] for t in status["tenants"]}
        assert states["mover"] == "moving shared-01 -> shared-02: cutting over" and states["steady"] == "active"
        project.kill_at(move, "move-switched")  # the rerun first undoes the half-done cut-over
        assert project.routes()["mover"]["cluster"] == "shared-02"
        project.ok("verify")  # a tenant in motion is checked where the map sends it
        done = project.ok(*move, "--format", "json")
        result = json.loads(done.stdout)
        assert result["resumed"] and result["target"] == "shared-02"
        assert result["steps"][0] == "routing_switched" and "move_completed" in result["steps"]
        assert 'cluster      = "shared-02"' in project.clients.read_text()
        assert "# the tenant that moves; this comment must survive" in project.clients.read_text()
        assert replication_leftovers(project) == []

        # --- back again: crashes while preparing and after the copy, then a clean cut-over -----------
        dumps = project.root / "move-dumps"
        back = ("move", "mover", "--rollback", "--proxy-socket", str(socket_path), "--dump", str(dumps), "--yes")
        project.kill_at(back, "move-prepared")
        project.kill_at(back, "move-copied")
        started = time.monotonic()
        project.kill_at(back, "move-finishing")  # cut over and cleaned; not archived, file not pinned
        assert project.routes()["mover"]["cluster"] == "shared-01"
        ledger = [json.loads(line) for line in (project.root / ".tenantctl" / "moves.jsonl").read_text().splitlines()]
        result = next(e for e in reversed(ledger) if e["step"] == "tenant_resumed")
        done = project.ok(*back, "--format", "json")
        ended = time.monotonic()
        finished = json.loads(done.stdout)
        assert finished["steps"] == ["source_database_dumped", "source_database_archived", "clients_file_updated",
                                     "move_completed"]
        (dumped,) = finished["dumps"]
        assert dumped["database"] == "mover_app" and Path(dumped["location"]).is_file()
        assert hashlib.sha256(Path(dumped["location"]).read_bytes()).hexdigest() == dumped["sha256"]
        count = len(writer.acked)
        eventually(lambda: len(writer.acked) > count + 50, what="writes go on after the move")
        gap, gap_at = writer.worst_gap_at(started, time.monotonic())
        slow = [(round(at - started, 3), round(took, 3)) for at, took in writer.connects
                if at >= started and took > 0.5]
        print(f"move back: pause {result['pause_seconds']:.3f}s {result['timings']}, worst gap between "
              f"commits {gap:.3f}s at +{gap_at:.3f}s, run {ended - started:.1f}s, slow reconnects {slow}, "
              "writer errors "
              f"{[(round(at - started, 3), m) for at, m in writer.errors if at >= started]}")
        # The pause is what the move controls. The writer's worst gap also holds its reconnect through the
        # proxy on this shared 2-core machine (usually ~0.2 s, seen up to 2.6 s under load): a bound that
        # catches a stalled cut-over without flaking; bench/move_bench.py reports the distribution.
        assert result["pause_seconds"] < 1.0 and gap < 3.0, (result["pause_seconds"], gap, slow)
    finally:
        writer.stop.set()
        writer.join(timeout=60)
        for thread in bench:
            thread.stop.set()
        for thread in bench:
            thread.join(timeout=60)

    # --- every acknowledged commit is on the cluster the tenant is routed to -------------------------
    assert project.routes()["mover"]["cluster"] == "shared-01"
    acked = {ident for ident, _ in writer.acked}
    with admin(project, "shared-01", "mover_app") as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM acks")}
        notes = conn.execute("SELECT count(*) FROM notes").fetchone()
        sequence = conn.execute("SELECT last_value FROM acks_id_seq").fetchone()
    assert acked - present == set(), f"{len(acked - present)} acknowledged commits lost"
    assert notes == (301,)
    assert sequence is not None and sequence[0] >= max(acked)
    with project.connect("mover", "app") as mover:  # through the proxy: a new row gets a fresh id
        row = mover.execute("INSERT INTO acks (n) VALUES (0) RETURNING id").fetchone()
        assert row is not None and row[0] > max(acked)
    assert replication_leftovers(project) == []
    with admin(project, "shared-02") as conn:
        kept = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'mover_app__moved_%'")]
    assert len(kept) == 1, "the source of the move back is kept under an archive name"
    for thread in bench:  # the other tenants never saw an error
        assert len(thread.rounds) >= 3
        for code, output in thread.rounds:
            assert code == 0 and re.search(r"number of failed transactions: 0 ", output), output[-2000:]
    errors = [message for _, message in writer.errors]
    assert all("terminating connection due to administrator command" in m or "server closed" in m
               or "consuming input failed" in m for m in errors), errors
    ledger = [json.loads(line) for line in (project.root / ".tenantctl" / "moves.jsonl").read_text().splitlines()]
    assert [e["step"] for e in ledger].count("cutover_aborted") >= 3  # two timeouts, and the crash undone
    assert any(e["step"] == "routing_switched" and e.get("recovered") for e in ledger), "the map written before a kill"

    # --- the tenant's stack follows its cluster: plan, apply, then nothing left to do ----------------
    project.ok("plan", "-q")
    project.ok("apply", "--auto-approve")
    assert project.cli("plan", "--detailed-exitcode", "-q").returncode == 0
    project.ok("verify")
