"""`tenantctl onboard|offboard|restore|purge|status`: the tenant lifecycle, end to end."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

import typer

from tenantctl.cli.console import OutputFormat, err, out, print_json
from tenantctl.errors import InputError, RefusedError

CLIENTS_OPTION = typer.Option(None, "--clients", "-c", help="The clients file (default: ./clients.tfvars).",
                              show_default=False)
FORMAT_OPTION = typer.Option(OutputFormat.text, "--format", help="text, or json for pipelines.")


def _clients(path: Path | None) -> Path:
    from tenantctl.model import resolve_clients_file

    return Path(resolve_clients_file(path))


def _say(quiet: bool) -> Any:
    def say(message: str) -> None:
        if not quiet:
            err.print(f"• {message}", markup=False)
    return say


def _check_cidrs(cidrs: list[str]) -> tuple[str, ...]:
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError as error:
            raise InputError(f"--allowed-ip {cidr!r} is not a valid CIDR: {error}") from None
    return tuple(cidrs)


def onboard(
    name: str = typer.Argument(..., help="Tenant name: lowercase letters, digits and `_`."),
    databases: list[str] = typer.Option(..., "--db", help="A logical database to provision (repeatable)."),
    allowed_ips: list[str] = typer.Option(..., "--allowed-ip", help="A CIDR the tenant connects from (repeatable)."),
    iam_auth: bool = typer.Option(False, "--iam-auth", help="Log in with IAM auth tokens instead of a password."),
    tier: str | None = typer.Option(None, "--tier", help="basic | standard | premium (default: settings)."),
    cluster: str | None = typer.Option(None, "--cluster", help="Pin to this cluster (default: placed on a shared "
                                       "cluster now, and pinned in the block)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
    plan_only: bool = typer.Option(False, "--plan-only", help="Show the plan and leave the file unchanged."),
    timings: bool = typer.Option(False, "--timings", help="Print the time spent in each step."),
    clients: Path | None = CLIENTS_OPTION,
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Add a tenant: append its block to the clients file, plan, confirm, apply, update the routing map.

    Every other byte of the clients file stays as it was. When nothing was applied (bad input, refused
    or failed plan, declined, --plan-only) the file edit is rolled back; after a failed apply the block
    stays and rerunning the same command completes the work. A running proxy picks up the new routing
    map by itself.
    """
    from tenantctl.cli.cmd_terraform import ConsoleProgress
    from tenantctl.model.edit import TenantBlock
    from tenantctl.report import document as report_document
    from tenantctl.report import terminal
    from tenantctl.terraform.pipeline import PlanResult
    from tenantctl.workflow.onboard import Timings
    from tenantctl.workflow.onboard import onboard as run_onboard

    block = TenantBlock(name=name, databases=tuple(dict.fromkeys(databases)), allowed_ips=_check_cidrs(allowed_ips),
                        rds_iam_auth=iam_auth, tier=tier, cluster=cluster)
    quiet = output is OutputFormat.json

    def confirm(planned: PlanResult) -> bool:
        if not quiet:
            terminal.render(report_document.plan_document(planned), err)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise RefusedError("onboard needs confirmation and stdin is not a terminal", hint="pass --yes")
        return typer.confirm(f"Onboard {name}?", default=False, err=True)

    result = run_onboard(Path.cwd(), _clients(clients), block, confirm=confirm, plan_only=plan_only,
                         progress=ConsoleProgress(quiet=quiet), timings=Timings())
    if plan_only and result.plan is not None and not quiet:
        terminal.render(report_document.plan_document(result.plan), out)
    if output is OutputFormat.json:
        print_json(result.to_json())
    else:
        verbs = {"applied": "onboarded", "planned": "planned (file unchanged)", "declined": "not applied (file "
                 "unchanged)", "resumed": "resumed"}
        out.print(f"{name}: {verbs.get(result.status, result.status)} on cluster {result.cluster}", markup=False)
        if result.connection:
            c = result.connection
            out.print(f"  connect as user {c['user']} to database(s) {', '.join(c['databases'])} through "
                      f"{c['through']}", markup=False)
            out.print(f"  password: {c['password']}", markup=False)
        if timings:
            for step, seconds in result.timings.steps.items():
                out.print(f"  {step:<28} {seconds:7.2f}s", markup=False)
            out.print(f"  {'total':<28} {result.timings.total:7.2f}s", markup=False)
    if result.status == "declined":
        raise typer.Exit(1)


