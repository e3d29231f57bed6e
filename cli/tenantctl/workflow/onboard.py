"""Onboard one tenant: splice its block into the clients file, plan, confirm, apply, route.

The file edit is rolled back when nothing was applied (invalid input, a refused or failed plan, a
declined confirmation, ``plan_only``). Once applying started the block stays: rerunning the same
``onboard`` finds the identical block and converges the rest.
"""

from __future__ import annotations

import ipaddress
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantctl.errors import InputError, RefusedError, TenantctlError
from tenantctl.failpoint import failpoint
from tenantctl.fsutil import atomic_write_text
from tenantctl.model import model_from_text
from tenantctl.model.desired import desired_tenant
from tenantctl.model.edit import TenantBlock, add_tenant
from tenantctl.model.placement import place
from tenantctl.model.types import Model, Tenant
from tenantctl.model.validate import CLUSTER_NAME, IDENTIFIER, splits_archive_names
from tenantctl.terraform import pipeline
from tenantctl.workflow import deploy
from tenantctl.workflow.route_plan import RoutingSection, refuse_unsupported_moves

Confirm = Callable[[pipeline.PlanResult], bool]


@dataclass
class Timings:
    steps: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def measure(self, step: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps[step] = self.steps.get(step, 0.0) + time.monotonic() - started

    @property
    def total(self) -> float:
        return sum(self.steps.values())


@dataclass
class OnboardResult:
    tenant: str
    cluster: str
    status: str  # applied | planned | declined | resumed
    plan: pipeline.PlanResult | None = None
    deploy: deploy.DeployResult | None = None
    connection: dict[str, Any] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "cluster": self.cluster, "status": self.status,
                "plan_id": self.plan.plan_id if self.plan else None,
                "routes_serial": self.deploy.routes_serial if self.deploy else None,
                "connection": self.connection,
                "timings": {name: round(seconds, 3) for name, seconds in self.timings.steps.items()}}


def _block_matches(tenant: Tenant, block: TenantBlock) -> bool:
    return (tenant.databases == tuple(sorted(block.databases)) and tenant.allowed_ips == block.allowed_ips
            and tenant.rds_iam_auth == block.rds_iam_auth and (block.tier is None or tenant.tier == block.tier)
            and (block.cluster is None or tenant.cluster == block.cluster))


def pin_placement(model: Model, block: TenantBlock) -> TenantBlock:
    """``block`` with its cluster chosen now (if not given), so later clusters never move it."""
    if block.cluster is not None:
        if not any(c.name == block.cluster for c in model.clusters):
            raise InputError(f"{model.source}: no cluster named {block.cluster!r}",
                             hint="clusters: " + ", ".join(c.name for c in model.clusters))
        return block
    cluster = place(block.name, [c.name for c in model.clusters if not c.dedicated])
    if cluster is None:
        raise InputError(f"{model.source} has no shared cluster to place {block.name!r} on", hint="pass --cluster")
    return TenantBlock(block.name, block.databases, block.allowed_ips, block.rds_iam_auth, block.tier, cluster)


def connection_info(model: Model, tenant: Tenant) -> dict[str, Any]:
    state = desired_tenant(model, tenant)
    info: dict[str, Any] = {
        "user": state.login_role.name, "databases": [db.logical for db in state.databases],
        "through": "the tenantctl proxy (`tenantctl proxy --routes .tenantctl/routes.json`); the database "
                   "name is the logical one",
        "auth": "password" if state.login_role.password_auth else "iam",
    }
    if state.login_role.password_auth:
        info["password"] = f"`tenantctl credentials {tenant.name} --via HOST:PORT --reveal` prints the DSN"
    else:
        info["password"] = "an RDS IAM auth token (rds generate-db-auth-token) for the user"
    return info


