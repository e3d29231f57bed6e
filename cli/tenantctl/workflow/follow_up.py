"""``apply --then-deferred``: the second round of a new cluster's first apply, in the same run, when safe.

A tenant stack takes its cluster's endpoint, port and resource id as input variables, and Terraform
cannot save a plan whose *inputs* are unknown. So a plan that creates a cluster defers that cluster's
tenant stacks (the reviewer sees them listed as deferred), and a second plan/apply creates them. A
pipeline that applies on merge runs one apply; with ``--then-deferred`` that apply plans the second
round itself and applies it only when it is exactly what the reviewed plan announced:

- only the stacks the reviewed plan listed as deferred have changes, and they only *create*;
- nothing is refused, errored or deferred again;
- the Postgres and routing sections change only those tenants (and, on a cluster whose Postgres plan
  was deferred because it did not exist yet, its baseline), and nothing is loud (no access cut, nothing
  re-pointed, no data left unrouted).

Anything else is refused (exit 3) after the first round, naming the second plan to review: the run
fails visibly instead of applying something no one reviewed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenantctl.errors import RefusedError
from tenantctl.model.types import Model
from tenantctl.terraform import pipeline
from tenantctl.terraform.plan_json import CREATE
from tenantctl.terraform.workspace import Workspace, tenant_of


def deferred_stacks(root: Path, plan_id: str, stacks: Path | None = None) -> set[str]:
    """The stacks the plan ``plan_id`` deferred to a second round."""
    manifest, _ = pipeline.load_plan(Workspace.at(root, stacks), plan_id)
    return {s.stack for s in manifest.stacks if s.status == pipeline.StackStatus.DEFERRED}


def deferred_clusters(root: Path, plan_id: str, model: Model, stacks: Path | None = None) -> set[str]:
    """The clusters whose Postgres plan ``plan_id`` deferred: they had no endpoint yet (not created)."""
    from tenantctl.postgres.engine import load_plans
    from tenantctl.workflow.deploy import POSTGRES_PLAN

    if model.settings.postgres_engine != "native":
        return set()
    _, plan_dir = pipeline.load_plan(Workspace.at(root, stacks), plan_id)
    if not (plan_dir / POSTGRES_PLAN).exists():
        return set()
    return {c.name for c in model.clusters} - {plan.cluster for plan in load_plans(plan_dir / POSTGRES_PLAN)}


def first_plan_baselines(planned: pipeline.PlanResult, clusters: set[str]) -> set[str]:
    """The tenant-less actions (a new cluster's baseline) of the Postgres plans of ``clusters``."""
    from tenantctl.postgres.engine import load_plans
    from tenantctl.workflow.deploy import POSTGRES_PLAN

    path = planned.plan_dir / POSTGRES_PLAN
    if not clusters or not path.exists():
        return set()
    return {action.description for plan in load_plans(path) if plan.cluster in clusters
            for action in plan.actions if not action.tenant}


def follow_up_problems(planned: pipeline.PlanResult, deferred: set[str],
                       baselines: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Why the second-round plan is not just the deferred stacks' creation (empty: safe to apply).
    ``baselines``: the tenant-less Postgres actions of clusters the reviewed plan listed as deferred."""
    from tenantctl.report.document import ACCESS_ACTIONS

    problems = [str(v) for v in planned.violations]
    tenants = {tenant_of(stack) for stack in deferred}
    for stack in planned.stacks:
        if stack.status == pipeline.StackStatus.ERRORED:
            problems.append(f"{stack.stack}: {stack.error}")
        elif stack.status == pipeline.StackStatus.DEFERRED:
            problems.append(f"{stack.stack}: deferred again ({stack.reason})")
        elif stack.status == pipeline.StackStatus.CHANGES and stack.stack not in deferred:
            problems.append(f"{stack.stack}: has changes, but the reviewed plan did not defer it")
        problems += [f"{stack.stack}: {c.action} {c.address} (only creations were deferred)"
                     for c in stack.changes if c.action != CREATE]
    for section in planned.sections:
        if section.error:
            problems.append(f"{section.name}: {section.error}")
        for item in section.items:
            if item.action in ACCESS_ACTIONS:
                problems.append(f"{section.name}: {item.action} {item.object}")
            elif item.tenant is None and section.name == "postgres" and item.object in baselines:
                continue  # a deferred cluster's first plan: its baseline, announced as deferred
            elif item.action != "orphan" and item.tenant not in tenants:
                problems.append(f"{section.name}: {item.action} {item.object} (not a deferred tenant)")
    return problems


def apply_deferred(root: Path, model: Model, reviewed_plan_id: str, *, confirm: Any = None, progress: Any = None,
                   stacks: Path | None = None, parallelism: int | None = None, lock_timeout: str = "30s",
                   postgres_progress: Callable[[Any], None] | None = None) -> Any:
    """Plan and apply the stacks ``reviewed_plan_id`` deferred; None when it deferred nothing.

    Returns the second round's ``DeployResult``; raises ``RefusedError`` (nothing of round 2 applied)
    when the second plan holds anything but the deferred stacks' creation.
    """
    from tenantctl.workflow import deploy

    deferred = deferred_stacks(root, reviewed_plan_id, stacks)
    if not deferred:
        return None
    planned = deploy.plan_all(root, model, progress=progress, stacks=stacks, parallelism=parallelism,
                              lock_timeout=lock_timeout)
    clusters = deferred_clusters(root, reviewed_plan_id, model, stacks)
    problems = follow_up_problems(planned, deferred, first_plan_baselines(planned, clusters))
    if problems:
        raise RefusedError(
            f"the second round (plan {planned.plan_id}) was not applied: it holds more than the creation of the "
            f"{len(deferred)} tenant stack(s) the reviewed plan deferred:\n  " + "\n  ".join(problems),
            hint="review that plan (`tenantctl plan`), then `tenantctl apply`")
    return deploy.apply_all(root, model, plan_id=planned.plan_id, confirm=confirm, progress=progress, stacks=stacks,
                            parallelism=parallelism, lock_timeout=lock_timeout, postgres_progress=postgres_progress)
