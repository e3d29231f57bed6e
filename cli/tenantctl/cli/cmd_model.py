"""`tenantctl validate` and `tenantctl render`: the clients file and the stacks it renders."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from tenantctl.cli.console import OutputFormat, err, out, print_json
from tenantctl.errors import ExitCode, ValidationFailed
from tenantctl.model import Model, load_model, resolve_clients_file

CLIENTS_ARGUMENT = typer.Argument(
    None, help="The clients file (HCL .tfvars or .tfvars.json). Default: ./clients.tfvars.", show_default=False
)


def model_summary(model: Model) -> dict[str, Any]:
    return {
        "file": model.source,
        "target": model.settings.target,
        "postgres_engine": model.settings.postgres_engine,
        "tenants": len(model.tenants),
        "databases": sum(len(t.databases) for t in model.tenants),
        "clusters": {c.name: {"tenants": len(model.tenants_on(c.name)), "dedicated": c.dedicated,
                              "max_tenants": c.max_tenants} for c in model.clusters},
    }


def validate(
    clients_file: Path | None = CLIENTS_ARGUMENT,
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text, or json for pipelines."),
) -> None:
    """Check the clients file: syntax, every rule, placement. Exit 0 when valid, 2 when not.

    Every problem is reported (not just the first) as `file:line:col: field.path: message`.
    Nothing is written.
    """
    path = resolve_clients_file(clients_file)
    try:
        model = load_model(path)
    except ValidationFailed as failure:
        if output is OutputFormat.json:
            print_json({"valid": False, "file": str(path),
                        "problems": [d.to_json() for d in failure.diagnostics]})
            raise typer.Exit(ExitCode.INVALID) from None
        raise
    summary = model_summary(model)
    if output is OutputFormat.json:
        print_json({"valid": True, **summary, "problems": []})
        return
    placed = ", ".join(f"{name}: {info['tenants']}" for name, info in summary["clusters"].items())
    out.print(f"{path}: valid — {summary['tenants']} tenants, {summary['databases']} databases "
              f"on {len(model.clusters)} clusters ({placed})", markup=False)


def _render_command(clients_file: Path | None, out_dir: Path, stale: list[Any]) -> str:
    """The command that brings ``out_dir`` in line, to be followed literally."""
    from tenantctl.render.drift import UNEXPECTED

    words = ["tenantctl", "render"]
    if clients_file is not None:
        words.append(shlex.quote(str(clients_file)))
    if out_dir != Path("stacks"):
        words += ["--out", shlex.quote(str(out_dir))]
    if any(item.reason == UNEXPECTED and item.path.startswith("tenants/") for item in stale):
        words.append("--prune")  # unexpected files are stacks of tenants no longer in the file
    return " ".join(words)


def render(
    clients_file: Path | None = CLIENTS_ARGUMENT,
    out_dir: Path = typer.Option(Path("stacks"), "--out", help="Directory to render the stacks into."),
    check: bool = typer.Option(
        False, "--check", help="Write nothing; exit 1 listing stale files if OUT differs from what the clients "
        "file renders (the GitOps drift check).",
    ),
    templates: Path | None = typer.Option(
        None, "--templates", help="Template directory overriding the packaged templates file by file "
        "(default: ./templates when it exists).",
    ),
    prune: bool = typer.Option(
        False, "--prune", help="Delete the rendered directories of tenants no longer in the clients file. Their "
        "infrastructure is NOT destroyed by this; use `tenantctl offboard` for that.",
    ),
    output: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text, or json for pipelines."),
) -> None:
    """Render the cluster stack and one Terraform root module per tenant.

    Writes stacks/cluster/ and stacks/tenants/<tenant>/ atomically, rewriting only files whose content
    changes. Rendering is deterministic: the same clients file always gives the same bytes.
    """
    from tenantctl.render import check_stacks, render_stacks

    model = load_model(resolve_clients_file(clients_file))
    template_dirs = _template_dirs(templates)
    if check:
        stale = check_stacks(model, out_dir, template_dirs=template_dirs)
        if output is OutputFormat.json:
            print_json({"up_to_date": not stale, "stale": [s.to_json() for s in stale]})
        elif stale:
            err.print(f"{out_dir} is stale: {len(stale)} file(s) differ from what {model.source} renders:",
                      markup=False)
            for item in stale:
                err.print(f"  {item}", markup=False)
            err.print(f"hint: run `{_render_command(clients_file, out_dir, stale)}` and commit the result",
                      markup=False)
        else:
            out.print(f"{out_dir} is up to date with {model.source}", markup=False)
        if stale:
            raise typer.Exit(ExitCode.FAILURE)
        return
    result = render_stacks(model, out_dir, template_dirs=template_dirs, prune=prune)
    if output is OutputFormat.json:
        print_json(result.to_json())
        return
    out.print(f"rendered {len(model.tenants)} tenant stacks and the cluster stack into {out_dir}: "
              f"{len(result.written)} file(s) written, {len(result.unchanged)} unchanged", markup=False)
    for path in result.written[:20]:
        out.print(f"  wrote {path}", markup=False)
    if len(result.written) > 20:
        out.print(f"  … and {len(result.written) - 20} more", markup=False)
    for path in result.removed:
        out.print(f"  removed {path}", markup=False)
    for name in result.orphaned_tenants:
        err.print(f"warning: {out_dir}/tenants/{name} belongs to no tenant in the clients file; it was left in "
                  "place (use `tenantctl offboard` to remove a tenant, or --prune to delete the directory)",
                  markup=False)


def _template_dirs(templates: Path | None) -> list[Path] | None:
    if templates is not None:
        return [templates]
    local = Path("templates")
    return [local] if local.is_dir() and any(local.glob("**/*.j2")) else None


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(render)
