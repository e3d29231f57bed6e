"""Attacks on the tenant lifecycle through the real CLI (real Terraform + moto, real local PostgreSQL).

The archive-namespace takeover: a new tenant named so that its database is an offboarded tenant's
archive, then `purge`. Refused by validation at the front door, and — for objects forged behind
tenantctl's back — by the native planner (it never takes over another tenant's or an archive's
database) and by `purge` (it drops only a database whose marker, owner and ledger agree, and that no
tenant is routed to).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_lifecycle import Project, new_project  # type: ignore[import-not-found]

from tenantctl.routing import read_map
from tenantctl.routing.document import seal
from tenantctl.routing.store import write_map

pytestmark = [pytest.mark.postgres, pytest.mark.terraform, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    with new_project("tenantctl-e2e-hardening-") as created:
        yield created


def database_identity(project: Project, name: str) -> tuple[str, str] | None:
    with project.admin() as admin:
        row = admin.execute("SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database') "
                            "FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def test_archive_namespace_takeover_is_refused_at_every_step(project: Project) -> None:
    project.ok("onboard", "alpha", "--db", "db1", "--allowed-ip", "127.0.0.1/32", "--yes")
    project.ok("onboard", "bravo", "--db", "db1", "--allowed-ip", "127.0.0.1/32", "--yes")
    project.start_proxy()
    with project.connect("alpha", "db1") as alpha:
        alpha.execute("CREATE TABLE secrets (body text)")
        alpha.execute("INSERT INTO secrets VALUES ('alpha only')")
    project.ok("offboard", "alpha", "--yes", "--retain-days", "0")
    stamp = time.strftime("%Y%m%d", time.gmtime())
    archive = f"alpha_db1__archived_{stamp}"
    original = database_identity(project, archive)
    assert original is not None and original[0] == "alpha_owner" and "archived=" in original[1], original

    # 1. The front door: the colliding name is refused with the reason, the file unchanged.
    before = project.clients.read_bytes()
    done = project.cli("onboard", "alpha_db1_", "--db", f"archived_{stamp}", "--allowed-ip", "127.0.0.1/32",
                       "--yes")
    assert done.returncode == 2 and "single `_`" in done.stderr, done.stderr
    assert project.clients.read_bytes() == before

    # 2. Behind tenantctl's back, a live tenant's database name marked as the archive: never adopted.
    with project.admin() as admin:
        admin.execute("CREATE DATABASE charlie_db1")
        admin.execute(f"COMMENT ON DATABASE charlie_db1 IS '{original[1]}'")
    done = project.cli("onboard", "charlie", "--db", "db1", "--allowed-ip", "127.0.0.1/32", "--yes")
    assert done.returncode == 3, done.stderr
    assert "will not take over" in done.stderr and "archive of offboarded tenant 'alpha'" in done.stderr
    assert project.clients.read_bytes() == before, "the refused onboard rolled the file back"
    with project.admin() as admin:
        admin.execute("DROP DATABASE charlie_db1")

    # 3. purge refuses an archive that was taken over (owner and marker of someone else)...
    with project.admin() as admin:
        admin.execute("CREATE ROLE interloper_owner NOLOGIN")
        admin.execute(f'ALTER DATABASE "{archive}" OWNER TO interloper_owner')
        admin.execute(f"COMMENT ON DATABASE \"{archive}\" IS 'tenantctl tenant=interloper state=x'")
    done = project.cli("purge", "--older-than", "0")
    assert done.returncode == 3, done.stderr
    assert "not provably the archive" in done.stderr and "owned by interloper_owner" in done.stderr
    assert database_identity(project, archive) is not None, "nothing was dropped"
    with project.admin() as admin:
        admin.execute(f'ALTER DATABASE "{archive}" OWNER TO alpha_owner')
        admin.execute(f"COMMENT ON DATABASE \"{archive}\" IS '{original[1]}'")

    # 4. ... and one that a tenant is routed to.
    routes_path = project.root / ".tenantctl" / "routes.json"
    routing_map = read_map(routes_path)
    bravo = routing_map.tenants["bravo"]
    hijacked = type(bravo)(bravo.tenant, bravo.cluster, {**bravo.databases, "loot": archive}, bravo.allowed_cidrs,
                           bravo.max_connections)
    write_map(routes_path, seal(type(routing_map)(routing_map.serial + 1, routing_map.generated_at,
                                                  routing_map.clusters, {**routing_map.tenants, "bravo": hijacked})))
    done = project.cli("purge", "--older-than", "0")
    assert done.returncode == 3 and "is in the routing map" in done.stderr, done.stderr
    assert database_identity(project, archive) is not None
    project.ok("routes", "build")

    # 5. The genuine archive is purged; bravo is untouched.
    project.ok("purge", "--older-than", "0")
    assert database_identity(project, archive) is None
    with psycopg.connect(project.dsn("bravo", "db1"), connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("bravo",)


def converge(project: Project) -> None:
    for _ in range(4):
        plan = project.cli("plan", "--detailed-exitcode", "-q")
        if plan.returncode == 0:
            return
        assert plan.returncode == 4, plan.stdout + plan.stderr
        project.ok("apply", "--auto-approve")
    raise AssertionError("still changes pending after 4 rounds")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "stacks").rglob("*")) if p.is_file()}


def test_the_reviewed_plan_shows_what_cuts_access_and_refuses_silent_moves(project: Project) -> None:
    import json
    import re

    project.ok("onboard", "delta", "--db", "db1", "--db", "db2", "--allowed-ip", "127.0.0.1/32", "--yes")
    original = project.clients.read_text()

    # db2 = false: the apply would remove the route (delta loses db2 through the proxy) and keep the data.
    disabled = re.sub(r'(name\s*=\s*"delta"\s*\n\s*databases\s*=\s*)\{ db1 = true, db2 = true \}',
                      r"\1{ db1 = true, db2 = false }", original)
    assert disabled != original
    project.clients.write_text(disabled)
    assert project.cli("plan", "--detailed-exitcode", "-q").returncode == 4, "a routing change is a change"
    document = json.loads(project.ok("plan", "--format", "json").stdout)
    items = {(s["name"], i["action"], i["object"]) for s in document["sections"] for i in s["items"]}
    assert ("routing", "route-remove", "route delta/db2 removed") in items, items
    assert ("postgres", "orphan", "database delta_db2 kept") in items, items
    markdown = project.ok("plan", "--format", "markdown").stdout
    assert "ROUTE REMOVED" in markdown and "KEPT, UNROUTED" in markdown and "[!WARNING]" in markdown
    text = project.ok("plan").stdout
    assert "ACCESS CHANGES" in text and "DATA KEPT, NOT ROUTED" in text and "delta_db2" in text
    project.clients.write_text(original)

    # A crash between the apply and the routing map's write: the next plan shows the map as pending.
    routes = project.root / ".tenantctl" / "routes.json"
    saved = routes.read_bytes()
    routing_map = read_map(routes)
    write_map(routes, seal(type(routing_map)(routing_map.serial + 1, routing_map.generated_at, routing_map.clusters,
                                             {k: v for k, v in routing_map.tenants.items() if k != "delta"})))
    plan = project.cli("plan", "--detailed-exitcode")
    assert plan.returncode == 4 and "route delta to cluster shared-01" in plan.stdout, plan.stdout
    project.ok("apply", "--auto-approve")
    assert "delta" in read_map(routes).tenants
    assert read_map(routes).tenants == read_map_bytes(saved).tenants

    # A second shared cluster, then delta's pin changed to it: refused at plan and at apply, nothing started.
    with_second = original.replace("shared-01 = { min_acu = 0.5, max_acu = 16, max_tenants = 500 }",
                                   "shared-01 = { min_acu = 0.5, max_acu = 16, max_tenants = 500 }\n"
                                   "  shared-02 = { min_acu = 0.5, max_acu = 16, max_tenants = 500 }")
    assert with_second != original
    project.clients.write_text(with_second)
    converge(project)
    pinned = with_second
    head, tail = pinned.split('"delta"', 1)
    moved = head + '"delta"' + tail.replace('"shared-01"', '"shared-02"', 1)
    assert moved != pinned
    project.clients.write_text(moved)
    before = snapshot(project.root)
    for args in (("plan",), ("apply", "--auto-approve")):
        done = project.cli(*args)
        assert done.returncode == 3, (args, done.stdout, done.stderr)
        assert "routed to cluster 'shared-01'" in done.stderr and "tenantctl move" in done.stderr
    assert snapshot(project.root) == before
    with project.admin() as admin:
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = 'delta_db1'").fetchall() == [(1,)]
    project.clients.write_text(pinned)

    # settings.region changed: the clusters "vanish" (drift) and would be created anew: refused, stacks restored.
    moved_region = pinned.replace('region                   = "eu-west-1"', 'region                   = "us-east-1"')
    assert moved_region != pinned
    project.clients.write_text(moved_region)
    before = snapshot(project.root)
    servers_before = sorted(p.name for p in (project.root / ".tenantctl" / "local" / "postgres").iterdir())
    done = project.cli("plan")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "VANISHED" in done.stdout and "settings.region" in done.stdout, done.stdout
    assert snapshot(project.root) == before, "a refused plan leaves stacks/ as it found it"
    assert sorted(p.name for p in (project.root / ".tenantctl" / "local" / "postgres").iterdir()) == servers_before
    project.clients.write_text(pinned)
    project.ok("render", "--check")
    converge(project)


def read_map_bytes(data: bytes) -> object:
    from tenantctl.routing.document import parse_map

    return parse_map(data, "saved")
