"""Tables at 80 columns and piped: every name whole, no line wider than the terminal; `routes show`
reads the project's map by default."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from tenantctl.errors import ExitCode
from tenantctl.model import model_from_text
from tenantctl.model.desired import desired_state
from tenantctl.report.tables import print_table
from tenantctl.routing import Endpoint, build_routing_map
from tenantctl.routing.store import write_map

COLUMNS = ("tenant", "state", "cluster", "databases", "auth", "tier", "last applied", "drift", "routed")
ROWS = [
    ("client01", "active", "shared-01", "client01_db1, client01_db2", "password", "standard",
     "2026-12-04T03:20:46Z", "in sync", "yes"),
    ("premium_acme_corporation", "moving shared-01 -> shared-02: cutting over", "premium-acme-dedicated", "app",
     "iam", "premium", "-", "pending changes", "no"),
]
NAMES = ("client01", "premium_acme_corporation", "shared-01", "premium-acme-dedicated", "client01_db1, client01_db2",
         "moving shared-01 -> shared-02: cutting over", "2026-12-04T03:20:46Z")


def render(width: int) -> str:
    buffer = io.StringIO()
    print_table(Console(file=buffer, width=width, force_terminal=False), COLUMNS, ROWS, title="status")
    return buffer.getvalue()


def test_at_80_columns_every_value_is_whole_and_no_line_is_wider() -> None:
    text = render(80)
    assert all(name in text for name in NAMES), text
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_when_it_fits_each_row_is_one_line() -> None:
    text = render(300)
    lines = text.splitlines()
    assert any("client01" in line and "shared-01" in line and "in sync" in line for line in lines), text
    assert any("premium_acme_corporation" in line and "pending changes" in line for line in lines), text


CLIENTS = """
clusters = { shared-01 = { min_acu = 0.5, max_acu = 4 }, premium-acme-dedicated = { min_acu = 1, max_acu = 8 } }
clients = [
  { name = "client01", databases = { db1 = true }, allowed_ips = ["109.241.200.168/32"], rds_iam_auth = true,
    cluster = "shared-01" },
  { name = "premium_acme_corporation", databases = { analytics_warehouse = true }, rds_iam_auth = false,
    allowed_ips = ["203.0.113.0/24"], cluster = "premium-acme-dedicated" },
]
"""


def routes_show(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenantctl.cli.main", "routes", "show", *args], cwd=cwd,
                          capture_output=True, text=True, check=False, env=env)


def test_routes_show_reads_the_project_map_and_stays_readable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    missing = routes_show(tmp_path, env)
    assert missing.returncode == ExitCode.INVALID
    assert ".tenantctl/routes.json: routing map not found" in missing.stderr and "tenantctl apply" in missing.stderr
    endpoints = {"shared-01": Endpoint("shared-01.cluster-abc.eu-west-1.rds.amazonaws.com", 5432),
                 "premium-acme-dedicated": Endpoint("premium-acme-dedicated.cluster-xyz.eu-west-1.rds.amazonaws.com",
                                                    5432)}
    write_map(tmp_path / ".tenantctl" / "routes.json",
              build_routing_map(desired_state(model_from_text(CLIENTS)), endpoints, now=datetime.now(UTC)))
    names = ("premium_acme_corporation", "premium-acme-dedicated", "analytics_warehouse -> "
             "premium_acme_corporation_analytics_warehouse", "premium-acme-dedicated.cluster-xyz.eu-west-1.rds."
             "amazonaws.com")
    narrow = routes_show(tmp_path, {**env, "COLUMNS": "80"})
    assert narrow.returncode == 0, narrow.stderr
    assert all(name in narrow.stdout for name in names), narrow.stdout
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80, narrow.stdout
    piped = routes_show(tmp_path, env)  # stdout is a pipe here: rows stay whole lines
    assert any("premium_acme_corporation" in line and "203.0.113.0/24" in line for line in piped.stdout.splitlines())
