"""A newcomer's first command, exactly as README.md gives it, on a fresh clone of this repository.

The command is read from README.md (the first line of the first fenced block under "## Two commands"),
not written here, so the test follows the README when it changes. It runs in a `git clone` of the
committed tree: nothing the developer's checkout has (a .venv, build products, state) can help it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.terraform, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]


def first_command(readme: str) -> str:
    section = readme.split("## Two commands", 1)[1]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block is not None, "README.md: no command block under '## Two commands'"
    line = block.group(1).strip().splitlines()[0]
    return line.split("#", 1)[0].strip()


def test_the_first_readme_command_works_on_a_fresh_clone() -> None:
    command = first_command((REPO / "README.md").read_text())
    assert command == "make demo", command  # what README.md promises today; update both together
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    root = Path(tempfile.mkdtemp(prefix="tenantctl-readme-", dir="/tmp"))
    os.chmod(root, 0o755)  # the local PostgreSQL servers run as the postgres user under the clone
    clone = root / "tenantctl"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
    with socket.socket() as probe:  # a free port for the demo's proxy: a developer's demo may hold 6432
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST", "TENANTCTL_"))}
    env["PROXY_PORT"] = str(port)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "/.venv/" not in p)
    demo = clone / ".tenantctl-demo"
    try:
        done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=1500, check=False)
        assert done.returncode == 0, (f"`{command}` failed on a fresh clone:\n{done.stdout[-4000:]}\n"
                                      f"{done.stderr[-4000:]}")
        assert "client01 (password tenant) connects through the proxy" in done.stdout
        assert "refused as expected" in done.stdout
        assert "Demo done." in done.stdout
    finally:
        pid_file = demo / "proxy.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        tenantctl = clone / ".venv" / "bin" / "tenantctl"
        if tenantctl.exists() and demo.exists():
            subprocess.run([str(tenantctl), "local", "down"], cwd=demo, capture_output=True, timeout=300, check=False)
        shutil.rmtree(root, ignore_errors=True)
