"""The plan/apply pipeline over the cluster stack and the per-tenant stacks.

``plan``:

1. render the model into ``stacks/`` (only changed files are written);
2. hash each live stack (its files plus its inputs: cluster values, target, backend); a stack whose
   hash equals its last apply (``applied.json``) is *unchanged* and Terraform is not run for it,
   unless ``all_stacks``;
3. plan the cluster stack first; tenant stacks get their cluster's values (endpoint, reader
   endpoint, port, resource id, ARN) from the cluster stack's recorded ``clusters`` output through a
   generated ``-var-file`` in the plan directory;
4. a tenant whose cluster has never been applied, or whose cluster values this plan changes, is
   *deferred*: it is planned by the next ``plan``, after ``apply`` has applied the cluster stack. This
   keeps every saved tenant plan free of unknown cluster values, so ``apply`` runs exactly what was
   reviewed;
5. plan the remaining tenant stacks with bounded concurrency;
6. guard every plan (``guard.py``) and every stack with state that is no longer rendered (*orphaned*);
7. store the artifacts in ``.tenantctl/plans/<id>/``; refused and errored plans are kept too.

``apply`` takes the newest plan (or a given id), refuses it if it was refused, already applied,
superseded, or stale (clients file, rendered files, cluster values or applied stacks changed since),
re-checks the guard on the plan files themselves, then applies the cluster stack, records its
outputs, and applies tenant stacks with bounded concurrency.

Other planners (the native Postgres engine) plug in as ``SectionPlanner``s: their per-tenant changes
are shown beside the Terraform changes and saved in the same plan directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tenantctl import __version__
from tenantctl.aws.session import AwsTarget
from tenantctl.errors import RefusedError, TenantctlError
from tenantctl.failpoint import failpoint
from tenantctl.fsutil import atomic_write_text
from tenantctl.model.types import Backend, Model
from tenantctl.render.snapshot import restore_backup
from tenantctl.terraform import guard
from tenantctl.terraform.manifest import AppliedManifest, PlanManifest, PlannedStack
from tenantctl.terraform.plan_json import PlanSummary, ResourceChange, read_plan, redact_plan
from tenantctl.terraform.runner import (
    DestroyPreventedError,
    OperationInterrupted,
    StateLockedError,
    TerraformEvent,
    TerraformRunner,
    forwarding_interrupts,
)
from tenantctl.terraform.toolchain import Toolchain
from tenantctl.terraform.workspace import (
    CLUSTER_STACK,
    Workspace,
    content_hash,
    read_stack_files,
    slug,
    sync_work_dir,
    tenant_of,
    tenant_stack,
)

CLUSTERS_OUTPUT = "clusters"
CLUSTER_VARIABLES = {
    "cluster_endpoint": "endpoint",
    "cluster_reader_endpoint": "reader_endpoint",
    "cluster_port": "port",
    "cluster_resource_id": "cluster_resource_id",
    "cluster_arn": "arn",
}
LATEST = "LATEST"
_INIT_LOCK = threading.Lock()
DEFAULT_PARALLELISM = max(1, min(4, os.cpu_count() or 1))


class StackStatus:
    CHANGES = "changes"  # planned; changes pending
    NO_CHANGES = "no_changes"  # planned; nothing to do
    UNCHANGED = "unchanged"  # not planned: same content and inputs as its last apply
    DEFERRED = "deferred"  # not planned: waits for the cluster stack's apply
    ERRORED = "errored"
    REFUSED = "refused"  # planned, and the guard refused it
    ORPHANED = "orphaned"  # has state, no longer rendered: refused
    APPLIED = "applied"
    FAILED = "failed"  # apply failed


class PlanStatus:
    NO_CHANGES = "no_changes"
    CHANGES = "changes"
    REFUSED = "refused"
    ERRORED = "errored"
    APPLYING = "applying"  # saved before the first stack is applied: a killed apply leaves it behind
    APPLIED = "applied"
    APPLY_FAILED = "apply_failed"


class PipelineProgress(Protocol):
    def stack_started(self, stack: str, step: str) -> None: ...
    def stack_finished(self, stack: str, status: str, elapsed: float) -> None: ...
    def terraform_event(self, stack: str, event: TerraformEvent) -> None: ...


class NullProgress:
    def stack_started(self, stack: str, step: str) -> None:
        pass

    def stack_finished(self, stack: str, status: str, elapsed: float) -> None:
        pass

    def terraform_event(self, stack: str, event: TerraformEvent) -> None:
        pass


INFORMATIONAL_ACTIONS = frozenset({"orphan"})  # shown to the reviewer, changes nothing


@dataclass(frozen=True)
class SectionItem:
    """One planned change of another engine (e.g. a Postgres role to create)."""

    tenant: str | None
    action: str  # create | update | delete | replace | ...
    object: str  # e.g. "role client01", "database client01_db1"
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "action": self.action, "object": self.object, "detail": self.detail}


@dataclass(frozen=True)
class Section:
    name: str  # e.g. "postgres"
    items: tuple[SectionItem, ...] = ()
    violations: tuple[guard.Violation, ...] = ()
    error: str | None = None


class SectionPlanner(Protocol):
    """A planner beside Terraform. ``plan`` must be pure with respect to the world (read-only) and
    may write its own artifacts into ``plan_dir``."""

    name: str

    def plan(self, model: Model, plan_dir: Path) -> Section: ...


@dataclass(frozen=True)
class PipelineOptions:
    all_stacks: bool = False
    parallelism: int = DEFAULT_PARALLELISM
    policy: guard.GuardPolicy = field(default_factory=guard.GuardPolicy)
    lock_timeout: str = "30s"


@dataclass
class StackResult:
    stack: str
    tenant: str | None
    status: str
    changes: tuple[ResourceChange, ...] = ()
    violations: tuple[guard.Violation, ...] = ()
    error: str | None = None
    locked: bool = False
    output_changes: dict[str, str] = field(default_factory=dict)  # output name -> action (no no-ops)
    elapsed: float = 0.0
    reason: str = ""  # why unchanged/deferred


@dataclass
class PlanResult:
    plan_id: str
    plan_dir: Path
    status: str
    stacks: list[StackResult]
    sections: list[Section]
    manifest: PlanManifest

    @property
    def violations(self) -> list[guard.Violation]:
        found = [v for s in self.stacks for v in s.violations]
        return found + [v for section in self.sections for v in section.violations]

    @property
    def has_changes(self) -> bool:
        return self.status in (PlanStatus.CHANGES, PlanStatus.REFUSED)


@dataclass
class ApplyResult:
    plan_id: str
    status: str
    stacks: list[StackResult]


@dataclass(frozen=True)
class TerraformEnvironment:
    """How to run Terraform for one project: toolchain, AWS target and state backend."""

    toolchain: Toolchain
    target: AwsTarget
    backend: Backend
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)  # TF_VAR_* secrets; never hashed

    def env(self) -> dict[str, str]:
        return {**self.target.env(), **self.secret_env}

    def backend_config(self, workspace: Workspace, stack: str) -> dict[str, str]:
        if self.backend.kind == "local":
            return {"path": str(workspace.local_state_file(stack))}
        config = {
            "bucket": self.backend.bucket,
            "key": f"{self.backend.key_prefix.strip('/')}/{stack}.tfstate",
            "region": self.backend.region or self.target.region,
            "encrypt": "true",
        }
        if self.backend.dynamodb_table:
            config["dynamodb_table"] = self.backend.dynamodb_table
        if self.target.endpoint_url is not None:
            config.update({
                "endpoint": self.target.endpoint_url,
                "dynamodb_endpoint": self.target.endpoint_url,
                "sts_endpoint": self.target.endpoint_url,
                "iam_endpoint": self.target.endpoint_url,
                "force_path_style": "true",
                "skip_credentials_validation": "true",
                "skip_metadata_api_check": "true",
                "skip_region_validation": "true",
            })
        return config

    def stack_inputs(self, workspace: Workspace, stack: str) -> dict[str, Any]:
        return {
            "target": self.target.endpoint_url or "aws",
            "region": self.target.region,
            "backend": self.backend_config(workspace, stack),
            "terraform": str(self.toolchain.terraform),
        }


# (model, stacks dir, backup): the renderer records in ``backup`` the previous bytes of every file it
# rewrites (None for a new one), so that a refused plan can put stacks/ back.
RenderFn = Callable[[Model, Path, dict[str, bytes | None]], object]


def _default_render(model: Model, out_dir: Path, backup: dict[str, bytes | None]) -> object:
    from tenantctl.render import render_stacks

    return render_stacks(model, out_dir, backup=backup)


# ---------------------------------------------------------------------------------------------
# plan


def plan(
    model: Model,
    workspace: Workspace,
    environment: TerraformEnvironment,
    *,
    options: PipelineOptions | None = None,
    progress: PipelineProgress | None = None,
    sections: Sequence[SectionPlanner] = (),
    render: RenderFn | None = None,
) -> PlanResult:
    options = options or PipelineOptions()
    progress = progress or NullProgress()
    stacks_before: dict[str, bytes | None] = {}
    (render or _default_render)(model, workspace.stacks_dir, stacks_before)
    applied = AppliedManifest(workspace.applied_manifest)
    plan_id = _new_plan_id()
    plan_dir = workspace.plans_dir / plan_id
    plan_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(plan_dir, 0o700)  # plan files embed values Terraform may consider sensitive

    terraform_version = _terraform_version(environment, workspace)
    manifest = PlanManifest(
        plan_id=plan_id, created_at=time.time(), status=PlanStatus.NO_CHANGES,
        clients_file=str(model.source), clients_sha256=_file_sha256(Path(model.source)),
        tenantctl_version=__version__, terraform_version=terraform_version,
        terraform_binary=str(environment.toolchain.terraform), target=model.settings.target,
        backend=environment.backend.kind, all_stacks=options.all_stacks,
    )
    context = _StackRunner(workspace, environment, options, progress, plan_dir)
    results: list[StackResult] = []

    with forwarding_interrupts():
        cluster_files = read_stack_files(workspace.source_dir(CLUSTER_STACK))
        cluster_hash = content_hash(cluster_files, environment.stack_inputs(workspace, CLUSTER_STACK))
        cluster_entry = applied.get(CLUSTER_STACK)
        known_outputs: dict[str, Any] = dict((cluster_entry.outputs if cluster_entry else None) or {})
        if not options.all_stacks and cluster_entry is not None and cluster_entry.content_hash == cluster_hash:
            cluster_result = StackResult(CLUSTER_STACK, None, StackStatus.UNCHANGED,
                                         reason="same content and inputs as the last apply")
            manifest.stacks.append(PlannedStack(CLUSTER_STACK, cluster_result.status, cluster_hash,
                                                cluster_entry.content_hash))
            stable_clusters = set(known_outputs)
        else:
            cluster_result, planned, document = context.plan_stack(
                CLUSTER_STACK, cluster_files, cluster_hash, None, applied
            )
            manifest.stacks.append(planned)
            stable_clusters = _stable_clusters(known_outputs, document, cluster_result)
        results.append(cluster_result)

        tenant_jobs: list[tuple[str, dict[str, bytes], str, dict[str, Any]]] = []
        for tenant in model.tenants:
            stack = tenant_stack(tenant.name)
            files = read_stack_files(workspace.source_dir(stack))
            entry = applied.get(stack)
            if tenant.cluster not in stable_clusters:
                why = ("its cluster stack has not been applied yet" if tenant.cluster not in known_outputs
                       else "this plan changes its cluster's values")
                results.append(StackResult(stack, tenant.name, StackStatus.DEFERRED,
                                           reason=f"{why}; run `tenantctl plan` again after `tenantctl apply`"))
                manifest.stacks.append(PlannedStack(stack, StackStatus.DEFERRED, "",
                                                    entry.content_hash if entry else None))
                continue
            inputs = _cluster_inputs(known_outputs[tenant.cluster])
            stack_hash = content_hash(files, {**environment.stack_inputs(workspace, stack), "cluster": inputs})
            if not options.all_stacks and entry is not None and entry.content_hash == stack_hash:
                results.append(StackResult(stack, tenant.name, StackStatus.UNCHANGED,
                                           reason="same content and inputs as the last apply"))
                manifest.stacks.append(PlannedStack(stack, StackStatus.UNCHANGED, stack_hash,
                                                    entry.content_hash, inputs=inputs))
                continue
            tenant_jobs.append((stack, files, stack_hash, inputs))

        if tenant_jobs:
            with ThreadPoolExecutor(max_workers=max(1, options.parallelism)) as pool:
                outcomes = list(pool.map(
                    lambda job: context.plan_stack(job[0], job[1], job[2], job[3], applied), tenant_jobs
                ))
            for stack_result, planned, _document in outcomes:
                results.append(stack_result)
                manifest.stacks.append(planned)

        live = {CLUSTER_STACK, *(tenant_stack(t.name) for t in model.tenants)}
        orphans = sorted((set(applied.stacks) | set(workspace.local_state_stacks())) - live)
        for violation in guard.check_orphans(orphans, options.policy):
            results.append(StackResult(violation.stack, tenant_of(violation.stack), StackStatus.ORPHANED,
                                       violations=(violation,), reason=violation.reason))
            manifest.stacks.append(PlannedStack(violation.stack, StackStatus.ORPHANED, "", None))

        # A refused Terraform plan goes no further: other engines may start or touch things (a local
        # server for a renamed cluster), and a refused plan must change nothing.
        refused = any(r.violations for r in results)
        planned_sections = [] if refused else [_run_section(planner, model, plan_dir) for planner in sections]

    manifest.status = _plan_status(results, planned_sections)
    if manifest.status == PlanStatus.REFUSED:
        restore_backup(workspace.stacks_dir, stacks_before)  # a refused plan leaves stacks/ as it found it
    result = PlanResult(plan_id, plan_dir, manifest.status, results, planned_sections, manifest)
    manifest.save(plan_dir)
    _write_summaries(result)
    atomic_write_text(workspace.plans_dir / LATEST, plan_id + "\n")
    return result


def _stable_clusters(known: dict[str, Any], document: dict[str, Any] | None, result: StackResult) -> set[str]:
    """Clusters whose recorded values this cluster plan leaves exactly as they are."""
    if result.status in (StackStatus.ERRORED,) or document is None:
        return set()
    change = (document.get("output_changes") or {}).get(CLUSTERS_OUTPUT)
    if change is None:
        return set(known) if not result.changes else set()
    after = change.get("after") if isinstance(change.get("after"), dict) else {}
    unknown = change.get("after_unknown")
    stable = set()
    for name, values in known.items():
        cluster_unknown = unknown is True or (isinstance(unknown, dict) and unknown.get(name))
        if not cluster_unknown and after.get(name) == values:
            stable.add(name)
    return stable


def _cluster_inputs(values: dict[str, Any]) -> dict[str, Any]:
    return {variable: values.get(key) for variable, key in CLUSTER_VARIABLES.items()}


def _plan_status(results: Sequence[StackResult], sections: Sequence[Section]) -> str:
    if any(r.violations for r in results) or any(s.violations for s in sections):
        return PlanStatus.REFUSED
    if any(r.status == StackStatus.ERRORED for r in results) or any(s.error for s in sections):
        return PlanStatus.ERRORED
    if any(r.status in (StackStatus.CHANGES, StackStatus.DEFERRED) for r in results) or any(
        item.action not in INFORMATIONAL_ACTIONS for s in sections for item in s.items
    ):
        return PlanStatus.CHANGES
    return PlanStatus.NO_CHANGES


def _run_section(planner: SectionPlanner, model: Model, plan_dir: Path) -> Section:
    try:
        return planner.plan(model, plan_dir)
    except RefusedError as error:
        return Section(name=planner.name, violations=(
            guard.Violation(planner.name, "", planner.name, "refuse", error.message),))
    except TenantctlError as error:
        return Section(name=planner.name, error=error.message)


class _StackRunner:
    def __init__(
        self, workspace: Workspace, environment: TerraformEnvironment, options: PipelineOptions,
        progress: PipelineProgress, plan_dir: Path,
    ) -> None:
        self.workspace = workspace
        self.environment = environment
        self.options = options
        self.progress = progress
        self.plan_dir = plan_dir

    def runner(self, stack: str) -> TerraformRunner:
        return TerraformRunner(
            self.environment.toolchain, self.workspace.work_dir(stack), env=self.environment.env(),
            on_event=lambda event: self.progress.terraform_event(stack, event),
            lock_timeout=self.options.lock_timeout,
        )

    def prepare(self, stack: str, files: dict[str, bytes], runner: TerraformRunner) -> None:
        """Working copy in sync with the rendered files; ``init`` when its inputs changed."""
        work_dir = self.workspace.work_dir(stack)
        sync_work_dir(files, work_dir)
        backend = self.environment.backend_config(self.workspace, stack)
        init_key = hashlib.sha256(json.dumps(
            {"backend": backend, "terraform": str(self.environment.toolchain.terraform),
             "config": str(self.environment.toolchain.cli_config),
             "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())
                       if _affects_init(data)}},
            sort_keys=True,
        ).encode()).hexdigest()
        marker = work_dir / ".tenantctl-init"
        if (work_dir / ".terraform").is_dir() and marker.is_file() and marker.read_text() == init_key:
            return
        if self.environment.backend.kind == "local":
            self.workspace.local_state_file(stack).parent.mkdir(parents=True, exist_ok=True)
        self.progress.stack_started(stack, "init")
        # Parallel inits race on the shared plugin cache ("mkdir ...: file exists" with newer Terraform):
        # init one stack at a time; plans and applies still run concurrently.
        with _INIT_LOCK:
            runner.init(backend)
        marker.write_text(init_key)

    def plan_stack(
        self, stack: str, files: dict[str, bytes], stack_hash: str, inputs: dict[str, Any] | None,
        applied: AppliedManifest,
    ) -> tuple[StackResult, PlannedStack, dict[str, Any] | None]:
        started = time.monotonic()
        tenant = tenant_of(stack)
        entry = applied.get(stack)
        planned = PlannedStack(stack, StackStatus.ERRORED, stack_hash, entry.content_hash if entry else None,
                               inputs=inputs)
        document: dict[str, Any] | None = None
        runner = self.runner(stack)
        try:
            if not files:
                raise TenantctlError(f"no Terraform files rendered in {self.workspace.source_dir(stack)}")
            self.prepare(stack, files, runner)
            var_files = []
            if inputs is not None:
                var_file = self.plan_dir / f"{slug(stack)}.inputs.tfvars.json"
                declared = {name: value for name, value in inputs.items() if _declares(files, name)}
                atomic_write_text(var_file, json.dumps(declared, indent=2, sort_keys=True) + "\n")
                var_files.append(var_file)
            self.progress.stack_started(stack, "plan")
            plan_file = self.plan_dir / f"{slug(stack)}.tfplan"
            outcome = runner.plan(plan_file, var_files=var_files)
            document = runner.show_json(plan_file)
            summary = read_plan(document)
            atomic_write_text(self.plan_dir / f"{slug(stack)}.plan.json",
                              json.dumps(redact_plan(document), indent=2, sort_keys=True) + "\n", mode=0o600)
            planned.plan_file = plan_file.name
            planned.plan_json = f"{slug(stack)}.plan.json"
            planned.has_changes = outcome.has_changes
            violations = tuple(guard.check_plan(stack, summary, self.options.policy))
            status = (StackStatus.REFUSED if violations
                      else StackStatus.CHANGES if outcome.has_changes else StackStatus.NO_CHANGES)
            planned.status = status
            outputs = {name: action for name, action in summary.output_changes.items() if action != "no-op"}
            result = StackResult(stack, tenant, status, changes=summary.changes, violations=violations,
                                 output_changes=outputs)
        except DestroyPreventedError as error:
            planned.error = error.message
            planned.status = StackStatus.REFUSED
            violations = tuple(
                guard.Violation(stack, address, address.split(".", 1)[0], "delete",
                                "lifecycle.prevent_destroy: " + guard.PROTECTED_TYPES.get(
                                    address.split(".", 1)[0], "the resource is protected"))
                for address in error.addresses
            )
            result = StackResult(stack, tenant, StackStatus.REFUSED, violations=violations, error=error.message)
        except OperationInterrupted:
            raise
        except TenantctlError as error:
            planned.error = error.message
            result = StackResult(stack, tenant, StackStatus.ERRORED, error=error.message,
                                 locked=isinstance(error, StateLockedError))
        result.elapsed = time.monotonic() - started
        self.progress.stack_finished(stack, result.status, result.elapsed)
        return result, planned, document


def _affects_init(data: bytes) -> bool:
    return b"required_providers" in data or b"backend" in data or b"module" in data


def _declares(files: dict[str, bytes], variable: str) -> bool:
    pattern = re.compile(rb'variable\s+"' + re.escape(variable.encode()) + rb'"')
    return any(pattern.search(data) for data in files.values())


# ---------------------------------------------------------------------------------------------
# apply


def latest_plan_id(workspace: Workspace) -> str | None:
    try:
        return (workspace.plans_dir / LATEST).read_text().strip() or None
    except FileNotFoundError:
        return None


def load_plan(workspace: Workspace, plan_id: str | None = None) -> tuple[PlanManifest, Path]:
    plan_id = plan_id or latest_plan_id(workspace)
    if plan_id is None:
        raise RefusedError("there is no saved plan to apply", hint="run `tenantctl plan` first")
    plan_dir = workspace.plans_dir / plan_id
    try:
        return PlanManifest.load(plan_dir), plan_dir
    except FileNotFoundError as error:
        raise RefusedError(f"plan {plan_id} does not exist in {workspace.plans_dir}") from error


def check_applicable(
    manifest: PlanManifest, workspace: Workspace, environment: TerraformEnvironment,
    *, plan_id_given: bool = False,
) -> None:
    """Refuse a plan that was refused, applied, superseded or made against another world."""
    if manifest.status == PlanStatus.REFUSED:
        raise RefusedError(f"plan {manifest.plan_id} was refused by the guard and cannot be applied",
                           hint=f"see .tenantctl/plans/{manifest.plan_id}/summary.md")
    if manifest.status == PlanStatus.ERRORED:
        raise RefusedError(f"plan {manifest.plan_id} has errors and cannot be applied")
    if manifest.status == PlanStatus.APPLYING:
        raise RefusedError(f"plan {manifest.plan_id} was partly applied by a run that was interrupted (or is "
                           "still running)", hint="run `tenantctl plan` again: it plans what is left to do")
    if manifest.status in (PlanStatus.APPLIED, PlanStatus.APPLY_FAILED):
        raise RefusedError(f"plan {manifest.plan_id} was already applied",
                           hint="run `tenantctl plan` again (after an interrupted run: it plans what is left)")
    latest = latest_plan_id(workspace)
    if latest != manifest.plan_id:
        raise RefusedError(f"plan {manifest.plan_id} is stale: plan {latest} was made after it",
                           hint="apply the newest plan, or run `tenantctl plan` again")
    problems: list[str] = []
    if _file_sha256(Path(manifest.clients_file)) != manifest.clients_sha256:
        problems.append(f"{manifest.clients_file} changed")
    if str(environment.toolchain.terraform) != manifest.terraform_binary:
        problems.append(f"the terraform binary changed ({manifest.terraform_binary} -> "
                        f"{environment.toolchain.terraform})")
    applied = AppliedManifest(workspace.applied_manifest)
    for planned in manifest.stacks:
        if planned.status not in (StackStatus.CHANGES, StackStatus.NO_CHANGES):
            continue
        files = read_stack_files(workspace.source_dir(planned.stack))
        inputs = environment.stack_inputs(workspace, planned.stack)
        if planned.inputs is not None:
            inputs = {**inputs, "cluster": planned.inputs}
        if content_hash(files, inputs) != planned.content_hash:
            problems.append(f"{planned.stack}: rendered files or inputs changed")
        entry = applied.get(planned.stack)
        if (entry.content_hash if entry else None) != planned.applied_hash:
            problems.append(f"{planned.stack}: applied by another run since this plan")
    if problems:
        raise RefusedError(
            f"plan {manifest.plan_id} is stale: " + "; ".join(problems),
            hint="run `tenantctl plan` again and review the new plan",
        )


def reguard(
    manifest: PlanManifest, plan_dir: Path, workspace: Workspace, environment: TerraformEnvironment,
    policy: guard.GuardPolicy,
) -> dict[str, PlanSummary]:
    """Read every plan file again (not the stored summary) and re-check the guard."""
    summaries: dict[str, PlanSummary] = {}
    violations: list[guard.Violation] = []
    for planned in manifest.stacks:
        if planned.status not in (StackStatus.CHANGES, StackStatus.NO_CHANGES) or planned.plan_file is None:
            continue
        runner = TerraformRunner(environment.toolchain, workspace.work_dir(planned.stack),
                                 env=environment.env())
        summary = read_plan(runner.show_json(plan_dir / planned.plan_file))
        summaries[planned.stack] = summary
        violations += guard.check_plan(planned.stack, summary, policy)
    if violations:
        raise RefusedError("the guard refuses this plan:\n" + "\n".join(f"  {v}" for v in violations))
    return summaries


def apply(
    workspace: Workspace,
    environment: TerraformEnvironment,
    *,
    plan_id: str | None = None,
    options: PipelineOptions | None = None,
    progress: PipelineProgress | None = None,
    confirm: Callable[[PlanManifest, dict[str, PlanSummary]], bool] | None = None,
    started: Callable[[PlanManifest], None] | None = None,
) -> ApplyResult:
    """Apply exactly the saved plan: cluster stack first, then tenant stacks.

    ``started`` is called once the plan is confirmed and marked applying, before anything changes.
    """
    options = options or PipelineOptions()
    progress = progress or NullProgress()
    manifest, plan_dir = load_plan(workspace, plan_id)
    check_applicable(manifest, workspace, environment, plan_id_given=plan_id is not None)
    with forwarding_interrupts():
        summaries = reguard(manifest, plan_dir, workspace, environment, options.policy)
        if confirm is not None and not confirm(manifest, summaries):
            raise RefusedError("apply cancelled: nothing was applied")
        manifest.status = PlanStatus.APPLYING
        manifest.save(plan_dir)
        if started is not None:
            started(manifest)
        context = _StackRunner(workspace, environment, options, progress, plan_dir)
        applied = AppliedManifest(workspace.applied_manifest)
        results: list[StackResult] = []
        try:
            _apply_all(context, manifest, plan_dir, applied, summaries, results, options)
        except OperationInterrupted:
            manifest.status = PlanStatus.APPLY_FAILED  # partially applied: the plan cannot be reused
            manifest.applied_at = time.time()
            manifest.save(plan_dir)
            raise
    failed = any(r.status == StackStatus.FAILED for r in results)
    manifest.status = PlanStatus.APPLY_FAILED if failed else PlanStatus.APPLIED
    manifest.applied_at = time.time()
    manifest.save(plan_dir)
    _write_apply_summary(plan_dir, results)
    return ApplyResult(manifest.plan_id, manifest.status, results)


def _apply_all(
    context: _StackRunner, manifest: PlanManifest, plan_dir: Path, applied: AppliedManifest,
    summaries: dict[str, PlanSummary], results: list[StackResult], options: PipelineOptions,
) -> None:
    cluster = manifest.stack(CLUSTER_STACK)
    if cluster is not None and cluster.status in (StackStatus.CHANGES, StackStatus.NO_CHANGES):
        results.append(_apply_stack(context, cluster, plan_dir, applied, manifest.plan_id, summaries))
    cluster_failed = any(r.status == StackStatus.FAILED for r in results)
    tenants = [s for s in manifest.stacks if s.stack != CLUSTER_STACK
               and s.status in (StackStatus.CHANGES, StackStatus.NO_CHANGES)]
    if cluster_failed:
        results += [StackResult(s.stack, tenant_of(s.stack), StackStatus.FAILED,
                                error="not applied: the cluster stack failed") for s in tenants]
    elif tenants:
        with ThreadPoolExecutor(max_workers=max(1, options.parallelism)) as pool:
            results += list(pool.map(
                lambda s: _apply_stack(context, s, plan_dir, applied, manifest.plan_id, summaries), tenants
            ))


def _apply_stack(
    context: _StackRunner, planned: PlannedStack, plan_dir: Path, applied: AppliedManifest, plan_id: str,
    summaries: dict[str, PlanSummary],
) -> StackResult:
    started = time.monotonic()
    stack = planned.stack
    tenant = tenant_of(stack)
    summary = summaries.get(stack)
    changes = summary.changes if summary else ()
    try:
        if stack != CLUSTER_STACK and planned.inputs is not None:
            current = applied.cluster_outputs() or {}
            cluster_values = next((_cluster_inputs(v) for v in current.values()
                                   if _cluster_inputs(v) == planned.inputs), None)
            if cluster_values is None:
                raise RefusedError(f"{stack}: its cluster's values changed since the plan; plan again")
        runner = context.runner(stack)
        files = read_stack_files(context.workspace.source_dir(stack))
        context.prepare(stack, files, runner)
        outputs = None
        if planned.has_changes:
            context.progress.stack_started(stack, "apply")
            assert planned.plan_file is not None
            runner.apply(plan_dir / planned.plan_file)
            failpoint("terraform-applied")
        if stack == CLUSTER_STACK:
            document = runner.output_json()
            outputs = (document.get(CLUSTERS_OUTPUT) or {}).get("value") or {}
        applied.record(stack, planned.content_hash, plan_id, outputs)
        result = StackResult(stack, tenant, StackStatus.APPLIED, changes=changes)
    except OperationInterrupted:
        raise
    except TenantctlError as error:
        result = StackResult(stack, tenant, StackStatus.FAILED, changes=changes, error=error.message,
                             locked=isinstance(error, StateLockedError))
    result.elapsed = time.monotonic() - started
    context.progress.stack_finished(stack, result.status, result.elapsed)
    return result


# ---------------------------------------------------------------------------------------------
# artifacts


def _write_summaries(result: PlanResult) -> None:
    from tenantctl.report import document as report_document
    from tenantctl.report import markdown

    doc = report_document.plan_document(result)
    atomic_write_text(result.plan_dir / "summary.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    atomic_write_text(result.plan_dir / "summary.md", markdown.render(doc))


def _write_apply_summary(plan_dir: Path, results: Sequence[StackResult]) -> None:
    document = {
        "stacks": [
            {"stack": r.stack, "status": r.status, "error": r.error, "elapsed_seconds": round(r.elapsed, 3)}
            for r in results
        ]
    }
    atomic_write_text(plan_dir / "apply.json", json.dumps(document, indent=2, sort_keys=True) + "\n")


def _new_plan_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


_VERSION_CACHE: dict[str, str] = {}
_VERSION_LOCK = threading.Lock()


def _terraform_version(environment: TerraformEnvironment, workspace: Workspace) -> str:
    binary = str(environment.toolchain.terraform)
    with _VERSION_LOCK:
        if binary not in _VERSION_CACHE:
            runner = TerraformRunner(environment.toolchain, workspace.root)
            _VERSION_CACHE[binary] = runner.version()
        return _VERSION_CACHE[binary]
