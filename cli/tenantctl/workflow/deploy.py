"""The whole deployment: Terraform stacks + native Postgres engine + routing map, as one plan/apply.

``plan_all`` runs the Terraform pipeline with the native Postgres engine as a section: its per-tenant
actions are shown beside the Terraform changes and saved as ``postgres.json`` in the same plan
directory. ``apply_all`` applies exactly that plan (Terraform first, then each cluster's Postgres
plan, which refuses itself if the catalogs changed since), then writes the routing map the proxy
serves. ``converge`` repeats plan/apply while tenant stacks wait for a new cluster.

On the ``local`` target the embedded services (moto, one PostgreSQL server per cluster) are started
or reused on demand: the local target is meant to just work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenantctl.errors import TenantctlError
from tenantctl.failpoint import failpoint
from tenantctl.model.desired import desired_state
from tenantctl.model.types import Model
from tenantctl.routing.build import Endpoint, build_routing_map
from tenantctl.routing.store import read_previous, write_map
from tenantctl.terraform import guard, pipeline
from tenantctl.terraform.manifest import PlanManifest
from tenantctl.terraform.workspace import Workspace
from tenantctl.workflow.clusters import cluster_resolver
from tenantctl.workflow.route_plan import RoutingSection, refuse_unsupported_moves

STATE_DIR = Path(".tenantctl")
ROUTES_FILE = STATE_DIR / "routes.json"
POSTGRES_PLAN = "postgres.json"
DEFERRED = "deferred"  # a section item waiting for its cluster to be created

Confirm = Callable[..., bool]


@dataclass
class DeployResult:
    plan_id: str | None
    terraform: pipeline.ApplyResult | None
    postgres_actions: dict[str, int] = field(default_factory=dict)  # cluster -> actions applied
    routes: Path | None = None
    routes_serial: int | None = None
    rounds: int = 1

    @property
    def failed(self) -> bool:
        return self.terraform is not None and any(
            s.status == pipeline.StackStatus.FAILED for s in self.terraform.stacks)


def _state_dir(root: Path) -> Path:
    return root / STATE_DIR


def _secret_store(model: Model, state_dir: Path) -> Any:
    if not any(not t.rds_iam_auth for t in model.tenants):
        return None
    from tenantctl.aws.secrets import SecretsManagerStore
    from tenantctl.aws.session import client, target_for
    from tenantctl.local.moto import ensure_moto

    moto_url = ensure_moto(state_dir).url if model.settings.target == "local" else None
    return SecretsManagerStore(client(target_for(model.settings, moto_url), "secretsmanager"))


@dataclass
class PostgresSection:
    """The native engine as a section of the Terraform plan (``pipeline.SectionPlanner``)."""

    state_dir: Path
    name: str = "postgres"

    def plan(self, model: Model, plan_dir: Path) -> pipeline.Section:
        if model.settings.postgres_engine != "native":
            return pipeline.Section(self.name)  # the terraform engine's resources are in the tenant stacks
        from tenantctl.postgres.connect import ClusterNotCreatedError
        from tenantctl.postgres.engine import plan_cluster, save_plans

        desired = desired_state(model)
        resolver = cluster_resolver(model, self.state_dir)
        secrets = _secret_store(model, self.state_dir)
        plans = []
        deferred: list[pipeline.SectionItem] = []
        for cluster in model.clusters:
            try:
                connection = resolver.resolve(cluster.name)
            except ClusterNotCreatedError:
                # Its endpoint and admin secret exist once the cluster stack is applied (as on aws): its
                # tenants' roles and databases are planned in the next round, like their tenant stacks.
                deferred.append(pipeline.SectionItem(
                    tenant=None, action=DEFERRED, object=f"cluster {cluster.name}: its PostgreSQL baseline",
                    detail="the maintenance database closed to PUBLIC, once the cluster exists"))
                deferred += [pipeline.SectionItem(
                    tenant=state.name, action=DEFERRED, object=f"roles and databases of tenant {state.name}",
                    detail=f"cluster {cluster.name} is created by this plan; planned once it exists")
                    for state in desired.tenants if state.cluster == cluster.name]
                continue
            plans.append(plan_cluster(desired, cluster.name, connection, secrets=secrets))
        save_plans(plans, plan_dir / POSTGRES_PLAN)
        items = [
            pipeline.SectionItem(tenant=action.tenant or None, action=action.kind, object=action.description,
                                 detail=action.subject)
            for plan in plans for action in plan.actions
        ] + deferred
        placed = {t.name: t.cluster for t in model.tenants}
        violations = []
        for plan in plans:
            for orphan in plan.orphans:
                if (orphan.kind == "database" and orphan.archived is None
                        and placed.get(orphan.tenant or "", plan.cluster) != plan.cluster):
                    violations.append(guard.Violation(
                        self.name, orphan.name, "database", "strand",
                        f"database {orphan.name} of tenant {orphan.tenant!r} holds its data on cluster "
                        f"{plan.cluster!r}, but the clients file places the tenant on "
                        f"{placed[orphan.tenant or '']!r}: the apply would create it empty there. This is a "
                        f"move: run `tenantctl move {orphan.tenant} --to {placed[orphan.tenant or '']} "
                        f'--proxy-socket PATH`, or set `cluster = "{plan.cluster}"` in its block'))
                items.append(pipeline.SectionItem(
                    tenant=orphan.tenant, action="orphan", object=f"{orphan.kind} {orphan.name} kept",
                    detail=orphan.reason))
        return pipeline.Section(self.name, items=tuple(items), violations=tuple(violations))


def plan_all(root: Path, model: Model, *, progress: Any = None, policy: guard.GuardPolicy | None = None,
             all_stacks: bool = False, stacks: Path | None = None, parallelism: int | None = None,
             lock_timeout: str = "30s", render: pipeline.RenderFn | None = None) -> pipeline.PlanResult:
    from tenantctl.terraform.environment import terraform_environment

    workspace = Workspace.at(root, stacks)
    refuse_unsupported_moves(root / ROUTES_FILE, model)  # before anything is rendered or started
    environment = terraform_environment(model, workspace)
    options = pipeline.PipelineOptions(all_stacks=all_stacks, lock_timeout=lock_timeout,
                                       policy=policy or guard.GuardPolicy(),
                                       parallelism=parallelism or pipeline.DEFAULT_PARALLELISM)
    result = pipeline.plan(model, workspace, environment, options=options, progress=progress,
                           sections=[PostgresSection(workspace.state_dir), RoutingSection(root, root / ROUTES_FILE)],
                           render=render)
    publisher = artifact_publisher(environment, workspace)
    if publisher is not None:
        publisher(result.plan_id)
    return result


def artifact_publisher(environment: Any, workspace: Workspace) -> Callable[[str], None] | None:
    """With the S3 state backend: copies a plan's artifacts and the applied log to the bucket."""
    if environment.backend.kind != "s3":
        return None
    from tenantctl.aws.session import client
    from tenantctl.history.s3 import publish

    def publish_plan(plan_id: str) -> None:
        publish(client(environment.target, "s3"), environment.backend, workspace.plans_dir, plan_id)

    return publish_plan


