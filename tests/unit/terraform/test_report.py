from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from tenantctl.report import document as report_document
from tenantctl.report import markdown, terminal
from tenantctl.terraform import guard
from tenantctl.terraform.manifest import PlanManifest
from tenantctl.terraform.pipeline import PlanResult, Section, SectionItem, StackResult
from tenantctl.terraform.plan_json import ResourceChange


def rc(address: str, action: str, attrs: tuple[str, ...] = ()) -> ResourceChange:
    rtype, name = address.split(".", 1)
    return ResourceChange(address, rtype, name, "", "managed", action, attrs)


def result(status: str, stacks: list[StackResult], sections: list[Section] | None = None) -> PlanResult:
    manifest = PlanManifest(
        plan_id="20261123T100000Z-abcdef", created_at=0.0, status=status, clients_file="clients.tfvars",
        clients_sha256="00", tenantctl_version="0.1.0", terraform_version="1.0.3", terraform_binary="/tf",
        target="local", backend="local", all_stacks=False,
    )
    return PlanResult(manifest.plan_id, Path("/tmp/plans/x"), status, stacks, sections or [], manifest)


def test_markdown_is_empty_when_nothing_changes() -> None:
    doc = report_document.plan_document(result("no_changes", [
        StackResult("cluster", None, "unchanged"), StackResult("tenants/a", "a", "no_changes")]))
    assert markdown.render(doc) == ""


def test_markdown_groups_by_tenant_and_is_loud_on_destroy() -> None:
    violation = guard.Violation("tenants/b", "aws_iam_user.tenant", "aws_iam_user", "delete", "needed")
    doc = report_document.plan_document(result("refused", [
        StackResult("cluster", None, "unchanged"),
        StackResult("tenants/a", "a", "changes", changes=(rc("aws_iam_user.tenant", "create"),)),
        StackResult("tenants/b", "b", "refused", changes=(rc("aws_iam_user.tenant", "delete"),),
                    violations=(violation,)),
    ], [Section("postgres", items=(SectionItem("a", "create", "database a_db1"),))]))
    text = markdown.render(doc)
    assert text.startswith("> [!CAUTION]")
    assert "| a | + create | `aws_iam_user.tenant` |" in text
    assert "| a | + create | `database a_db1` (postgres) |" in text
    assert "| b | - DELETE | `aws_iam_user.tenant` |" in text
    assert "Refused by the guard" in text
    assert doc["totals"] == {"create": 1, "update": 0, "delete": 1, "replace": 0}


def test_json_schema_is_stable() -> None:
    doc = report_document.plan_document(result("changes", [
        StackResult("tenants/a", "a", "changes", changes=(rc("aws_iam_role.access", "update", ("tags",)),),
                    output_changes={"db_user": "create"}),
        StackResult("cluster", None, "unchanged", reason="same"),
    ]))
    assert sorted(doc) == ["artifacts", "inputs", "plan_id", "schema", "sections", "stacks", "status", "totals",
                           "violations"]
    assert doc["schema"] == "tenantctl.plan/v1"
    assert [s["stack"] for s in doc["stacks"]] == ["cluster", "tenants/a"]  # cluster first
    assert doc["stacks"][1]["changes"] == [{"address": "aws_iam_role.access", "type": "aws_iam_role",
                                            "action": "update", "changed_attributes": ["tags"]}]
    assert doc["stacks"][1]["output_changes"] == [{"name": "db_user", "action": "create"}]
    json.dumps(doc)  # serialisable


def test_terminal_table_lists_addresses_by_tenant() -> None:
    doc = report_document.plan_document(result("changes", [
        StackResult("tenants/a", "a", "changes", changes=(rc("aws_iam_user.tenant", "create"),)),
        StackResult("tenants/c", "c", "deferred", reason="waits for the cluster"),
    ]))
    console = Console(record=True, width=200)
    terminal.render(doc, console)
    text = console.export_text()
    assert "aws_iam_user.tenant" in text and "create" in text
    assert "deferred tenants/c: waits for the cluster" in text
    assert "1 to create" in text
