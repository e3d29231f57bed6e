"""Real Terraform (the cached 1.0.3), the real AWS provider 3.39.0 and a real moto server per project.

Each ``Project`` is a directory with a clients file, its own ``.tenantctl/`` and its own moto
server (so projects cannot see each other's AWS resources); servers are stopped at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tenantctl.local.moto import stop_moto
from tenantctl.local.pgserver import down_local_clusters
from tenantctl.model import load_model
from tenantctl.terraform import pipeline
from tenantctl.terraform.environment import terraform_environment
from tenantctl.terraform.toolchain import BINARY_ENV, CacheLayout, cache_root, install_toolchain
from tenantctl.terraform.workspace import Workspace
from tenantctl.workflow import deploy


@pytest.fixture(scope="session")
def pinned_terraform() -> Iterator[Path]:
    """Run every test with the pinned Terraform 1.0.3, whatever is on PATH."""
    layout = install_toolchain()
    previous = os.environ.get(BINARY_ENV)
    os.environ[BINARY_ENV] = str(layout.terraform)
    yield layout.terraform
    if previous is None:
        os.environ.pop(BINARY_ENV, None)
    else:
        os.environ[BINARY_ENV] = previous


def cached_layout() -> CacheLayout:
    return CacheLayout(cache_root())


@dataclass
class Project:
    root: Path

    @property
    def clients(self) -> Path:
        return self.root / "clients.tfvars"

    @property
    def workspace(self) -> Workspace:
        return Workspace.at(self.root)

    def write_clients(self, text: str) -> None:
        self.clients.write_text(text)

    def environment(self) -> pipeline.TerraformEnvironment:
        return terraform_environment(load_model(self.clients), self.workspace)

    def plan(self, **kwargs: Any) -> pipeline.PlanResult:
        """The same plan as `tenantctl plan`: Terraform stacks plus the native Postgres section."""
        return deploy.plan_all(self.root, load_model(self.clients), parallelism=2,
                               lock_timeout=kwargs.pop("lock_timeout", "5s"), **kwargs)

    def apply(self, **kwargs: Any) -> pipeline.ApplyResult:
        """The same apply as `tenantctl apply`; returns the Terraform part of the result."""
        result = deploy.apply_all(self.root, load_model(self.clients), parallelism=2, lock_timeout="5s", **kwargs)
        assert result.terraform is not None
        return result.terraform

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tenantctl.cli.main", *args], cwd=self.root, capture_output=True,
            text=True, timeout=timeout, env=os.environ.copy(), check=False,
        )

    def cli_popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "tenantctl.cli.main", *args], cwd=self.root, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
        )

    def stop(self) -> None:
        down_local_clusters(self.workspace.state_dir)
        stop_moto(self.workspace.state_dir)


@pytest.fixture(scope="module")
def make_project(pinned_terraform: Path) -> Iterator[Any]:
    created: list[Project] = []
    base = Path(tempfile.mkdtemp(prefix="tenantctl-tf-"))
    base.chmod(0o755)  # the local PostgreSQL servers run as the postgres user under each project

    def factory(name: str, clients: str) -> Project:
        root = base / name
        root.mkdir(parents=True)
        project = Project(root)
        project.write_clients(clients)
        created.append(project)
        return project

    yield factory
    for project in created:
        project.stop()
    shutil.rmtree(base, ignore_errors=True)


def statuses(result: pipeline.PlanResult | pipeline.ApplyResult) -> dict[str, str]:
    return {stack.stack: stack.status for stack in result.stacks}
