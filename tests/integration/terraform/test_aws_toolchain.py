"""The aws target's stacks init against the registry (hashicorp/aws >= 4.61), never the offline mirror.

Here the registry is unreachable, so init fails, and must fail with the actionable error (which
provider, which version, what to set), not with the mirror's "no available releases match". On a
machine that reaches the registry it succeeds with a provider >= 4.61: both outcomes are accepted,
the mirror's failure never is.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tenantctl.errors import ExternalCommandError, TenantctlError
from tenantctl.model import load_model
from tenantctl.model.types import Model
from tenantctl.render import render_stacks
from tenantctl.terraform.runner import TerraformRunner
from tenantctl.terraform.toolchain import ensure_toolchain

pytestmark = pytest.mark.terraform

EXAMPLE = Path(__file__).resolve().parents[3] / "clients.tfvars.example"


def aws_model(tmp_path: Path) -> Model:
    text = re.sub(r'target\s*=\s*"local"', 'target = "aws"', EXAMPLE.read_text())
    assert 'target = "aws"' in text
    path = tmp_path / "clients.tfvars"
    path.write_text(text)
    return load_model(path)


def test_aws_target_init_goes_to_the_registry_and_fails_actionably(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)
    monkeypatch.delenv("TF_PLUGIN_CACHE_DIR", raising=False)
    render_stacks(aws_model(tmp_path), tmp_path / "stacks")
    work = tmp_path / "work"
    shutil.copytree(tmp_path / "stacks" / "cluster", work)
    (work / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')  # no S3 for this check
    runner = TerraformRunner(ensure_toolchain(target="aws"), work)
    try:
        runner.init()
    except ExternalCommandError as error:  # a raw failure: not the translated one
        raise AssertionError(f"untranslated init failure: {error.message}") from error
    except TenantctlError as error:
        assert "hashicorp/aws >= 4.61.0" in error.message, error.message
        assert error.hint is not None and "TF_CLI_CONFIG_FILE" in error.hint
        assert "no available releases match the given constraints" not in error.message, "the mirror answered"
        return
    lock = (work / ".terraform.lock.hcl").read_text()
    version = re.search(r'provider "registry.terraform.io/hashicorp/aws" \{\s*version\s*=\s*"(\d+)\.(\d+)', lock)
    assert version is not None and (int(version.group(1)), int(version.group(2))) >= (4, 61), lock
