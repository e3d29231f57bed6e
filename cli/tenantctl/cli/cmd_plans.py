"""`tenantctl plans list|show|diff|verify|prune`: the plan history, for reviewers and auditors."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from tenantctl.cli.console import OutputFormat, ReportFormat, out, print_json
from tenantctl.errors import ExitCode
from tenantctl.report.tables import print_table

plans_app = typer.Typer(
    name="plans",
    help=(
        "The plan history in .tenantctl/plans/: what each plan proposed, whether, when and by whom it was "
        "applied (user, host, CI run), with which clients-file hash and tool versions.\n\n"
        "Every apply appends records to an append-only, hash-chained log (.tenantctl/plans/applied.log); "
        "`plans verify` detects an edited, removed or reordered record and an edited reviewed plan. "
        "Set TENANTCTL_ACTOR to name the person a pipeline applies for."
    ),
    no_args_is_help=True,
)

PLANS_DIR_OPTION = typer.Option(Path(".tenantctl/plans"), "--plans-dir",
                                help="Where the plans are (default: the project's .tenantctl/plans).")
FORMAT_OPTION = typer.Option(OutputFormat.text, "--format", "-f", help="text for people, json for pipelines.")
FROM_S3_OPTION = typer.Option(False, "--from-s3", help="Read the history copied to the S3 state backend's bucket "
                              "(s3://<bucket>/<key_prefix>/plans/, from the clients file's settings.backend) "
                              "instead of the local directory.")
CLIENTS_OPTION = typer.Option(None, "--clients", help="Clients file naming the S3 backend (default: "
                              "./clients.tfvars).", show_default=False)


@contextmanager
def _history(plans_dir: Path, from_s3: bool, clients: Path | None) -> Iterator[Path]:
    """The plans directory to read: the local one, or a private copy of the bucket's."""
    if not from_s3:
        yield plans_dir
        return
    from tenantctl.history.s3 import download

    backend, s3 = _s3_backend(clients)
    copy = Path(tempfile.mkdtemp(prefix="tenantctl-plans-"))
    try:
        download(s3, backend, copy)
        yield copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _s3_backend(clients: Path | None) -> tuple[Any, Any]:
    from tenantctl.aws.session import client, target_for
    from tenantctl.errors import InputError
    from tenantctl.local.moto import ensure_moto
    from tenantctl.model import load_model, resolve_clients_file

    model = load_model(resolve_clients_file(clients))
    if model.settings.backend.kind != "s3":
        raise InputError(f"{model.source}: settings.backend is not s3: there is no bucket holding plan history",
                         hint='set backend = { kind = "s3", bucket = ..., dynamodb_table = ... } in settings')
    moto_url = ensure_moto(Path.cwd() / ".tenantctl").url if model.settings.target == "local" else None
    return model.settings.backend, client(target_for(model.settings, moto_url), "s3")


@plans_app.command("list")
def plans_list(plans_dir: Path = PLANS_DIR_OPTION, output: OutputFormat = FORMAT_OPTION,
               from_s3: bool = FROM_S3_OPTION, clients: Path | None = CLIENTS_OPTION) -> None:
    """Every plan, oldest first: status, what it proposed, and its apply (when, by whom)."""
    from tenantctl.history.actor import describe
    from tenantctl.history.plans import list_plans

    with _history(plans_dir, from_s3, clients) as directory:
        entries = list_plans(directory)
    if output is OutputFormat.json:
        print_json({"plans": [entry.to_json() for entry in entries]})
        return
    if not entries:
        out.print(f"no plans in {plans_dir}", markup=False)
        return
    rows = []
    for entry in entries:
        applied = ""
        if entry.applied:
            state = entry.applied.get("status") or "started, not finished"
            applied = f"{entry.applied.get('at')} {state}\nby {describe(entry.applied.get('actor') or {})}"
        rows.append((entry.plan_id, entry.created_at or "", entry.status + (" (pruned)" if entry.pruned else ""),
                     _proposed(entry.totals, entry.section_changes, entry.attention), applied))
    print_table(out, ("plan", "created", "status", "proposed", "applied"), rows, title=f"plans in {plans_dir}")


def _proposed(totals: dict[str, int], sections: dict[str, int], attention: int) -> str:
    parts = [f"{totals.get(a, 0)} {a}" for a in ("create", "update", "delete", "replace") if totals.get(a)]
    parts += [f"{count} {name}" for name, count in sections.items() if count]
    if attention:
        parts.append(f"{attention} need attention")
    return ", ".join(parts) or "nothing"


@plans_app.command("show")
def plans_show(
    plan: str = typer.Argument("latest", help="Plan id, a unique prefix of one, or `latest`."),
    plans_dir: Path = PLANS_DIR_OPTION,
    output: ReportFormat = typer.Option(ReportFormat.text, "--format", "-f",
                                        help="text, markdown (a PR comment) or json."),
    from_s3: bool = FROM_S3_OPTION,
    clients: Path | None = CLIENTS_OPTION,
) -> None:
    """One plan as it was reviewed, with its inputs and its apply records."""
    from tenantctl.history.actor import describe
    from tenantctl.history.plans import show_plan
    from tenantctl.report import markdown, terminal

    with _history(plans_dir, from_s3, clients) as directory:
        record = show_plan(directory, plan)
    if output is ReportFormat.json:
        print_json(record.to_json())
        return
    inputs = record.document.get("inputs") or {}
    lines = [f"plan {record.entry.plan_id}  created {record.entry.created_at}  status {record.entry.status}",
             f"clients file {inputs.get('clients_file')} sha256 {inputs.get('clients_sha256')}",
             f"tenantctl {inputs.get('tenantctl_version')}, terraform {inputs.get('terraform_version')}, "
             f"target {inputs.get('target')}, backend {inputs.get('backend')}"]
    for item in record.records:
        status = f" {item['status']}" if item.get("status") else ""
        lines.append(f"{item.get('event')}{status} at {item.get('at')} by {describe(item.get('actor') or {})} "
                     f"(log record {item.get('seq')})")
    if output is ReportFormat.markdown:
        out.print("\n".join(f"> {line}" for line in lines) + "\n", markup=False)
        out.print(markdown.render(record.document), markup=False, soft_wrap=True)
        return
    for line in lines:
        out.print(line, markup=False)
    terminal.render(record.document, out)


