"""The `tenantctl` command: thin Typer commands over the core.

This module is the one place where errors become messages and exit codes. Command modules each
expose ``register(app)``; they parse arguments, call the core and print its results.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from tenantctl import __version__
from tenantctl.cli.console import err
from tenantctl.errors import TenantctlError, ValidationFailed

app = typer.Typer(
    name="tenantctl",
    help=(
        "Run many SaaS tenants on shared and dedicated Aurora PostgreSQL clusters.\n\n"
        "One clients file (clients.tfvars) describes every tenant; tenantctl validates it, renders "
        "Terraform stacks, plans and applies them, reconciles Postgres roles and databases, and writes "
        "the routing map that the bundled proxy serves."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module registers its commands on the app; order is the order of `--help`.
COMMAND_MODULES = (
    "tenantctl.cli.cmd_model",  # validate, render
    "tenantctl.cli.cmd_terraform",  # toolchain, plan, apply
    "tenantctl.cli.cmd_plans",  # plans list/show/diff/verify/prune
    "tenantctl.cli.cmd_local",  # local up/down/status
    "tenantctl.cli.cmd_postgres",  # pg ..., verify, credentials
    "tenantctl.cli.cmd_routing",  # routes ..., proxy
    "tenantctl.cli.cmd_workflow",  # onboard, offboard, restore, purge, status
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tenantctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Run many SaaS tenants on shared and dedicated Aurora PostgreSQL clusters."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def report_error(error: TenantctlError) -> None:
    if isinstance(error, ValidationFailed):
        for diagnostic in error.diagnostics:
            err.print(str(diagnostic), markup=False)
    err.print(f"[bold red]error:[/] {error.message}", markup=True, highlight=False)
    if error.hint:
        err.print(f"hint: {error.hint}", markup=False)


def main() -> None:
    # Everything tenantctl and its subprocesses (terraform, pg_dump) create is private by default: states
    # hold passwords, dumps hold tenant data. Shared files (stacks, routing map) are made 0644 explicitly.
    os.umask(0o077)
    try:
        app(prog_name="tenantctl")
    except TenantctlError as error:
        report_error(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
