"""Only one `tenantctl move` runs in a project at a time; a crashed one does not keep the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenantctl.errors import RefusedError
from tenantctl.workflow.move import LOCK_FILE, MoveOptions, _one_move_at_a_time, move

CLIENTS = """
clusters = { c1 = { min_acu = 0.5, max_acu = 4 }, c2 = { min_acu = 0.5, max_acu = 4 } }
clients = [{ name = "a", databases = { app = true }, allowed_ips = ["109.241.200.168/32"], rds_iam_auth = true,
             cluster = "c1" }]
"""


def test_a_second_move_is_refused_while_one_runs(tmp_path: Path) -> None:
    clients = tmp_path / "clients.tfvars"
    clients.write_text(CLIENTS)
    with _one_move_at_a_time(tmp_path, plan_only=False):
        with pytest.raises(RefusedError, match=f"another tenantctl move is running in this project .pid {os.getpid()}"):
            move(tmp_path, clients, "a", "c2", options=MoveOptions(proxy_sockets=(tmp_path / "proxy.sock",)))
        planned = move(tmp_path, clients, "a", "c2", options=MoveOptions(plan_only=True))  # reads only
        assert planned.plan_only and planned.target == "c2"
    assert not (tmp_path / ".tenantctl" / "moves.jsonl").exists(), "the refused move recorded nothing"


def test_a_killed_move_releases_the_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from tenantctl.workflow.move import _one_move_at_a_time\n"
        "with _one_move_at_a_time(Path(sys.argv[1]), plan_only=False):\n"
        "    print('held', flush=True); time.sleep(60)\n"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(RefusedError), _one_move_at_a_time(tmp_path, plan_only=False):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:
        try:
            with _one_move_at_a_time(tmp_path, plan_only=False):
                break
        except RefusedError:
            assert time.monotonic() < deadline, "the lock of a killed move was never released"
            time.sleep(0.1)
    assert (tmp_path / LOCK_FILE).stat().st_mode & 0o077 == 0
