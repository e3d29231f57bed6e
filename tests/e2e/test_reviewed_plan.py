"""The reviewed plan after a real crash and a refused rename, through the real CLI: real Terraform +
AWS provider against moto, real local PostgreSQL servers. (tests/e2e/test_hardening.py covers db2 =
false, a changed pin and a changed region.)

- a new cluster's first apply with `--then-deferred` also applies the tenant stacks it deferred;
- a SIGKILL between the applies and the routing-map write (failpoint `routes-before-write`) leaves a
  pending change for `plan --detailed-exitcode` (exit 4, the map's diff shown), and `apply` writes it;
- a refused cluster-key rename changes nothing: no local server started for the new name, the rendered
  stacks as they were; and the hint of `render --check` works when followed literally.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenantctl.terraform.toolchain import BINARY_ENV, install_toolchain

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
    name         = "client01"
    databases    = { db1 = true, db2 = true, db3 = false }
    allowed_ips  = ["127.0.0.1/32"]
    rds_iam_auth = false
    cluster      = "shared-01"
  },
]
"""


class Project:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.clients = root / "clients.tfvars"

    def cli(self, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "TENANTCTL_FAILPOINT": failpoint} if failpoint else self.env
        return subprocess.run([sys.executable, "-m", "tenantctl.cli.main", *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=900, check=False)

    def expect(self, code: int, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.cli(*args)
        assert done.returncode == code, (f"tenantctl {' '.join(args)} exited {done.returncode}, not {code}:\n"
                                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def edit(self, old: str, new: str) -> None:
        text = self.clients.read_text()
        assert old in text
        self.clients.write_text(text.replace(old, new))

    def routes(self) -> dict[str, Any]:
        return dict(json.loads((self.root / ".tenantctl" / "routes.json").read_text())["tenants"])


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    layout = install_toolchain()
    root = Path(tempfile.mkdtemp(prefix="tenantctl-review-"))
    os.chmod(root, 0o755)  # the postgres OS user must traverse into .tenantctl/local/
    (root / "clients.tfvars").write_text(CLIENTS)
    env = {**os.environ, BINARY_ENV: str(layout.terraform)}
    env.pop("PGPASSWORD", None)
    env.pop("TENANTCTL_FAILPOINT", None)
    created = Project(root, env)
    try:
        yield created
    finally:
        created.cli("local", "down")
        shutil.rmtree(root, ignore_errors=True)


def items(document: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return next(s["items"] for s in document["sections"] if s["name"] == section)


def test_crash_before_the_map_and_a_refused_rename(project: Project) -> None:
    # --- a new cluster's first apply converges in one run with --then-deferred (issue 14 item 3) ---
    planned = json.loads(project.expect(0, "plan", "-q", "--format", "json").stdout)
    assert [s["stack"] for s in planned["stacks"] if s["status"] == "deferred"] == ["tenants/client01"]
    done = project.expect(0, "apply", "--plan", planned["plan_id"], "--auto-approve", "--then-deferred",
                          "--format", "json")  # as the GitOps example runs it
    applied = json.loads(done.stdout)
    assert applied["plan_id"] == planned["plan_id"] and applied["status"] == "applied"
    assert [s["stack"] for s in applied["follow_up"]["stacks"]] == ["tenants/client01"]
    assert applied["follow_up"]["status"] == "applied" and applied["follow_up"]["plan_id"] != planned["plan_id"]
    project.expect(0, "plan", "--detailed-exitcode", "-q")
    assert set(project.routes()["client01"]["databases"]) == {"db1", "db2"}

    # --- SIGKILL between the applies and the routing-map write: plan sees the pending map --------
    project.edit("db3 = false", "db3 = true")
    project.expect(0, "plan", "-q")
    killed = project.cli("apply", "--auto-approve", failpoint="routes-before-write")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "db3" not in project.routes()["client01"]["databases"], "the map was not written"
    done = project.expect(4, "plan", "--detailed-exitcode", "-q", "--format", "json")
    routing = items(json.loads(done.stdout), "routing")
    assert [(i["tenant"], i["action"], i["object"]) for i in routing] == [
        ("client01", "route-add", "route client01/db3 -> client01_db3")]
    markdown = project.expect(0, "plan", "-q", "--format", "markdown").stdout
    assert "route client01/db3 -> client01_db3" in markdown
    project.expect(0, "apply", "--auto-approve")
    assert project.routes()["client01"]["databases"]["db3"] == "client01_db3"
    project.expect(0, "plan", "--detailed-exitcode", "-q")

    # --- a cluster-key rename is refused and changes nothing -----------------------------------
    stacks_before = snapshot(project.root / "stacks")
    servers_before = sorted(p.name for p in (project.root / ".tenantctl" / "local" / "postgres").iterdir())
    project.edit("shared-02 = {", "shared-03 = {")
    done = project.expect(3, "plan", "-q", "--format", "json")
    assert any(v["type"] == "aws_rds_cluster" for v in json.loads(done.stdout)["violations"])
    assert sorted(p.name for p in (project.root / ".tenantctl" / "local" / "postgres").iterdir()) == \
        servers_before, "a refused plan started a server"
    assert snapshot(project.root / "stacks") == stacks_before, "a refused plan leaves stacks/ as it found it"
    project.expect(3, "apply", "--auto-approve")

    # --- the hint of `render --check` works when followed literally ------------------------------
    check = project.expect(1, "render", "--check")
    hint = next(line for line in check.stderr.splitlines() if line.startswith("hint: run `"))
    command = hint.split("`")[1].split()
    assert command[0] == "tenantctl"
    project.expect(0, *command[1:])
    project.expect(0, "render", "--check")
    project.edit("shared-03 = {", "shared-02 = {")
    project.expect(0, "render")
    project.expect(0, "plan", "--detailed-exitcode", "-q")

    # --- a cluster added later, with a tenant on it: one interactive-style apply, text output ------
    project.edit("clusters = {", "clusters = {\n  shared-04 = { min_acu = 0.5, max_acu = 16, max_tenants = 500 }")
    project.edit("clients = [", 'clients = [\n  { name = "client09", databases = { app = true }, allowed_ips = '
                 '["127.0.0.1/32"], rds_iam_auth = false, cluster = "shared-04" },')
    project.expect(4, "plan", "--detailed-exitcode", "-q")
    done = project.expect(0, "apply", "--auto-approve", "--then-deferred")
    assert "round 2 (the stacks the reviewed plan deferred): plan" in done.stdout, done.stdout
    assert project.routes()["client09"]["cluster"] == "shared-04"
    project.expect(0, "plan", "--detailed-exitcode", "-q")


def test_plan_history_diff_and_a_tampered_log(project: Project) -> None:
    """Issue 14 item 2 on the project the test above converged: real plans, real applies."""
    plans = project.root / ".tenantctl" / "plans"
    baseline = json.loads(project.expect(0, "plan", "-q", "--format", "json").stdout)["plan_id"]
    project.edit("db2 = true", "db2 = false")
    cut = json.loads(project.expect(0, "plan", "-q", "--format", "json").stdout)["plan_id"]
    difference = json.loads(project.expect(0, "plans", "diff", baseline, cut, "--format", "json").stdout)
    added = difference["tenants"]["client01"]["added"]
    assert {(row["source"], row["action"]) for row in added} >= {("routing", "route-remove"),
                                                                 ("postgres", "orphan")}, added
    assert set(difference["inputs"]) == {"clients_sha256", "status"}
    text = project.expect(4, "plans", "diff", baseline, cut, "--exit-code").stdout
    assert "+ route-remove route client01/db2" in text, text

    project.env = {**project.env, "TENANTCTL_ACTOR": "alice", "GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "4711",
                   "GITHUB_REPOSITORY": "acme/infra"}
    project.expect(0, "apply", "--auto-approve")
    listed = {p["plan_id"]: p for p in json.loads(project.expect(0, "plans", "list", "-f", "json").stdout)["plans"]}
    applied = listed[cut]["applied"]
    assert applied["status"] == "applied" and applied["actor"]["user"] == "alice"
    assert applied["actor"]["ci"]["run_id"] == "4711"
    assert listed[baseline]["applied"] is None and listed[baseline]["status"] == "no_changes"
    shown = project.expect(0, "plans", "show", cut[:17]).stdout
    assert "apply-finished applied" in shown and "alice@" in shown and "github-actions run 4711" in shown
    assert "route client01/db2" in project.expect(0, "plans", "show", cut, "-f", "markdown").stdout
    project.edit("db2 = false", "db2 = true")
    project.expect(0, "plan", "-q")
    project.expect(0, "apply", "--auto-approve")
    project.expect(0, "plans", "verify")

    log = plans / "applied.log"
    original = log.read_bytes()
    edited = original.replace(b'"user":"alice"', b'"user":"mallory"', 1)
    assert edited != original
    log.write_bytes(edited)
    assert "was edited" in project.expect(5, "plans", "verify").stdout
    log.write_bytes(b"".join(original.splitlines(keepends=True)[:-1]))  # drop the newest record
    report = json.loads(project.expect(5, "plans", "verify", "-f", "json").stdout)
    assert any("missing from the log" in p["message"] for p in report["problems"]), report
    log.write_bytes(original)
    summary = plans / cut / "summary.json"
    reviewed = summary.read_bytes()
    summary.write_bytes(reviewed.replace(b"route-remove", b"route-add"))
    assert "differs from what was applied" in project.expect(5, "plans", "verify").stdout
    summary.write_bytes(reviewed)
    project.expect(0, "plans", "verify")

    pruned = json.loads(project.expect(0, "plans", "prune", "--keep", "1", "-f", "json").stdout)
    assert baseline in pruned["removed"] and not (plans / baseline).exists()
    assert cut not in pruned["removed"] and pruned["trimmed"], pruned  # applied plans keep their summaries
    for trimmed in pruned["trimmed"]:
        assert not list((plans / trimmed).glob("*.tfplan")) and (plans / trimmed / "summary.json").exists()
    project.expect(0, "plans", "verify")
    assert "route client01/db2" in project.expect(0, "plans", "show", cut).stdout


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
