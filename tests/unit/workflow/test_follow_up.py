"""`apply --then-deferred`: the second round is applied only when it is exactly the deferred stacks' creation."""

from __future__ import annotations

from pathlib import Path

from tenantctl.terraform import guard
from tenantctl.terraform.manifest import PlanManifest
from tenantctl.terraform.pipeline import PlanResult, Section, SectionItem, StackResult
from tenantctl.terraform.plan_json import ResourceChange
from tenantctl.workflow.follow_up import follow_up_problems

DEFERRED = {"tenants/a"}


def rc(address: str, action: str) -> ResourceChange:
    rtype, name = address.split(".", 1)
    return ResourceChange(address, rtype, name, "", "managed", action, ())


def planned(stacks: list[StackResult], sections: list[Section] | None = None) -> PlanResult:
    manifest = PlanManifest(plan_id="p2", created_at=0.0, status="changes", clients_file="c", clients_sha256="0",
                            tenantctl_version="0", terraform_version="1.0.3", terraform_binary="/tf",
                            target="local", backend="local", all_stacks=False)
    return PlanResult("p2", Path("/tmp/p2"), "changes", stacks, sections or [], manifest)


CREATES_A = StackResult("tenants/a", "a", "changes", changes=(rc("aws_iam_user.tenant", "create"),))
UNCHANGED = [StackResult("cluster", None, "unchanged"), StackResult("tenants/b", "b", "unchanged")]


def test_creating_only_the_deferred_stacks_is_safe() -> None:
    sections = [Section("postgres", items=(SectionItem("a", "set-password", "role a"),
                                           SectionItem("b", "orphan", "database b_old kept", ""))),
                Section("routing", items=(SectionItem("a", "route-add", "route a/db1 -> a_db1"),))]
    assert follow_up_problems(planned([*UNCHANGED, CREATES_A], sections), DEFERRED) == []


def test_anything_else_is_refused_and_named() -> None:
    cases = [
        StackResult("tenants/b", "b", "changes", changes=(rc("aws_iam_user.tenant", "create"),)),  # not deferred
        StackResult("tenants/a", "a", "changes", changes=(rc("aws_iam_role.access", "update"),)),  # not a create
        StackResult("tenants/a", "a", "deferred", reason="its cluster changed"),
        StackResult("tenants/a", "a", "errored", error="boom"),
        StackResult("tenants/a", "a", "refused", violations=(
            guard.Violation("tenants/a", "aws_iam_user.tenant", "aws_iam_user", "delete", "needed"),)),
    ]
    for stack in cases:
        problems = follow_up_problems(planned([*UNCHANGED, stack]), DEFERRED)
        assert problems and all(p for p in problems), stack
    for section in [Section("routing", items=(SectionItem("b", "route-remove", "route b/db2 removed"),)),
                    Section("routing", items=(SectionItem("a", "route-repoint", "route a: cluster x -> y"),)),
                    Section("postgres", items=(SectionItem("b", "create-database", "database b_db3"),)),
                    Section("postgres", error="cannot reach shared-01")]:
        assert follow_up_problems(planned([*UNCHANGED, CREATES_A], [section]), DEFERRED), section


def test_a_deferred_clusters_baseline_passes_and_nothing_else_tenantless_does() -> None:
    baseline = "database postgres: PUBLIC gets nothing (had CONNECT, TEMPORARY)"
    round_two = [Section("postgres", items=(SectionItem(None, "set_database_privileges", baseline),
                                            SectionItem("a", "create_database", "database a_db1")))]
    assert follow_up_problems(planned([*UNCHANGED, CREATES_A], round_two), DEFERRED, {baseline}) == []
    refused = follow_up_problems(planned([*UNCHANGED, CREATES_A], round_two), DEFERRED)  # not announced
    assert refused == [f"postgres: set_database_privileges {baseline} (not a deferred tenant)"]
    other = [Section("postgres", items=(SectionItem(None, "drop_role", "role old_admin"),))]
    assert follow_up_problems(planned([*UNCHANGED, CREATES_A], other), DEFERRED, {baseline})
    as_routing = [Section("routing", items=(SectionItem(None, "route-add", baseline),))]
    assert follow_up_problems(planned([*UNCHANGED, CREATES_A], as_routing), DEFERRED, {baseline})