def check_block(block: TenantBlock) -> None:
    """Every onboard argument on its own, before the file is touched: one message per bad argument."""
    problems = []
    if not IDENTIFIER.fullmatch(block.name) or splits_archive_names(block.name):
        problems.append(f"NAME {block.name!r}: use lowercase letters, digits and single `_` between them, "
                        "starting with a letter")
    if not block.databases:
        problems.append("--db: give at least one database")
    for database in block.databases:
        if not IDENTIFIER.fullmatch(database) or splits_archive_names(database):
            problems.append(f"--db {database!r}: not a database name (lowercase letters, digits and single `_` "
                            "between them, starting with a letter)")
    if len(set(block.databases)) != len(block.databases):
        problems.append("--db: a database is given twice")
    if not block.allowed_ips:
        problems.append("--allowed-ip: give at least one CIDR")
    for cidr in block.allowed_ips:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            problems.append(f"--allowed-ip {cidr!r}: not a valid CIDR")
    if block.tier is not None and not IDENTIFIER.fullmatch(block.tier):
        problems.append(f"--tier {block.tier!r}: not a tier name")
    if block.cluster is not None and not CLUSTER_NAME.fullmatch(block.cluster):
        problems.append(f"--cluster {block.cluster!r}: not a cluster name")
    if problems:
        raise InputError("invalid arguments; nothing was written:\n  " + "\n  ".join(problems))


def _added_exactly(before: Model, after: Model, block: TenantBlock) -> None:
    """The edit must add the one tenant asked for and change no other (defence against a writer bug)."""
    old = {t.name: t for t in before.tenants}
    new = {t.name: t for t in after.tenants}
    added = set(new) - set(old)
    changed = [name for name in old if name not in new or new[name] != old[name]]
    if added != {block.name} or changed or not _block_matches(new[block.name], block):
        raise TenantctlError(f"internal error: adding {block.name!r} would also change "
                             f"{sorted((added - {block.name}) | set(changed))}; nothing was written")


def onboard(root: Path, clients_file: Path, block: TenantBlock, *, confirm: Confirm | None = None,
            plan_only: bool = False, progress: Any = None, timings: Timings | None = None) -> OnboardResult:
    timings = timings or Timings()
    filename = str(clients_file)
    check_block(block)
    stack_dir = root / "stacks" / "tenants" / block.name
    stack_existed = stack_dir.exists()
    with timings.measure("edit + validate"):
        try:
            original = clients_file.read_text()
        except FileNotFoundError:
            raise InputError(f"{clients_file}: clients file not found") from None
        model = model_from_text(original, filename)
        existing = next((t for t in model.tenants if t.name == block.name), None)
        if existing is not None and not _block_matches(existing, block):
            raise InputError(f"{filename}: a tenant named {block.name!r} already exists",
                             hint="pick another name, or rerun with the same options to finish its onboarding")
        if existing is None:
            block = pin_placement(model, block)
            edited = add_tenant(original, filename, block)
            new_model = model_from_text(edited, filename)  # raises ValidationFailed: nothing written yet
            _added_exactly(model, new_model, block)
            atomic_write_text(clients_file, edited)
        else:
            edited, new_model = original, model
    tenant = next(t for t in new_model.tenants if t.name == block.name)
    result = OnboardResult(block.name, tenant.cluster, "resumed" if existing else "planned", timings=timings)

    def roll_back() -> None:
        if existing is None and clients_file.read_text() == edited:
            atomic_write_text(clients_file, original)
            _restore_stacks(root, model, stack_dir if not stack_existed else None)

    try:
        planned = _plan(root, new_model, timings, progress)
        result.plan = planned
        if planned.status == pipeline.PlanStatus.REFUSED:
            raise RefusedError("the plan was refused by the guard: "
                               + "; ".join(str(v) for v in planned.violations))
        if planned.status == pipeline.PlanStatus.ERRORED:
            errors = [f"{s.stack}: {s.error}" for s in planned.stacks if s.error]
            errors += [f"{s.name}: {s.error}" for s in planned.sections if s.error]
            raise TenantctlError("the plan failed: " + "; ".join(errors))
        if plan_only:
            roll_back()
            return result
        if confirm is not None and not confirm(planned):
            roll_back()
            result.status = "declined"
            return result
    except BaseException:
        roll_back()
        raise
    # From here on something may be applied: the block stays, a rerun completes the work.
    result.deploy = _apply(root, new_model, planned, timings, progress)
    if result.deploy.failed:
        failed = [f"{s.stack}: {s.error}" for s in result.deploy.terraform.stacks  # type: ignore[union-attr]
                  if s.status == pipeline.StackStatus.FAILED]
        raise TenantctlError("apply failed: " + "; ".join(failed),
                             hint=f"fix the cause and rerun the same `tenantctl onboard {block.name} ...`")
    if any(s.status == pipeline.StackStatus.DEFERRED for s in planned.stacks):
        with timings.measure("converge (deferred stacks)"):
            result.deploy = deploy.converge(root, new_model, progress=progress)
    result.status = "applied"
    result.connection = connection_info(new_model, tenant)
    return result


