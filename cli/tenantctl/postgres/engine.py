"""The native engine's entry points: plan a cluster, save/load plans, apply a reviewed plan.

    plan = plan_cluster(desired, "main", resolver.resolve("main"), secrets=store)
    save_plan(plan, Path(".tenantctl/plans/postgres-main.json"))
    apply_cluster(load_plan(path), desired, resolver.resolve("main"), secrets=store)
"""

from __future__ import annotations

import json
from pathlib import Path

from tenantctl.aws.secrets import SecretStore
from tenantctl.errors import InputError, RefusedError
from tenantctl.fsutil import atomic_write_text
from tenantctl.model import naming
from tenantctl.model.desired import DesiredState
from tenantctl.postgres.applier import ApplyOptions, Progress, execute
from tenantctl.postgres.catalog import ObservedCluster, inspect_cluster
from tenantctl.postgres.connect import ClusterConnection
from tenantctl.postgres.plan import PgPlan
from tenantctl.postgres.planner import compute_plan, databases_to_inspect


def secret_prefix(desired: DesiredState) -> str:
    return naming.secret_name(desired.model.settings, "").removesuffix("/postgres")


def observe(desired: DesiredState, cluster: str, connection: ClusterConnection, *,
            deep: bool = False) -> ObservedCluster:
    return inspect_cluster(
        connection, schema_databases=lambda dbs: databases_to_inspect(desired, cluster, dbs, deep=deep))


def plan_cluster(desired: DesiredState, cluster: str, connection: ClusterConnection, *,
                 secrets: SecretStore | None = None, deep: bool = False) -> PgPlan:
    """Inspect ``cluster`` and compute the ordered actions that bring it to ``desired``. Changes nothing."""
    observed = observe(desired, cluster, connection, deep=deep)
    names = secrets.names(secret_prefix(desired)) if secrets is not None else None
    return compute_plan(desired, cluster, observed, secret_names=names, deep=deep)


def apply_cluster(plan: PgPlan, desired: DesiredState, connection: ClusterConnection, *,
                  secrets: SecretStore | None = None, options: ApplyOptions = ApplyOptions(),
                  progress: Progress | None = None) -> None:
    """Apply exactly ``plan``, or refuse (``RefusedError``) if the cluster changed since it was made."""
    current = plan_cluster(desired, plan.cluster, connection, secrets=secrets, deep=plan.deep)
    if current.fingerprint != plan.fingerprint:
        raise RefusedError(
            f"the Postgres plan for cluster {plan.cluster!r} is stale: the catalogs changed since it was made "
            f"({len(current.actions)} action(s) needed now, {len(plan.actions)} in the plan); nothing applied",
            hint="run `tenantctl pg plan` again and review the new plan")
    if current.actions != plan.actions:
        raise RefusedError(f"the Postgres plan for cluster {plan.cluster!r} does not match the clients file "
                           "any more; nothing applied", hint="run `tenantctl pg plan` again")
    execute(plan.actions, connection, secrets=secrets, options=options, progress=progress)


def plans_to_json(plans: list[PgPlan]) -> dict[str, object]:
    return {"format": 1, "engine": "native", "clusters": [plan.to_json() for plan in plans]}


def save_plans(plans: list[PgPlan], path: Path) -> None:
    """One file for every cluster's plan; written atomically (holds no secrets)."""
    atomic_write_text(path, json.dumps(plans_to_json(plans), indent=2, sort_keys=True) + "\n")


def load_plans(path: Path) -> list[PgPlan]:
    try:
        document = json.loads(Path(path).read_text())
        return [PgPlan.from_json(plan) for plan in document["clusters"]]
    except FileNotFoundError as error:
        raise InputError(f"{path}: no such plan file", hint="run `tenantctl pg plan` first") from error
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not a valid tenantctl Postgres plan: {error}") from error
