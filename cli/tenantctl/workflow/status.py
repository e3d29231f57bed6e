"""`tenantctl status`: one row per tenant, from the clients file, the applied record, the routing map
and the offboarding ledger.

Drift compares what the clients file renders to now (files and inputs, hashed as the pipeline hashes
them) with the hash recorded when the tenant's stack was last applied.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenantctl.errors import TenantctlError
from tenantctl.model.types import Model
from tenantctl.workflow import deploy
from tenantctl.workflow.ledger import Ledger

IN_SYNC = "in sync"
PENDING = "pending changes"
NEVER_APPLIED = "never applied"
WAITING = "waiting for its cluster"


@dataclass(frozen=True)
class TenantStatus:
    tenant: str
    state: str  # active | moving ... | offboarded | purged | offboarding | restoring
    cluster: str
    databases: tuple[str, ...]
    auth: str
    tier: str
    last_applied: str | None
    drift: str
    routed: bool

    def to_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "state": self.state, "cluster": self.cluster,
                "databases": list(self.databases), "auth": self.auth, "tier": self.tier,
                "last_applied": self.last_applied, "drift": self.drift, "routed": self.routed}


@dataclass(frozen=True)
class StatusReport:
    tenants: list[TenantStatus]
    routing_serial: int | None
    routing_file: str

    def to_json(self) -> dict[str, Any]:
        return {"routing_map": {"file": self.routing_file, "serial": self.routing_serial},
                "tenants": [t.to_json() for t in self.tenants]}


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rendered_hashes(root: Path, model: Model) -> dict[str, str]:
    """Stack -> content hash of what the model renders to now (as ``pipeline.plan`` computes it)."""
    from tenantctl.render import render_stacks
    from tenantctl.terraform.environment import terraform_environment
    from tenantctl.terraform.manifest import AppliedManifest
    from tenantctl.terraform.pipeline import CLUSTER_VARIABLES
    from tenantctl.terraform.workspace import Workspace, content_hash, read_stack_files, tenant_stack

    workspace = Workspace.at(root)
    environment = terraform_environment(model, workspace)
    outputs = AppliedManifest(workspace.applied_manifest).cluster_outputs() or {}
    hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tenantctl-status-") as tmp:
        render_stacks(model, Path(tmp))
        for tenant in model.tenants:
            values = outputs.get(tenant.cluster)
            if values is None:
                continue
            stack = tenant_stack(tenant.name)
            inputs = {variable: values.get(key) for variable, key in CLUSTER_VARIABLES.items()}
            files = read_stack_files(Path(tmp) / stack)
            hashes[stack] = content_hash(files, {**environment.stack_inputs(workspace, stack), "cluster": inputs})
    return hashes


def tenant_status(root: Path, model: Model) -> StatusReport:
    from tenantctl.model.desired import desired_state
    from tenantctl.routing.store import read_previous
    from tenantctl.terraform.manifest import AppliedManifest
    from tenantctl.terraform.workspace import Workspace, tenant_stack
    from tenantctl.workflow.offboard import LEDGER_FILE, runs

    applied = AppliedManifest(Workspace.at(root).applied_manifest)
    routes_file = root / deploy.ROUTES_FILE
    try:
        routing = read_previous(routes_file)
    except TenantctlError:
        routing = None
    routed_users = set(routing.tenants) if routing else set()
    from tenantctl.workflow.move import in_motion, phase

    hashes = _rendered_hashes(root, model)
    desired = desired_state(model)
    moving = in_motion(root)
    rows = []
    for tenant in model.tenants:
        stack = tenant_stack(tenant.name)
        entry = applied.get(stack)
        if stack not in hashes:
            drift = WAITING
        elif entry is None:
            drift = NEVER_APPLIED
        else:
            drift = IN_SYNC if entry.content_hash == hashes[stack] else PENDING
        state = desired.tenant(tenant.name)
        rows.append(TenantStatus(
            tenant=tenant.name, cluster=tenant.cluster, databases=tenant.databases,
            state=(f"moving {moving[tenant.name].source} -> {moving[tenant.name].target}: "
                   f"{phase(moving[tenant.name])}" if tenant.name in moving else "active"),
            auth="iam" if tenant.rds_iam_auth else "password", tier=tenant.tier,
            last_applied=_stamp(entry.applied_at) if entry else None, drift=drift,
            routed=state.login_role.name in routed_users))
    active = {t.name for t in model.tenants}
    latest: dict[str, Any] = {}
    for run in runs(Ledger(root / LEDGER_FILE)):
        latest[run.tenant] = run
    for name, run in sorted(latest.items()):
        if name in active or run.state == "restored":
            continue
        block = run.block
        rows.append(TenantStatus(tenant=name, state=run.state, cluster=block.cluster or "",
                                 databases=tuple(block.databases), auth="iam" if block.rds_iam_auth else "password",
                                 tier=block.tier or "", last_applied=None, drift="-", routed=False))
    return StatusReport(rows, routing.serial if routing else None, str(deploy.ROUTES_FILE))
