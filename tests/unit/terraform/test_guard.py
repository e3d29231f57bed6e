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
