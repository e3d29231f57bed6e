"""`tenantctl local up|down|status`: the local stand-ins for AWS (moto) and, later, PostgreSQL.

Services are listed in ``LOCAL_SERVICES``; other modules add theirs with ``add_local_service`` (the
local PostgreSQL servers, one per cluster, plug in here). State lives in ./.tenantctl/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import typer

from tenantctl.cli.console import OutputFormat, out, print_json
from tenantctl.errors import InputError
from tenantctl.model import Model, load_model, resolve_clients_file

STATE_DIR = Path(".tenantctl")


class LocalService(Protocol):
    name: str

    def up(self, state_dir: Path, model: Model | None) -> dict[str, Any]:
        """Start or reuse; return a JSON-able description (must contain no secrets)."""
        ...

    def down(self, state_dir: Path) -> bool:
        """Stop; True if something was running."""
        ...

    def status(self, state_dir: Path) -> dict[str, Any] | None:
        """A description when running, else None."""
        ...


class MotoService:
    name = "aws (moto)"

    def up(self, state_dir: Path, model: Model | None) -> dict[str, Any]:
        from tenantctl.local.moto import ensure_moto

        server = ensure_moto(state_dir)
        return {"url": server.url, "pid": server.pid, "log": server.log_file}

    def down(self, state_dir: Path) -> bool:
        from tenantctl.local.moto import stop_moto

        return stop_moto(state_dir)

    def status(self, state_dir: Path) -> dict[str, Any] | None:
        from tenantctl.local.moto import moto_status

        server = moto_status(state_dir)
        return None if server is None else {"url": server.url, "pid": server.pid, "log": server.log_file}


LOCAL_SERVICES: list[LocalService] = [MotoService()]


def add_local_service(service: LocalService) -> None:
    """Register another local service (e.g. PostgreSQL servers) with `tenantctl local`."""
    LOCAL_SERVICES.append(service)


local_app = typer.Typer(
    help="Local stand-ins for the `local` target: a moto server for AWS (and local PostgreSQL servers).",
    no_args_is_help=True,
)
FORMAT_OPTION = typer.Option(OutputFormat.text, "--format", help="text, or json for pipelines.")


def _optional_model(clients_file: Path | None) -> Model | None:
    try:
        path = resolve_clients_file(clients_file)
    except InputError:  # no clients file: services that need none still start
        return None
    return load_model(path)


@local_app.command("up")
def up(
    clients_file: Path | None = typer.Argument(None, help="Clients file (default ./clients.tfvars if present).",
                                               show_default=False),
    output: OutputFormat = FORMAT_OPTION,
) -> None:
    """Start (or reuse) the local services on free loopback ports and record them in .tenantctl/.

    moto keeps AWS resources in memory: `local down` forgets them (the next apply recreates them).
    """
    model = _optional_model(clients_file)
    document = {service.name: service.up(STATE_DIR, model) for service in LOCAL_SERVICES}
    if output is OutputFormat.json:
        print_json(document)
        return
    for name, info in document.items():
        out.print(f"{name}: up {info.get('url', '')}".rstrip(), markup=False)


@local_app.command("down")
def down(output: OutputFormat = FORMAT_OPTION) -> None:
    """Stop the local services recorded in .tenantctl/."""
    document = {service.name: service.down(STATE_DIR) for service in reversed(LOCAL_SERVICES)}
    if output is OutputFormat.json:
        print_json({name: {"stopped": stopped} for name, stopped in document.items()})
        return
    for name, stopped in document.items():
        out.print(f"{name}: {'stopped' if stopped else 'was not running'}", markup=False)


@local_app.command("status")
def status(output: OutputFormat = FORMAT_OPTION) -> None:
    """Show which local services run, where. Exit 1 when one is down."""
    document = {service.name: service.status(STATE_DIR) for service in LOCAL_SERVICES}
    if output is OutputFormat.json:
        print_json({name: {"running": info is not None, **(info or {})} for name, info in document.items()})
    else:
        for name, info in document.items():
            out.print(f"{name}: " + (f"running {info.get('url', '')}".rstrip() if info else "down"), markup=False)
    if any(info is None for info in document.values()):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(local_app, name="local")
