from __future__ import annotations

import pytest

from tenantctl.terraform.guard import GuardPolicy, check_changes, check_orphans
from tenantctl.terraform.plan_json import ResourceChange


def rc(address: str, action: str, mode: str = "managed") -> ResourceChange:
    rtype, name = address.split(".", 1)
    return ResourceChange(address, rtype, name, "", mode, action, ())


@pytest.mark.parametrize("address", [
    'aws_rds_cluster.this["shared-01"]', 'aws_rds_cluster_instance.writer["shared-01"]',
    'postgresql_database.db["client01_db1"]', "aws_iam_role.access", "aws_iam_user.tenant",
])
@pytest.mark.parametrize("action", ["delete", "replace"])
def test_deleting_or_replacing_protected_resources_is_refused(address: str, action: str) -> None:
    violations = check_changes("tenants/client01", [rc(address, action)], GuardPolicy())
    assert [(v.address, v.action) for v in violations] == [(address, action)]
    assert violations[0].reason
    assert str(violations[0]).startswith(action.upper())


@pytest.mark.parametrize("action", ["create", "update"])
def test_creating_or_updating_protected_resources_is_allowed(action: str) -> None:
    assert check_changes("cluster", [rc('aws_rds_cluster.this["a"]', action)], GuardPolicy()) == []


def test_unprotected_deletions_and_data_sources_pass() -> None:
    changes = [rc("aws_iam_policy.rds_connect", "delete"), rc("aws_iam_role_policy_attachment.x", "delete"),
               rc("aws_iam_role.lookup", "delete", mode="data")]
    assert check_changes("tenants/client01", changes, GuardPolicy()) == []


def test_allow_is_explicit_per_stack_or_address() -> None:
    change = [rc("aws_iam_user.tenant", "delete"), rc("aws_iam_role.access", "delete")]
    by_stack = GuardPolicy(allow=frozenset({"tenants/client07"}))
    assert check_changes("tenants/client07", change, by_stack) == []
    assert len(check_changes("tenants/client08", change, by_stack)) == 2
    by_address = GuardPolicy(allow=frozenset({"tenants/client07:aws_iam_user.tenant"}))
    assert [v.address for v in check_changes("tenants/client07", change, by_address)] == ["aws_iam_role.access"]


def test_orphaned_stacks_are_refused_unless_allowed() -> None:
    violations = check_orphans(["tenants/gone", "tenants/leaving"], GuardPolicy(allow=frozenset({"tenants/leaving"})))
    assert [(v.stack, v.action) for v in violations] == [("tenants/gone", "delete")]
    assert "offboard" in violations[0].reason


def _plan_document(drift_actions: list[str], change_actions: list[str]) -> dict[str, object]:
    address = 'aws_rds_cluster.this["shared-01"]'
    entry = {"address": address, "type": "aws_rds_cluster", "name": "this", "mode": "managed"}
    return {
        "terraform_version": "1.0.3",
        "resource_drift": [{**entry, "change": {"actions": drift_actions, "before": {}, "after": None}}],
        "resource_changes": [{**entry, "change": {"actions": change_actions, "before": None, "after": {}}}],
    }


def test_a_cluster_that_vanished_from_where_the_plan_looks_is_refused() -> None:
    # What a changed settings.region plans: the old cluster only in resource_drift, a new empty one created.
    from tenantctl.terraform.guard import check_plan
    from tenantctl.terraform.plan_json import read_plan

    summary = read_plan(_plan_document(["delete"], ["create"]))
    assert check_changes("cluster", summary.changes, GuardPolicy()) == []  # what the guard read before
    (violation,) = check_plan("cluster", summary, GuardPolicy())
    assert violation.action == "vanished" and "settings.region" in violation.reason
    assert "would create an empty replacement" in violation.reason
    assert check_plan("cluster", read_plan(_plan_document(["update"], ["update"])), GuardPolicy()) == []
    allowed = GuardPolicy(allow=frozenset({'cluster:aws_rds_cluster.this["shared-01"]'}))
    assert check_plan("cluster", summary, allowed) == []
