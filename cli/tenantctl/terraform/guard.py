"""The plan guard: refuse plans that delete or replace what holds tenants' data or access.

Checked twice: when a plan is made (the plan is kept as a *refused* artifact and ``plan`` exits 3)
and again just before ``apply`` runs it. The literal ``lifecycle { prevent_destroy = true }`` in the
rendered stacks stays as the second line of defence.

Refused: a delete or replace of ``aws_rds_cluster``, ``aws_rds_cluster_instance``,
``postgresql_database``, a tenant's ``aws_iam_role`` or ``aws_iam_user``; and a stack that has
state but no rendered directory any more (a tenant removed from the clients file), which would be
destroyed silently otherwise.

``GuardPolicy.allow`` is the one, explicit way through, reserved for the offboarding flow: it names
stacks (``tenants/client07``) or stack-qualified addresses (``tenants/client07:aws_iam_user.this``)
whose protected deletions are intended. Nothing in ``plan``/``apply`` fills it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tenantctl.terraform.plan_json import PlanSummary, ResourceChange

PROTECTED_TYPES: dict[str, str] = {
    "aws_rds_cluster": "an Aurora cluster holds every tenant database on it",
    "aws_rds_cluster_instance": "a cluster instance serves every tenant on the cluster",
    "postgresql_database": "dropping a database destroys a tenant's data",
    "aws_iam_role": "a tenant's IAM role is how its applications reach the database",
    "aws_iam_user": "a tenant's IAM user is how its applications reach the database",
}


@dataclass(frozen=True)
class Violation:
    stack: str
    address: str
    type: str
    action: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.stack}:{self.address}" if self.address else self.stack
        return f"{self.action.upper()} {where}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "address": self.address, "type": self.type,
                "action": self.action, "reason": self.reason}


@dataclass(frozen=True)
class GuardPolicy:
    """``allow``: stacks or ``stack:address`` entries whose protected deletions are intended
    (the offboarding flow only)."""

    allow: frozenset[str] = field(default_factory=frozenset)

    def allows(self, stack: str, address: str = "") -> bool:
        return stack in self.allow or (bool(address) and f"{stack}:{address}" in self.allow)


def check_changes(stack: str, changes: Iterable[ResourceChange], policy: GuardPolicy) -> list[Violation]:
    violations = []
    for change in changes:
        reason = PROTECTED_TYPES.get(change.type)
        if reason is None or change.mode != "managed" or not change.destroys:
            continue
        if policy.allows(stack, change.address):
            continue
        violations.append(Violation(stack, change.address, change.type, change.action, reason))
    return violations


def check_drift(stack: str, drift: Iterable[ResourceChange], policy: GuardPolicy) -> list[Violation]:
    """Protected resources that refresh no longer finds. Terraform then plans them as new and empty, and
    the old ones (with every tenant's data) show only as drift: a changed ``settings.region`` or account,
    or a cluster deleted outside Terraform."""
    violations = []
    for change in drift:
        reason = PROTECTED_TYPES.get(change.type)
        if reason is None or change.mode != "managed" or change.action != "delete":
            continue
        if policy.allows(stack, change.address):
            continue
        violations.append(Violation(
            stack, change.address, change.type, "vanished",
            f"{reason}; Terraform no longer finds it where this plan looks (was settings.region, the account or "
            "the backend changed? was it deleted outside Terraform?) and would create an empty replacement "
            "while the data stays behind. Moving clusters between regions is not supported: restore the "
            "previous settings"))
    return violations


def check_plan(stack: str, summary: PlanSummary, policy: GuardPolicy) -> list[Violation]:
    """Everything the guard refuses in one stack's plan: protected deletions and vanished resources."""
    return check_changes(stack, summary.changes, policy) + check_drift(stack, summary.drift, policy)


def check_orphans(orphaned_stacks: Iterable[str], policy: GuardPolicy) -> list[Violation]:
    return [
        Violation(
            stack, "", "stack", "delete",
            "the stack has state but is no longer rendered (tenant removed from the clients file?); "
            "offboard the tenant explicitly instead",
        )
        for stack in orphaned_stacks
        if not policy.allows(stack)
    ]
