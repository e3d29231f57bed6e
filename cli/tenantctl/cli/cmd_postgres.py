"""`tenantctl pg plan|apply`, `tenantctl verify` and `tenantctl credentials`: the native Postgres engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tenantctl.cli.console import OutputFormat, err, out, print_json
from tenantctl.errors import BackendError, ExitCode, InputError

pg_app = typer.Typer(
    name="pg",
    help=(
        "Reconcile Postgres roles, databases and grants with the native engine.\n\n"
        "`pg plan` reads the clusters' catalogs (a constant number of queries), computes ordered actions "
        "per tenant and saves them with a fingerprint of what it saw; `pg apply` applies exactly that plan "
        "or refuses if the clusters changed since. Databases and roles are never dropped: objects of "
        "tenants no longer in the clients file are reported as orphans."
    ),
    no_args_is_help=True,
)

CLIENTS_OPTION = typer.Option(Path("clients.tfvars"), "--clients", "-c",
                              help="The clients file (HCL .tfvars or .tfvars.json).")
STATE_OPTION = typer.Option(Path(".tenantctl"), "--state-dir",
                            help="tenantctl's state directory (local servers, moto, plans).")
FORMAT_OPTION = typer.Option(OutputFormat.text, "--format", "-f", help="text for people, json for pipelines.")
CLUSTER_OPTION = typer.Option(None, "--cluster", help="Only this cluster (repeatable). Default: all.")
DEFAULT_PLAN = Path("plans") / "postgres.json"


class _Context:
    """What every command here needs: the model, its desired state, cluster resolver, secret store."""

    def __init__(self, clients: Path, state_dir: Path, *, need_secrets: bool = True, as_routed: bool = False) -> None:
        from tenantctl.model import load_model
        from tenantctl.model.desired import desired_state

        self.model = load_model(clients)
        if as_routed:  # a tenant in the middle of a move is where the routing map sends it
            from tenantctl.workflow.move import as_routed as routed_model

            self.model = routed_model(state_dir.absolute().parent, self.model)
        self.desired = desired_state(self.model)
        self.state_dir = state_dir
        self.resolver = self._resolver()
        needs = need_secrets and any(t.login_role.password_auth for t in self.desired.tenants)
        self.secrets = self._secret_store() if needs else None

    def _resolver(self) -> Any:
        from tenantctl.workflow.clusters import cluster_resolver

        return cluster_resolver(self.model, self.state_dir, start_local_servers=False)

    def _secret_store(self) -> Any:
        from tenantctl.aws.secrets import SecretsManagerStore
        from tenantctl.aws.session import client, target_for
        from tenantctl.local.moto import moto_status

        if self.model.settings.target != "local":
            return SecretsManagerStore(client(target_for(self.model.settings), "secretsmanager"))
        moto = moto_status(self.state_dir)
        if moto is None:
            raise BackendError("the local moto server (Secrets Manager for generated passwords) is not running",
                               hint="run `tenantctl local up`")
        return SecretsManagerStore(client(target_for(self.model.settings, moto.url), "secretsmanager"))

    def clusters(self, only: list[str] | None) -> list[str]:
        names = [c.name for c in self.model.clusters]
        unknown = sorted(set(only or []) - set(names))
        if unknown:
            raise InputError(f"unknown cluster(s) {', '.join(unknown)}; the clients file has {', '.join(names)}")
        return [n for n in names if not only or n in only]


@pg_app.command("plan")
def plan(
    clients: Path = CLIENTS_OPTION,
    state_dir: Path = STATE_OPTION,
    cluster: list[str] | None = CLUSTER_OPTION,
    output: Path | None = typer.Option(None, "--out", "-o",
                                       help="Where to save the plan. Default: STATE_DIR/plans/postgres.json."),
    deep: bool = typer.Option(False, "--deep", help="Also read schema grants inside every database (one "
                              "connection each) instead of trusting tenantctl's state markers."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode",
                                           help=f"Exit {ExitCode.CHANGES} when actions are pending."),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show what the native engine would change on each cluster, grouped per tenant, and save the plan."""
    from tenantctl.postgres.engine import plan_cluster, plans_to_json, save_plans

    context = _Context(clients, state_dir)
    plans = []
    for name in context.clusters(cluster):
        with err.status(f"reading the catalogs of cluster {name}…"):
            plans.append(plan_cluster(context.desired, name, context.resolver.resolve(name),
                                      secrets=context.secrets, deep=deep))
    path = output or state_dir / DEFAULT_PLAN
    save_plans(plans, path)
    if output_format is OutputFormat.json:
        print_json({**plans_to_json(plans), "path": str(path)})
    else:
        for item in plans:
            _print_plan(item)
        out.print(f"plan saved to {path}; apply it with `tenantctl pg apply --plan {path}`", markup=False)
    if detailed_exitcode and any(p.has_changes for p in plans):
        raise typer.Exit(ExitCode.CHANGES)