def apply_all(root: Path, model: Model, *, plan_id: str | None = None, confirm: Confirm | None = None,
              progress: Any = None, policy: guard.GuardPolicy | None = None, stacks: Path | None = None,
              parallelism: int | None = None, lock_timeout: str = "30s",
              postgres_progress: Callable[[Any], None] | None = None) -> DeployResult:
    """Apply the saved plan: Terraform stacks, then the Postgres plans saved with it, then the routing map."""
    from tenantctl.terraform.environment import terraform_environment

    workspace = Workspace.at(root, stacks)
    refuse_unsupported_moves(root / ROUTES_FILE, model)  # the file may have changed since the plan
    environment = terraform_environment(model, workspace)
    options = pipeline.PipelineOptions(policy=policy or guard.GuardPolicy(), lock_timeout=lock_timeout,
                                       parallelism=parallelism or pipeline.DEFAULT_PARALLELISM)
    recorder = _ApplyRecorder(workspace.plans_dir, artifact_publisher(environment, workspace))
    try:
        result = pipeline.apply(workspace, environment, plan_id=plan_id, options=options, progress=progress,
                                confirm=confirm, started=recorder.started)
        deploy = DeployResult(plan_id=result.plan_id, terraform=result)
        if not deploy.failed:
            plan_dir = workspace.plans_dir / result.plan_id
            deploy.postgres_actions = apply_postgres_plans(model, workspace.state_dir, plan_dir / POSTGRES_PLAN,
                                                           progress=postgres_progress)
            failpoint("routes-before-write")
            deploy.routes, deploy.routes_serial = write_routes(root, model)
    except BaseException as error:
        with contextlib.suppress(Exception):  # the apply's own error is what the user must see
            recorder.finished(status=pipeline.PlanStatus.APPLY_FAILED,
                              error=_one_line(getattr(error, "message", None) or type(error).__name__))
        raise
    recorder.finished(
        status=pipeline.PlanStatus.APPLY_FAILED if deploy.failed else pipeline.PlanStatus.APPLIED,
        stacks={s.stack: s.status for s in result.stacks}, postgres_actions=deploy.postgres_actions,
        routes_serial=deploy.routes_serial,
    )
    return deploy


def _one_line(text: str, limit: int = 300) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