@plans_app.command("diff")
def plans_diff(
    old: str = typer.Argument(..., help="The older plan (id, prefix or `latest`)."),
    new: str = typer.Argument("latest", help="The newer plan (default: latest)."),
    plans_dir: Path = PLANS_DIR_OPTION,
    output: OutputFormat = FORMAT_OPTION,
    exit_code: bool = typer.Option(False, "--exit-code", help="Exit 4 when the plans differ (like git diff)."),
    from_s3: bool = FROM_S3_OPTION,
    clients: Path | None = CLIENTS_OPTION,
) -> None:
    """What one plan proposes that the other does not, per tenant, and which inputs changed.

    Compares what the plans propose (Terraform changes, Postgres actions, routing changes, orphans),
    not their text: two plans of the same change made at different times are identical.
    """
    from tenantctl.history.plans import diff_plans

    with _history(plans_dir, from_s3, clients) as directory:
        difference = diff_plans(directory, old, new)
    if output is OutputFormat.json:
        print_json(difference)
    else:
        _print_diff(difference)
    if exit_code and not difference["identical"]:
        raise typer.Exit(ExitCode.CHANGES)


def _print_diff(difference: dict[str, Any]) -> None:
    out.print(f"--- plan {difference['old']}\n+++ plan {difference['new']}", markup=False)
    if difference["identical"]:
        out.print("the plans propose the same changes from the same inputs", markup=False)
        return
    for name, change in difference["inputs"].items():
        out.print(f"input {name}: {change['old']} -> {change['new']}", markup=False)
    for tenant, rows in difference["tenants"].items():
        out.print(f"@@ {tenant}", markup=False)
        for sign, key, style in (("-", "removed", "red"), ("+", "added", "green")):
            for row in rows[key]:
                source = "" if row["source"] == "terraform" else f" [{row['source']}]"
                detail = f" ({row['detail']})" if row["detail"] else ""
                out.print(f"[{style}]{sign} {escape(row['action'])} {escape(row['address'])}"
                          f"{escape(source + detail)}[/]", highlight=False)


@plans_app.command("verify")
def plans_verify(plans_dir: Path = PLANS_DIR_OPTION, output: OutputFormat = FORMAT_OPTION,
                 from_s3: bool = FROM_S3_OPTION, clients: Path | None = CLIENTS_OPTION) -> None:
    """Check the applied log's hash chain and every applied plan against it.

    Exit 0 when intact; exit 5 when a record was edited, removed or reordered, or an applied plan's
    reviewed summary was changed. An apply that started and never finished is a warning.
    """
    from tenantctl.history.plans import verify

    with _history(plans_dir, from_s3, clients) as directory:
        report = verify(directory)
    if output is OutputFormat.json:
        print_json(report.to_json())
    else:
        for problem in report.problems:
            out.print(f"[bold red]TAMPERED[/] {escape(str(problem))}", highlight=False)
        for warning in report.warnings:
            out.print(f"[yellow]warning[/] {escape(warning)}", highlight=False)
        verdict = "intact" if report.ok else f"{len(report.problems)} problem(s)"
        out.print(f"applied log: {report.records} record(s), {report.plans} plan(s): {verdict}", markup=False)
    if not report.ok:
        raise typer.Exit(ExitCode.BREACH)


@plans_app.command("prune")
def plans_prune(
    keep: int = typer.Option(..., "--keep", help="How many of the newest plans to keep whole."),
    plans_dir: Path = PLANS_DIR_OPTION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; remove nothing."),
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Remove old plans: never-applied ones entirely, applied ones' Terraform plan files only.

    An applied plan keeps its manifest, summaries (what the reviewer read), Postgres plan and audit
    anchors forever, so `plans verify` and `plans show` keep working. The newest plan is never removed.
    """
    from tenantctl.history.plans import prune

    report = prune(plans_dir, keep, dry_run=dry_run)
    if output is OutputFormat.json:
        print_json({**report.to_json(), "dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    out.print(f"{verb} {len(report.removed)} plan(s), trimmed {len(report.trimmed)} applied plan(s) to their "
              f"summaries, kept {len(report.kept)}; {report.freed_bytes} bytes", markup=False)


@plans_app.command("publish")
def plans_publish(
    plan_ids: list[str] = typer.Argument(None, help="Plans to copy (default: every plan).", show_default=False),
    plans_dir: Path = PLANS_DIR_OPTION,
    clients: Path | None = CLIENTS_OPTION,
) -> None:
    """Copy plans' artifacts and the applied log to the S3 backend's bucket (plan and apply do it already).

    For a copy that failed (the bucket was unreachable) or plans made before the backend was S3.
    """
    from tenantctl.history.plans import plan_ids as all_plan_ids
    from tenantctl.history.plans import resolve_plan_id
    from tenantctl.history.s3 import location, publish

    backend, s3 = _s3_backend(clients)
    chosen = [resolve_plan_id(plans_dir, p) for p in plan_ids] if plan_ids else all_plan_ids(plans_dir)
    written = sum(publish(s3, backend, plans_dir, plan_id) for plan_id in chosen)
    out.print(f"copied {len(chosen)} plan(s) to {location(backend)} ({written} object(s))", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(plans_app, name="plans")