def _print_plan(plan: Any) -> None:
    total = len(plan.actions)
    out.print(f"[bold]cluster {plan.cluster}[/]: {total} action{'s' if total != 1 else ''}, "
              f"{len(plan.orphans)} orphan{'s' if len(plan.orphans) != 1 else ''} "
              f"({plan.catalog_queries} catalog queries, fingerprint {plan.fingerprint[:12]})")
    for tenant, actions in plan.by_tenant().items():
        out.print(f"  [bold]{tenant or '(cluster)'}[/]", highlight=False)
        for action in actions:
            out.print(f"    + {action.description}", markup=False)
    for orphan in plan.orphans:
        out.print(f"  [yellow]orphan {orphan.kind} {orphan.name}[/]: {orphan.reason} (kept; see offboarding)")
    if not total:
        out.print("  no changes")


@pg_app.command("apply")
def apply(
    clients: Path = CLIENTS_OPTION,
    state_dir: Path = STATE_OPTION,
    plan_file: Path | None = typer.Option(None, "--plan", "-p",
                                          help="The reviewed plan. Default: STATE_DIR/plans/postgres.json."),
    workers: int = typer.Option(4, "--workers", min=1, max=32, help="Databases set up in parallel."),
    strategy: str = typer.Option("FILE_COPY", "--create-strategy",
                                 help="CREATE DATABASE STRATEGY (PostgreSQL 15+): FILE_COPY or WAL_LOG."),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Apply a saved plan exactly, or refuse (exit 3) if any cluster changed since it was made."""
    from rich.progress import Progress, TaskID

    from tenantctl.postgres.applier import ApplyOptions
    from tenantctl.postgres.engine import apply_cluster, load_plans
    from tenantctl.postgres.plan import Action

    context = _Context(clients, state_dir)
    plans = load_plans(plan_file or state_dir / DEFAULT_PLAN)
    options = ApplyOptions(workers=workers, create_database_strategy=strategy.upper())
    applied: dict[str, int] = {}
    with Progress(console=err, transient=True) as progress:
        for item in plans:
            task = progress.add_task(f"cluster {item.cluster}", total=len(item.actions))

            def advance(_action: Action, task: TaskID = task) -> None:
                progress.advance(task)

            apply_cluster(item, context.desired, context.resolver.resolve(item.cluster), secrets=context.secrets,
                          options=options, progress=advance)
            applied[item.cluster] = len(item.actions)
    if output_format is OutputFormat.json:
        print_json({"applied": applied})
        return
    for name, count in applied.items():
        out.print(f"cluster {name}: {count} action{'s' if count != 1 else ''} applied", markup=False)


def verify(
    clients: Path = CLIENTS_OPTION,
    state_dir: Path = STATE_OPTION,
    via: str | None = typer.Option(None, "--via", help="HOST:PORT of the proxy: connect through it with "
                                   "logical database names instead of to the clusters directly."),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Prove tenant isolation: connect as every tenant to its own and to every other tenant's databases.

    Own databases must accept, others must refuse; SET ROLE to other tenants' roles must fail. Prints an
    N×N matrix; exits 5 on any breach, 1 if a tenant cannot reach its own database. IAM-auth tenants get
    a temporary verification-only password for the duration of the check (removed afterwards). A tenant
    whose move already switched the routing map is checked on its new cluster.
    """
    from tenantctl.postgres.verify import verification_passwords
    from tenantctl.postgres.verify import verify as run_verify

    context = _Context(clients, state_dir, as_routed=True)
    endpoint = _parse_via(via) if via else None
    with err.status(f"verifying isolation of {len(context.desired.tenants)} tenants…"), \
            verification_passwords(context.desired, context.resolver, context.secrets) as password_for:
        report = run_verify(context.desired, context.resolver, password_for, via=endpoint)
    if output_format is OutputFormat.json:
        print_json(report.to_json())
    else:
        _print_matrix(report)
    if report.breaches:
        raise typer.Exit(ExitCode.BREACH)
    if report.failures:
        raise typer.Exit(ExitCode.FAILURE)


def _parse_via(via: str) -> Any:
    from tenantctl.postgres.verify import Endpoint

    host, _, port = via.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--via {via!r}: expected HOST:PORT")
    return Endpoint(host=host, port=int(port), through_proxy=True)


def _print_matrix(report: Any) -> None:
    from tenantctl.report.tables import print_table

    styles = {"ok": "green", "denied": "green", "BREACH": "bold red", "error": "yellow", "FAIL": "yellow"}
    print_table(out, ("as \\ target", *report.tenants),
                [(row, *(f"[{styles[c]}]{c}[/]" for c in cells.values())) for row, cells in report.matrix().items()],
                title="isolation: row connects as tenant, column is the target tenant"
                + (f" (via {report.via})" if report.via else ""), markup=True)
    for probe in report.breaches:
        out.print(f"[bold red]BREACH[/] {probe.as_tenant} → {probe.target_tenant}: {probe.check} "
                  f"{probe.target} was allowed", highlight=False)
    for probe in report.failures:
        out.print(f"[yellow]problem[/] {probe.as_tenant} → {probe.target_tenant}: {probe.check} {probe.target}: "
                  f"expected {probe.expected}, got {probe.outcome} ({probe.detail})", highlight=False)
    if not report.breaches and not report.failures:
        out.print(f"isolation holds: {len(report.probes)} probes, no breach", markup=False)


def credentials(
    tenant: str = typer.Argument(..., help="The tenant name."),
    clients: Path = CLIENTS_OPTION,
    state_dir: Path = STATE_OPTION,
    database: str | None = typer.Option(None, "--database", "-d", help="Logical database (default: first)."),
    via: str | None = typer.Option(None, "--via", help="HOST:PORT of the proxy to connect through."),
    reveal: bool = typer.Option(False, "--reveal", help="Print the password inside the connection string. "
                                "Without it the password is masked."),
    output_format: OutputFormat = FORMAT_OPTION,
) -> None:
    """Print how a password-auth tenant connects (user, host, database; the password only with --reveal)."""
    from psycopg.conninfo import make_conninfo

    from tenantctl.model import naming

    context = _Context(clients, state_dir, need_secrets=False)
    try:
        state = context.desired.tenant(tenant)
    except KeyError:
        raise InputError(f"{clients}: no tenant named {tenant!r}") from None
    if not state.databases:
        raise InputError(f"tenant {tenant!r} has no enabled database")
    spec = next((d for d in state.databases if d.logical == database), None) if database else state.databases[0]
    if spec is None:
        raise InputError(f"tenant {tenant!r} has no database {database!r}")
    tls: dict[str, Any] = {}  # directly to the cluster: its endpoint name, TLS and connect address
    if via:
        endpoint = _parse_via(via)
        host, port, dbname = endpoint.host, endpoint.port, spec.logical
    else:
        params = context.resolver.resolve(state.cluster).libpq_params()
        host, port, dbname = str(params.pop("host")), int(params.pop("port")), spec.name
        tls = params
    user = state.login_role.name
    secret = naming.secret_name(context.model.settings, tenant)
    document: dict[str, Any] = {"tenant": tenant, "user": user, "host": host, "port": port, "dbname": dbname,
                                "auth": "password" if state.login_role.password_auth else "iam",
                                "secret": secret if state.login_role.password_auth else None, **tls}
    if state.login_role.password_auth:
        password = "********"
        if reveal:
            context.secrets = context._secret_store()
            found = context.secrets.get_password(secret)
            if found is None:
                raise BackendError(f"no password stored in {secret}", hint="run `tenantctl pg apply` first")
            password = found
        document["dsn"] = make_conninfo(host=host, port=port, **tls, dbname=dbname, user=user, password=password)
    else:
        document["dsn"] = make_conninfo(host=host, port=port, **tls, dbname=dbname, user=user)
        document["note"] = "IAM authentication: use an RDS auth token as the password"
    if output_format is OutputFormat.json:
        print_json(document)
        return
    out.print(document["dsn"], markup=False)
    if state.login_role.password_auth and not reveal:
        err.print(f"password masked; stored in Secrets Manager as {secret} (use --reveal to print it)",
                  markup=False)


class LocalPostgresService:
    """`tenantctl local up|down|status` for the local PostgreSQL servers, one per cluster."""

    name = "postgres"

    def up(self, state_dir: Path, model: Any) -> dict[str, Any]:
        from tenantctl.local.pgserver import up_local_clusters

        if model is None:
            return {"clusters": {}, "url": "(no clients file: no clusters)"}
        servers = up_local_clusters(model, state_dir)
        return self._describe(state_dir, {name: server for name, server in servers.items()})

    def down(self, state_dir: Path) -> bool:
        from tenantctl.local.pgserver import down_local_clusters

        return bool(down_local_clusters(state_dir))

    def status(self, state_dir: Path) -> dict[str, Any] | None:
        from tenantctl.local.pgserver import local_clusters_status

        statuses = local_clusters_status(state_dir)
        if not statuses or not all(s.running and s.server for s in statuses.values()):
            return None
        return self._describe(state_dir, {name: s.server for name, s in statuses.items()})

    @staticmethod
    def _describe(state_dir: Path, servers: dict[str, Any]) -> dict[str, Any]:
        from tenantctl.local.pki import ca_bundle

        clusters = {name: {"host": s.host, "port": s.port, "admin_user": s.admin_user,
                           "data_dir": str(s.data_dir), "log": str(s.log_file)} for name, s in servers.items()}
        return {"clusters": clusters, "tls_ca_file": str(ca_bundle(state_dir)),
                "url": ", ".join(f"{name}=postgresql://{s.host}:{s.port}" for name, s in sorted(servers.items()))}


def register(app: typer.Typer) -> None:
    """Add `pg`, `verify` and `credentials` to ``app``; plug the local servers into `tenantctl local`."""
    from tenantctl.cli.cmd_local import add_local_service

    app.add_typer(pg_app)
    app.command("verify")(verify)
    app.command("credentials")(credentials)
    add_local_service(LocalPostgresService())