@dataclass
class _ApplyRecorder:
    """Writes the apply's records to the hash-chained applied log (history/chain.py)."""

    plans_dir: Path
    publish: Callable[[str], None] | None
    plan_id: str | None = None

    def started(self, manifest: PlanManifest) -> None:
        from tenantctl.history.plans import record_apply

        self.plan_id = manifest.plan_id
        record_apply(self.plans_dir, manifest.plan_id, "apply-started")
        if self.publish is not None:
            self.publish(manifest.plan_id)  # a run killed during the apply still left its trace in the bucket

    def finished(self, **details: Any) -> None:
        if self.plan_id is None:
            return  # refused before anything was applied: nothing to record
        from tenantctl.history.plans import record_apply

        record_apply(self.plans_dir, self.plan_id, "apply-finished", **details)
        if self.publish is not None:
            self.publish(self.plan_id)


def apply_postgres_plans(model: Model, state_dir: Path, plan_file: Path, *,
                         progress: Callable[[Any], None] | None = None) -> dict[str, int]:
    if model.settings.postgres_engine != "native" or not plan_file.exists():
        return {}
    from tenantctl.postgres.engine import apply_cluster, load_plans

    desired = desired_state(model)
    resolver = cluster_resolver(model, state_dir)
    secrets = _secret_store(model, state_dir)
    applied: dict[str, int] = {}
    for plan in load_plans(plan_file):
        apply_cluster(plan, desired, resolver.resolve(plan.cluster), secrets=secrets, progress=progress)
        applied[plan.cluster] = len(plan.actions)
    return applied


def converge(root: Path, model: Model, *, confirm: Confirm | None = None, progress: Any = None,
             policy: guard.GuardPolicy | None = None, max_rounds: int = 3, stacks: Path | None = None) -> DeployResult:
    """Plan and apply until nothing is deferred (a new cluster makes its tenants wait one round)."""
    last: DeployResult | None = None
    for round_number in range(1, max_rounds + 1):
        planned = plan_all(root, model, progress=progress, policy=policy, stacks=stacks)
        if planned.status == pipeline.PlanStatus.REFUSED:
            from tenantctl.errors import RefusedError

            raise RefusedError("the plan was refused by the guard: " + "; ".join(str(v) for v in planned.violations))
        if planned.status == pipeline.PlanStatus.ERRORED:
            errors = [f"{s.stack}: {s.error}" for s in planned.stacks if s.error]
            errors += [f"{s.name}: {s.error}" for s in planned.sections if s.error]
            raise TenantctlError("the plan failed: " + "; ".join(errors))
        if planned.status == pipeline.PlanStatus.NO_CHANGES:
            routes, serial = write_routes(root, model)
            return last or DeployResult(planned.plan_id, None, routes=routes, routes_serial=serial,
                                        rounds=round_number)
        last = apply_all(root, model, plan_id=planned.plan_id, confirm=confirm, progress=progress, policy=policy,
                         stacks=stacks)
        last.rounds = round_number
        if last.failed:
            return last
        if not any(s.status == pipeline.StackStatus.DEFERRED for s in planned.stacks) and not any(
                item.action == DEFERRED for section in planned.sections for item in section.items):
            return last
    assert last is not None
    return last


def cluster_endpoints(root: Path, model: Model) -> dict[str, Endpoint]:
    """Where the proxy reaches each applied cluster: the cluster stack's outputs (writer and reader
    endpoints), TLS verify-full against the endpoint name with the resolver's CA bundle, through the
    local server that stands in for the cluster on the local target (``hostaddr``)."""
    from tenantctl.aws.clusters import outputs_resolver
    from tenantctl.routing.document import ClusterTls, TlsMode

    resolver = outputs_resolver(model, _state_dir(root))
    endpoints = {}
    for name in resolver.outputs:
        facts = resolver.facts(name)
        sslmode, ca_file = resolver.tls(name)  # the proxy has no verify-ca: it checks the name as well
        mode: TlsMode = ("verify-full" if sslmode in ("verify-full", "verify-ca") else
                         "require" if sslmode == "require" else "disable")
        hostaddr, port = (resolver.tunnel(name, facts.names) if resolver.tunnel is not None
                          else (None, facts.port))
        endpoints[name] = Endpoint(facts.endpoint, port, ClusterTls(mode, ca_file if mode == "verify-full" else None),
                                   reader_host=facts.reader_endpoint, hostaddr=hostaddr)
    return endpoints


def write_routes(root: Path, model: Model, path: Path | None = None) -> tuple[Path, int]:
    """Build the routing map for ``model`` and write it atomically (unchanged content keeps its serial)."""
    target = path or root / ROUTES_FILE
    routing_map = build_routing_map(desired_state(model), cluster_endpoints(root, model),
                                    now=datetime.now(UTC), previous=read_previous(target))
    write_map(target, routing_map)
    return target, routing_map.serial
