"""A thin subprocess adapter over the ``terraform`` binary (our own; python-terraform is abandoned).

Every call runs with ``-input=false``, ``TF_IN_AUTOMATION=1`` and the toolchain's CLI config and
plugin cache. ``plan`` and ``apply`` stream Terraform's machine-readable UI (``-json``) so callers get
one event per resource as it changes. Failures become ``ExternalCommandError`` (command, exit code,
tail of the error output); a held state lock becomes ``StateLockedError`` naming the holder; a stale
saved plan becomes ``StalePlanError``.

Ctrl-C: Terraform runs in its own process group and tenantctl forwards exactly one SIGINT to it, so
Terraform stops gracefully, writes its state and releases its lock; then ``OperationInterrupted``
is raised. (A terminal's Ctrl-C reaching both processes would count as two interrupts, which makes
Terraform abort hard and can leave a lock behind.)

tenantctl killed (SIGKILL, OOM): Terraform's output goes to unlinked temporary files that tenantctl
follows, not to pipes. Through a pipe, the first line Terraform writes after tenantctl died raises
SIGPIPE, and Terraform reports a resource's completion *before* it records it in the state: the
resource exists but is forgotten, and the rerun fails creating it again ("EntityAlreadyExists").
With files, the orphaned Terraform finishes the operation it was given, writes its state and
releases its lock; the rerun waits for that lock (``-lock-timeout``) and plans from the full state.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from tenantctl.errors import ExternalCommandError, RefusedError, TenantctlError
from tenantctl.terraform.toolchain import Toolchain

EXIT_INTERRUPTED = 130


class OperationInterrupted(TenantctlError):
    """The user interrupted a Terraform run; Terraform was stopped gracefully."""

    exit_code = EXIT_INTERRUPTED


class StateLockedError(RefusedError):
    """Another run holds the state lock."""

    def __init__(self, message: str, holder: Mapping[str, str], workdir: str | None = None) -> None:
        where = f" in {workdir}" if workdir else ""
        super().__init__(message, hint=f"wait for that run to finish (tenantctl waits -lock-timeout for it); if "
                                       f"Terraform itself was killed, run `terraform force-unlock "
                                       f"{holder.get('id', 'ID')}`{where}")
        self.holder = dict(holder)


class StalePlanError(RefusedError):
    """The state changed since the saved plan was made."""


class DestroyPreventedError(RefusedError):
    """Terraform refused to plan: a resource with ``prevent_destroy`` would be destroyed."""

    def __init__(self, message: str, addresses: Sequence[str]) -> None:
        super().__init__(message)
        self.addresses = tuple(addresses)


@dataclass(frozen=True)
class TerraformEvent:
    """One line of Terraform's machine-readable UI, reduced to what progress displays need."""

    kind: str  # apply_start, apply_progress, apply_complete, apply_errored, planned_change, ...
    address: str = ""
    action: str = ""
    elapsed_seconds: float | None = None
    message: str = ""


@dataclass(frozen=True)
class PlanRun:
    has_changes: bool  # -detailed-exitcode: 2
    plan_file: Path


@dataclass
class _Interrupts:
    """Live children and whether the user interrupted; shared by every runner in this process."""

    children: set[subprocess.Popen[Any]] = field(default_factory=set)
    interrupted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def forward(self, signum: int) -> None:
        with self.lock:
            self.interrupted = True
            children = list(self.children)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)


_INTERRUPTS = _Interrupts()