def _restore_stacks(root: Path, model: Model, new_stack: Path | None) -> None:
    """Put the rendered stacks back as the unchanged clients file renders them (nothing left behind)."""
    from tenantctl.render import render_stacks

    render_stacks(model, root / "stacks")
    if new_stack is not None and new_stack.is_dir():
        shutil.rmtree(new_stack, ignore_errors=True)


class _TimedSection:
    def __init__(self, inner: deploy.PostgresSection, timings: Timings) -> None:
        self.inner, self.timings, self.name = inner, timings, inner.name

    def plan(self, model: Model, plan_dir: Path) -> pipeline.Section:
        with self.timings.measure("postgres plan"):
            return self.inner.plan(model, plan_dir)


def _plan(root: Path, model: Model, timings: Timings, progress: Any) -> pipeline.PlanResult:
    """``deploy.plan_all`` with its steps timed (render, Terraform plan, Postgres plan)."""
    from tenantctl.render import render_stacks
    from tenantctl.terraform import guard
    from tenantctl.terraform.environment import terraform_environment
    from tenantctl.terraform.workspace import Workspace

    def timed_render(model_: Model, out_dir: Path, backup: dict[str, bytes | None]) -> object:
        with timings.measure("render"):
            return render_stacks(model_, out_dir, backup=backup)

    workspace = Workspace.at(root)
    refuse_unsupported_moves(root / deploy.ROUTES_FILE, model)
    started = time.monotonic()
    before = dict(timings.steps)
    environment = terraform_environment(model, workspace)
    options = pipeline.PipelineOptions(policy=guard.GuardPolicy(), parallelism=pipeline.DEFAULT_PARALLELISM)
    planned = pipeline.plan(model, workspace, environment, options=options, progress=progress,
                            sections=[_TimedSection(deploy.PostgresSection(workspace.state_dir), timings),
                                      RoutingSection(root, root / deploy.ROUTES_FILE)],
                            render=timed_render)
    inner = sum(timings.steps.get(k, 0.0) - before.get(k, 0.0) for k in ("render", "postgres plan"))
    timings.steps["terraform plan"] = timings.steps.get("terraform plan", 0.0) + time.monotonic() - started - inner
    return planned


def _apply(root: Path, model: Model, planned: pipeline.PlanResult, timings: Timings,
           progress: Any) -> deploy.DeployResult:
    """``deploy.apply_all`` with its steps timed (Terraform apply, Postgres apply, routing map)."""
    from tenantctl.terraform import guard
    from tenantctl.terraform.environment import terraform_environment
    from tenantctl.terraform.workspace import Workspace

    workspace = Workspace.at(root)
    with timings.measure("terraform apply"):
        environment = terraform_environment(model, workspace)
        options = pipeline.PipelineOptions(policy=guard.GuardPolicy(), parallelism=pipeline.DEFAULT_PARALLELISM)
        applied = pipeline.apply(workspace, environment, plan_id=planned.plan_id, options=options,
                                 progress=progress)
    result = deploy.DeployResult(plan_id=applied.plan_id, terraform=applied)
    if result.failed:
        return result
    with timings.measure("postgres apply"):
        result.postgres_actions = deploy.apply_postgres_plans(
            model, workspace.state_dir, workspace.plans_dir / applied.plan_id / deploy.POSTGRES_PLAN)
    failpoint("routes-before-write")
    with timings.measure("routing map"):
        result.routes, result.routes_serial = deploy.write_routes(root, model)
    return result