def offboard(
    name: str = typer.Argument(..., help="The tenant to offboard."),
    retain_days: int = typer.Option(30, "--retain-days", min=0, help="Keep the archived databases this long "
                                    "before `purge` may drop them."),
    archive: str | None = typer.Option(None, "--archive", help="Dump location: a directory or s3://BUCKET/PREFIX "
                                       "(default: settings.archive; else s3://BUCKET/KEY_PREFIX/archive with the "
                                       "s3 backend; else .tenantctl/archive on the local target).", show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    clients: Path | None = CLIENTS_OPTION,
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Remove a tenant safely: revoke access first, archive its data, then take it out of the file.

    Steps (each recorded in .tenantctl/offboarding.jsonl; rerun to resume after a crash): routing
    entry removed, login disabled and sessions ended, IAM role/user destroyed through its stack, each
    database dumped (pg_dump -Fc, sha256) and renamed to <db>__archived_<YYYYMMDD>, block removed from
    the clients file. `tenantctl restore NAME` brings it back; `tenantctl purge` drops old archives.
    """
    from tenantctl.workflow.offboard import offboard as run_offboard

    if not yes:
        if not sys.stdin.isatty():
            raise RefusedError("offboard needs confirmation and stdin is not a terminal", hint="pass --yes")
        if not typer.confirm(f"Offboard {name} (access revoked now, data archived)?", default=False, err=True):
            raise typer.Exit(1)
    result = run_offboard(Path.cwd(), _clients(clients), name, archive_location=archive, retain_days=retain_days,
                          progress=_say(output is OutputFormat.json))
    if output is OutputFormat.json:
        print_json(result.to_json())
        return
    out.print(f"{name}: offboarded{' (resumed)' if result.resumed else ''}", markup=False)
    for dump in result.dumps:
        out.print(f"  {dump['database']} -> {dump['location']} (sha256 {dump['sha256'][:12]}…, {dump['size']} "
                  f"bytes)", markup=False)
    for database, archived in sorted(result.archived_databases.items()):
        out.print(f"  {database} renamed to {archived}", markup=False)


def restore(
    name: str = typer.Argument(..., help="The offboarded tenant to bring back."),
    clients: Path | None = CLIENTS_OPTION,
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Bring an offboarded tenant back: databases (renamed back, or restored from the verified dumps
    after a purge), its block in the clients file, login, IAM and its routing entry."""
    from tenantctl.cli.cmd_terraform import ConsoleProgress
    from tenantctl.workflow.offboard import restore as run_restore

    quiet = output is OutputFormat.json
    result = run_restore(Path.cwd(), _clients(clients), name, progress=_say(quiet),
                         converge_progress=ConsoleProgress(quiet=quiet))
    if output is OutputFormat.json:
        print_json(result.to_json())
        return
    out.print(f"{name}: restored", markup=False)
    for database in result.renamed_back:
        out.print(f"  {database} renamed back", markup=False)
    for database in result.from_dumps:
        out.print(f"  {database} restored from its dump", markup=False)


def purge(
    older_than: float = typer.Option(..., "--older-than", min=0, help="Only tenants offboarded at least this "
                                     "many days ago (and past their --retain-days)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be dropped; drop nothing."),
    clients: Path | None = CLIENTS_OPTION,
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Drop archived databases past retention, each only after its dump's checksum was verified."""
    from tenantctl.workflow.offboard import purge as run_purge

    outcomes = run_purge(Path.cwd(), _clients(clients), older_than_days=older_than, dry_run=dry_run,
                         progress=_say(output is OutputFormat.json))
    if output is OutputFormat.json:
        print_json({"purged": [o.to_json() for o in outcomes]})
        return
    if not outcomes:
        out.print("no offboarded tenant to purge", markup=False)
    for outcome in outcomes:
        if outcome.skipped:
            out.print(f"{outcome.tenant}: kept ({outcome.skipped})", markup=False)
        else:
            out.print(f"{outcome.tenant}: dropped {', '.join(outcome.purged) or 'nothing left'}", markup=False)


def status(
    clients: Path | None = CLIENTS_OPTION,
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """One row per tenant: cluster, databases, auth, tier, last applied, drift, routed; offboarded too."""
    from tenantctl.model import load_model
    from tenantctl.report.tables import print_table
    from tenantctl.workflow.status import tenant_status

    report = tenant_status(Path.cwd(), load_model(_clients(clients)))
    if output is OutputFormat.json:
        print_json(report.to_json())
        return
    print_table(out, ("tenant", "state", "cluster", "databases", "auth", "tier", "last applied", "drift", "routed"),
                [(row.tenant, row.state, row.cluster, ", ".join(row.databases), row.auth, row.tier,
                  row.last_applied or "-", row.drift, "yes" if row.routed else "no") for row in report.tenants],
                title=f"routing map {report.routing_file}: serial {report.routing_serial}")


def move(
    name: str = typer.Argument(..., help="The tenant to move."),
    to: str | None = typer.Option(None, "--to", help="The cluster to move it to (a key of `clusters`).",
                                  show_default=False),
    rollback: bool = typer.Option(False, "--rollback", help="Move it back to where its last finished move took "
                                  "it from (with the same guarantees: a new copy, replicated from where it is now)."),
    proxy_socket: list[Path] = typer.Option([], "--proxy-socket", help="The --control-socket of each proxy "
                                            "serving the tenant (repeat for several proxies)."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds the cut-over may take (open "
                                  "transactions to end, replication to catch up); beyond it the tenant resumes "
                                  "on its cluster, nothing changed."),
    copy_timeout: float = typer.Option(3600.0, "--copy-timeout", help="Seconds the initial copy may take."),
    verify: str = typer.Option("full", "--verify", help="What the cut-over checks while the tenant is paused: "
                               "full (row counts and a hash of every row of every table; the pause grows with "
                               "the tenant's size, ~10 s per GB here) or counts (row counts only, faster)."),
    plan_only: bool = typer.Option(False, "--plan-only", help="Show what the move will do; change nothing."),
    dump: str | None = typer.Option(None, "--dump", help="Also dump each source database (pg_dump -Fc, sha256 in "
                                    "the ledger) to this directory or s3://BUCKET/PREFIX before it is archived.",
                                    show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    clients: Path | None = CLIENTS_OPTION,
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Move a live tenant to another cluster with logical replication and a short pause at the proxy.

    prepare (roles, databases, grants, schema on the target) -> copy (initial copy, then streaming) ->
    cut-over (the proxy queues the tenant's new connections; open transactions get --timeout to end;
    login disabled on the source and its sessions ended with 57P01; catch-up verified by row counts and
    row hashes of every table; sequences copied; routing map switched; proxy reloaded and resumed) ->
    finish (replication objects removed, source databases renamed to archive names and kept, the
    clients file pins the tenant to the target). Each step is in .tenantctl/moves.jsonl: rerunning the
    same command after a crash resumes or undoes a half-done cut-over. A timeout or failure before the
    switch leaves the tenant on its cluster and the map unchanged (exit 3). Then run `tenantctl plan`:
    its IAM policy names the new cluster.
    """
    from tenantctl.workflow.move import MoveOptions, rollback_target
    from tenantctl.workflow.move import move as run_move

    if (to is None) == (not rollback):
        raise InputError("give either --to CLUSTER or --rollback")
    to = to or rollback_target(Path.cwd(), name)

    if verify not in ("full", "counts"):
        raise InputError(f"--verify: expected full or counts, got {verify!r}")
    options = MoveOptions(timeout=timeout, copy_timeout=copy_timeout, proxy_sockets=tuple(proxy_socket),
                          plan_only=plan_only, verify=verify, dump_to=dump)
    if not plan_only and not yes:
        if not sys.stdin.isatty():
            raise RefusedError("move needs confirmation and stdin is not a terminal", hint="pass --yes")
        if not typer.confirm(f"Move {name} to {to} (a pause of up to {timeout:.0f}s at the cut-over)?",
                             default=False, err=True):
            raise typer.Exit(1)
    result = run_move(Path.cwd(), _clients(clients), name, to, options=options,
                      progress=_say(output is OutputFormat.json))
    if output is OutputFormat.json:
        print_json(result.to_json())
        return
    if result.plan_only:
        out.print(f"move {name}: {result.source} -> {result.target} (plan only, nothing changed)", markup=False)
        for line in result.steps:
            out.print(f"  {line}", markup=False)
        return
    pause = f", paused {result.pause_seconds:.3f}s" if result.pause_seconds is not None else ""
    out.print(f"{name}: moved {result.source} -> {result.target}{pause}"
              f"{' (resumed run)' if result.resumed_run else ''}", markup=False)
    for database, archived in sorted(result.archived.items()):
        out.print(f"  {database} on {result.source} kept as {archived}", markup=False)
    for saved in result.dumps:
        out.print(f"  {saved['database']} dumped to {saved['location']} (sha256 {saved['sha256'][:12]}…)",
                  markup=False)
    out.print("next: `tenantctl plan` (the tenant's IAM policy names its new cluster)", markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("onboard")(onboard)
    app.command("offboard")(offboard)
    app.command("move")(move)
    app.command("restore")(restore)
    app.command("purge")(purge)
    app.command("status")(status)