@contextlib.contextmanager
def forwarding_interrupts() -> Iterator[None]:
    """While active, SIGINT/SIGTERM are forwarded once to every running terraform child.

    Install it in the main thread around any work that runs terraform (also from worker threads).
    Outside the main thread, or when already installed, it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous_int = signal.getsignal(signal.SIGINT)
    if getattr(previous_int, "__tenantctl_forwarder__", False):
        yield
        return
    previous_term = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        _INTERRUPTS.forward(signum)

    handler.__tenantctl_forwarder__ = True  # type: ignore[attr-defined]
    with _INTERRUPTS.lock:
        _INTERRUPTS.interrupted = False
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def interrupted() -> bool:
    return _INTERRUPTS.interrupted


class TerraformRunner:
    """Runs terraform in one working directory (a root module)."""

    def __init__(
        self,
        toolchain: Toolchain,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        on_event: Callable[[TerraformEvent], None] | None = None,
        lock_timeout: str = "30s",
        parallelism: int = 10,
    ) -> None:
        self.toolchain = toolchain
        self.workdir = Path(workdir)
        self.extra_env = dict(env or {})
        self.on_event = on_event
        self.lock_timeout = lock_timeout
        self.parallelism = parallelism

    # -- commands -------------------------------------------------------------------------------

    def init(self, backend_config: Mapping[str, str] | None = None) -> None:
        args = ["init", "-input=false", "-no-color", "-reconfigure"]
        args += [f"-backend-config={key}={value}" for key, value in sorted((backend_config or {}).items())]
        progress: list[str] = []  # "- Finding hashicorp/aws versions matching ">= 4.61.0"..."
        try:
            self._run(args, sink=progress.append)
        except ExternalCommandError as error:
            unavailable = _provider_unavailable(error.stderr or "", "".join(progress), self.toolchain.target)
            if unavailable is not None:
                raise unavailable from error
            raise

    def plan(
        self, out: Path, *, var_files: Sequence[Path] = (), destroy: bool = False, refresh: bool = True,
    ) -> PlanRun:
        """``plan -out`` with ``-detailed-exitcode``: exit 0 no changes, 2 changes, else an error."""
        args = ["plan", "-input=false", "-no-color", "-json", "-detailed-exitcode",
                f"-lock-timeout={self.lock_timeout}", f"-parallelism={self.parallelism}", f"-out={out}"]
        args += [f"-var-file={path}" for path in var_files]
        if destroy:
            args.append("-destroy")
        if not refresh:
            args.append("-refresh=false")
        code = self._run(args, json_stream=True, ok_codes=(0, 2))
        return PlanRun(has_changes=code == 2, plan_file=Path(out))

    def show_json(self, plan_file: Path) -> dict[str, Any]:
        return self._run_json(["show", "-json", "-no-color", str(plan_file)])

    def apply(self, plan_file: Path) -> None:
        """Apply exactly ``plan_file``; Terraform refuses it if the state changed since."""
        self._run(["apply", "-input=false", "-no-color", "-json", f"-lock-timeout={self.lock_timeout}",
                   f"-parallelism={self.parallelism}", str(plan_file)], json_stream=True)

    def output_json(self) -> dict[str, Any]:
        return self._run_json(["output", "-json", "-no-color"])

    def state_list(self) -> list[str]:
        return self._capture(["state", "list", "-no-color"]).split()

    def version(self) -> str:
        document = self._run_json(["version", "-json"])
        return str(document.get("terraform_version", "unknown"))

    def fmt_check(self) -> bool:
        argv = [str(self.toolchain.terraform), "fmt", "-check", "-recursive", "-no-color"]
        done = subprocess.run(argv, cwd=self.workdir, env=self._env(), capture_output=True, text=True,
                              check=False)
        return done.returncode == 0

    # -- plumbing -------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.toolchain.env(), **self.extra_env}


    def _argv(self, args: Sequence[str]) -> list[str]:
        return [str(self.toolchain.terraform), *args]

    def _run_json(self, args: Sequence[str]) -> dict[str, Any]:
        text = self._capture(args)
        try:
            document = json.loads(text)
        except ValueError as error:
            raise ExternalCommandError(self._argv(args), 0, f"output is not JSON: {error}",
                                       cwd=str(self.workdir)) from error
        if not isinstance(document, dict):
            raise ExternalCommandError(self._argv(args), 0, "output is not a JSON object", cwd=str(self.workdir))
        return document

    def _capture(self, args: Sequence[str]) -> str:
        stdout: list[str] = []
        self._run(args, sink=stdout.append)
        return "".join(stdout)

    def _run(
        self,
        args: Sequence[str],
        *,
        json_stream: bool = False,
        ok_codes: Sequence[int] = (0,),
        sink: Callable[[str], None] | None = None,
    ) -> int:
        argv = self._argv(args)
        if _INTERRUPTS.interrupted:
            raise OperationInterrupted(f"interrupted: did not start {' '.join(args[:1])} in {self.workdir}")
        errors: list[str] = []
        with _OutputFile() as stdout, _OutputFile() as stderr_output:
            try:
                process = subprocess.Popen(
                    argv, cwd=self.workdir, env=self._env(), stdin=subprocess.DEVNULL,
                    stdout=stdout.writer, stderr=stderr_output.writer, start_new_session=True,
                )
            except OSError as error:
                raise ExternalCommandError(argv, -1, str(error), cwd=str(self.workdir)) from error
            stdout.close_writer()
            stderr_output.close_writer()
            with _INTERRUPTS.lock:
                _INTERRUPTS.children.add(process)
                if _INTERRUPTS.interrupted:  # raced with a Ctrl-C: forward it now
                    process.send_signal(signal.SIGINT)
            try:
                for line in stdout.follow(process):
                    if json_stream:
                        self._handle_ui_line(line, errors)
                    elif sink is not None:
                        sink(line)
                returncode = process.wait()
            except BaseException:
                # A KeyboardInterrupt without the forwarder installed: stop terraform gracefully.
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=300)
                raise
            finally:
                with _INTERRUPTS.lock:
                    _INTERRUPTS.children.discard(process)
            stderr = stderr_output.read_rest()
        if _INTERRUPTS.interrupted:
            raise OperationInterrupted(
                f"interrupted: terraform stopped gracefully (exit code {returncode}) in {self.workdir}"
            )
        if returncode in ok_codes:
            return returncode
        detail = "\n".join([*errors, stderr.strip()]).strip()
        _raise_known_failures(detail, argv, str(self.workdir))
        raise ExternalCommandError(argv, returncode, detail, cwd=str(self.workdir))

    def _handle_ui_line(self, line: str, errors: list[str]) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = str(message.get("type", ""))
        if kind == "diagnostic":
            diagnostic = message.get("diagnostic") or {}
            if diagnostic.get("severity") == "error":
                errors.append(f"Error: {diagnostic.get('summary', '')}\n{diagnostic.get('detail', '')}".strip())
        if self.on_event is None:
            return
        hook = message.get("hook") or message.get("change") or {}
        resource = hook.get("resource") or {}
        elapsed = hook.get("elapsed_seconds")
        self.on_event(TerraformEvent(
            kind=kind,
            address=str(resource.get("addr", "")),
            action=str(hook.get("action", "")),
            elapsed_seconds=float(elapsed) if isinstance(elapsed, int | float) else None,
            message=str(message.get("@message", "")),
        ))


class _OutputFile:
    """An unlinked temporary file a child writes to and tenantctl follows (see the module docstring).

    The child gets ``writer``; tenantctl reads through its own descriptor (its own offset). The name is
    removed at once, so nothing is left behind whoever dies first.
    """

    POLL_MIN, POLL_MAX = 0.005, 0.1  # seconds between reads while the child is quiet

    def __init__(self) -> None:
        self.writer, path = tempfile.mkstemp(prefix="tenantctl-terraform-", suffix=".out")
        try:
            self.reader = os.open(path, os.O_RDONLY)
        finally:
            os.unlink(path)
        self._pending = b""

    def __enter__(self) -> _OutputFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close_writer()
        os.close(self.reader)

    def close_writer(self) -> None:
        if self.writer >= 0:
            os.close(self.writer)
            self.writer = -1

    def follow(self, process: subprocess.Popen[Any]) -> Iterator[str]:
        """Complete lines as the child writes them, until it exited and everything was read."""
        delay = self.POLL_MIN
        while True:
            exited = process.poll() is not None  # before reading: an empty read after exit is the end
            chunk = os.read(self.reader, 1 << 16)
            if chunk:
                delay = self.POLL_MIN
                *lines, self._pending = (self._pending + chunk).split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace") + "\n"
            elif exited:
                break
            else:
                time.sleep(delay)
                delay = min(delay * 2, self.POLL_MAX)
        if self._pending:
            line, self._pending = self._pending, b""
            yield line.decode("utf-8", "replace")

    def read_rest(self) -> str:
        chunks = [self._pending]
        while chunk := os.read(self.reader, 1 << 16):
            chunks.append(chunk)
        self._pending = b""
        return b"".join(chunks).decode("utf-8", "replace")


_LOCK_FIELD = re.compile(r"^\s*(ID|Path|Operation|Who|Version|Created|Info):\s*(.*)$", re.MULTILINE)


_PREVENTED = re.compile(r"Resource (\S+) has lifecycle\.prevent_destroy set")


def _raise_known_failures(detail: str, argv: list[str], workdir: str | None = None) -> None:
    prevented = _PREVENTED.findall(detail)
    if prevented:
        raise DestroyPreventedError(
            "refused: the plan would destroy " + ", ".join(sorted(set(prevented)))
            + " (lifecycle.prevent_destroy)",
            sorted(set(prevented)),
        )
    if "Error acquiring the state lock" in detail or "ConditionalCheckFailedException" in detail:
        holder = {key.lower(): value.strip() for key, value in _LOCK_FIELD.findall(detail)}
        who = holder.get("who", "unknown")
        operation = holder.get("operation", "unknown operation")
        created = holder.get("created", "unknown time")
        raise StateLockedError(
            f"the Terraform state is locked by {who} ({operation}, since {created}, lock ID "
            f"{holder.get('id', '?')}, state {holder.get('path', '?')})",
            holder,
            workdir,
        )
    if "Saved plan is stale" in detail or "plan file can no longer be applied" in detail:
        raise StalePlanError(
            "the saved plan is stale: the state changed since it was made; run `tenantctl plan` again"
        )


class ProviderUnavailableError(TenantctlError):
    """``terraform init`` could not obtain a provider the stack requires."""

    def __init__(self, message: str, providers: Mapping[str, str], *, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.providers = dict(providers)  # provider -> the version constraint the stack requires


_FINDING = re.compile(r'Finding (?:latest version of )?(\S+?) versions? matching "([^"]*)"')
# Terraform wraps its error text: these run over the whitespace-normalised stderr.
_QUERY_FAILED = re.compile(r"available versions for provider (\S+?): (.+?)(?= To see which| Error:|$)")
_INSTALL_FAILED = re.compile(r"Error while installing (\S+?) v\S+: (.+?)(?= Error:|$)")


def _provider_unavailable(stderr: str, stdout: str, target: str) -> ProviderUnavailableError | None:
    """Which providers init could not obtain, with the stack's constraint, the cause and what to set."""
    text = " ".join(stderr.split())
    causes: dict[str, str] = {}
    for pattern in (_QUERY_FAILED, _INSTALL_FAILED):
        for provider, cause in pattern.findall(text):
            causes.setdefault(provider, _short_cause(cause))
    if not causes:
        return None
    constraints = dict(_FINDING.findall(" ".join(stdout.split())))
    required = {provider: constraints.get(provider, "(any version)") for provider in causes}
    listed = "; ".join(f"{provider} {required[provider]}: {cause}" for provider, cause in sorted(causes.items()))
    if target == "aws":
        hint = ("allow HTTPS to registry.terraform.io and to where providers download from (releases.hashicorp.com; "
                "github.com for cyrilgdn/postgresql); or set TF_CLI_CONFIG_FILE to a CLI config whose "
                "provider_installation uses your own network_mirror, or a filesystem_mirror filled with "
                "`terraform providers mirror DIR` on a connected machine (a plugin cache directory filled there "
                "serves as that path; a plugin cache alone does not, init still asks the registry). "
                "`tenantctl toolchain show` says which source each target uses")
    else:
        hint = ("the local target installs hashicorp/* from its offline mirror only (`tenantctl toolchain install` "
                "fills it) and other providers (cyrilgdn/postgresql, for postgres_engine = \"terraform\") from the "
                "registry: allow HTTPS to registry.terraform.io, or use the default postgres_engine = \"native\", "
                "which needs no provider")
    return ProviderUnavailableError(
        f"terraform init could not obtain the provider{'s' if len(causes) > 1 else ''} this {target}-target stack "
        f"requires: {listed}", required, hint=hint)


def _short_cause(cause: str) -> str:
    unreachable = re.match(r"could not connect to (\S+?):", cause)
    if unreachable:
        return f"{unreachable.group(1)} is unreachable"
    return cause.rstrip(". ")
