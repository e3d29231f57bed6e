"""The aws target's stacks init against the registry (hashicorp/aws >= 4.61), never the offline mirror.

Here the registry is unreachable, so init fails, and must fail with the actionable error (which
provider, which version, what to set), not with the mirror's "no available releases match". On a
machine that reaches the registry it succeeds with a provider >= 4.61: both outcomes are accepted,
the mirror's failure never is. A user's own CLI config (their mirror, their plugin cache) is used as it
is: shown offline with a filesystem mirror of theirs. The local target still inits offline.
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
from tenantctl.terraform import toolchain as tc
from tenantctl.terraform.runner import ProviderUnavailableError, TerraformRunner
from tenantctl.terraform.toolchain import ensure_toolchain

pytestmark = pytest.mark.terraform

EXAMPLE = Path(__file__).resolve().parents[3] / "clients.tfvars.example"


def aws_model(tmp_path: Path, *, engine: str | None = None) -> Model:
    text = re.sub(r'target\s*=\s*"local"', 'target = "aws"', EXAMPLE.read_text())
    assert 'target = "aws"' in text
    if engine is not None:
        text = text.replace('target = "aws"', f'target = "aws"\n  postgres_engine = "{engine}"', 1)
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


def stack_copy(stacks: Path, stack: str, work: Path) -> Path:
    shutil.copytree(stacks / stack, work)
    (work / "backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')  # no S3 for this check
    return work


def test_each_provider_init_cannot_get_is_named_with_its_version(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The terraform engine's tenant stack needs cyrilgdn/postgresql too: both are named, not only aws."""
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)
    monkeypatch.delenv("TF_PLUGIN_CACHE_DIR", raising=False)
    model = aws_model(tmp_path, engine="terraform")
    assert model.settings.postgres_engine == "terraform"
    render_stacks(model, tmp_path / "stacks")
    work = stack_copy(tmp_path / "stacks", f"tenants/{model.tenants[0].name}", tmp_path / "work")
    try:
        TerraformRunner(ensure_toolchain(target="aws"), work).init()
    except ProviderUnavailableError as error:
        assert error.providers and set(error.providers) <= {"hashicorp/aws", "cyrilgdn/postgresql"}, error.message
        for provider, constraint in error.providers.items():
            assert f"{provider} {constraint}:" in error.message
        assert error.providers.get("hashicorp/aws", ">= 4.61.0") == ">= 4.61.0"
        assert error.providers.get("cyrilgdn/postgresql", "1.26.0") == "1.26.0"
        assert "no available releases match" not in error.message, "the offline mirror answered"
        return
    assert (work / ".terraform.lock.hcl").is_file()  # a machine that reaches the registry


def fake_release(mirror: Path, provider: str, version: str) -> None:
    """An unpacked filesystem-mirror entry. init installs it without running it (validate would)."""
    namespace, name = provider.split("/")
    binary = (mirror / "registry.terraform.io" / namespace / name / version / tc.PLATFORM
              / f"terraform-provider-{name}_v{version}_x5")
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 1\n")
    binary.chmod(0o755)


def test_the_users_own_cli_config_mirror_and_plugin_cache_are_used_as_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_binary = ensure_toolchain(target="aws").terraform
    ours = tc.CacheLayout(tmp_path / "tenantctl-cache")  # a tenantctl cache that must stay untouched
    for path in (ours.terraform, *(ours.provider_binary(host) for host in tc.REGISTRY_HOSTS)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    ours.cli_config.write_text(tc.cli_config_text(ours.mirror, ours.plugin_cache))
    ours.cli_config_aws.write_text(tc.aws_cli_config_text(ours.plugin_cache))
    ours.plugin_cache.mkdir()
    mirror, their_cache = tmp_path / "their-mirror", tmp_path / "their-plugin-cache"
    fake_release(mirror, "hashicorp/aws", "4.61.0")
    their_cache.mkdir()
    theirs = tmp_path / "their.tfrc"
    theirs.write_text(f'plugin_cache_dir = "{their_cache}"\n'
                      f'provider_installation {{\n  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n}}\n')
    monkeypatch.setenv(tc.CACHE_ENV, str(ours.root))
    monkeypatch.setenv(tc.BINARY_ENV, str(real_binary))
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(theirs))
    monkeypatch.delenv("TF_PLUGIN_CACHE_DIR", raising=False)
    render_stacks(aws_model(tmp_path), tmp_path / "stacks")
    work = stack_copy(tmp_path / "stacks", "cluster", tmp_path / "work")

    TerraformRunner(ensure_toolchain(target="aws"), work).init()  # offline: their mirror has what it needs

    lock = (work / ".terraform.lock.hcl").read_text()
    assert re.search(r'provider "registry.terraform.io/hashicorp/aws" \{\s*version\s*=\s*"4\.61\.0"', lock), lock
    assert (their_cache / "registry.terraform.io" / "hashicorp" / "aws" / "4.61.0").is_dir(), "their cache"
    assert not any(ours.plugin_cache.iterdir()), "tenantctl's plugin cache overrode theirs"


def test_the_local_target_still_inits_offline_from_the_mirror(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "whatever.tfrc"))  # the local target ignores it
    render_stacks(load_model(EXAMPLE), tmp_path / "stacks")
    work = stack_copy(tmp_path / "stacks", "cluster", tmp_path / "work")
    TerraformRunner(ensure_toolchain(target="local"), work).init()
    lock = (work / ".terraform.lock.hcl").read_text()
    assert re.search(rf'hashicorp/aws" \{{\s*version\s*=\s*"{tc.AWS_PROVIDER_VERSION}"', lock), lock
