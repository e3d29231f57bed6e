"""plan/apply for real: Terraform 1.0.3 + hashicorp/aws 3.39.0 against a moto server.

One project is applied once (module scope, two clusters created in parallel: ~35 s) and the tests
below run in file order against it, each leaving the clients file as it found it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tenantctl.errors import ExitCode, RefusedError
from tenantctl.render import render_stacks
from tenantctl.terraform import pipeline
from tenantctl.terraform.pipeline import PlanStatus, StackStatus
from tenantctl.terraform.runner import TerraformRunner
from tenantctl.terraform.secret_vars import master_password_file

pytestmark = [pytest.mark.terraform, pytest.mark.slow]

CLIENT01 = ('  { name = "client01", databases = { db1 = true, db2 = false }, '
            'allowed_ips = ["109.241.200.168/32"], rds_iam_auth = true, cluster = "shared-01" },\n')
CLIENT02 = ('  { name = "client02", databases = { db1 = true }, allowed_ips = ["203.0.113.0/24"], '
            'rds_iam_auth = false, cluster = "shared-01" },\n')
CLIENT03 = ('  { name = "client03", databases = { app = true }, allowed_ips = ["109.241.200.7/32"], '
            'rds_iam_auth = true, cluster = "shared-01" },\n')
SPARE = '  spare     = { min_acu = 0.5, max_acu = 4 }\n'


def clients_file(*tenants: str, spare: bool = True) -> str:
    return (
        'settings = { region = "eu-west-1", target = "local" }\n'
        "clusters = {\n"
        "  shared-01 = { min_acu = 0.5, max_acu = 16 }\n"
        + (SPARE if spare else "")
        + "}\n"
        "clients = [\n" + "".join(tenants) + "]\n"
    )


BASE = clients_file(CLIENT01, CLIENT02)


def statuses(result: pipeline.PlanResult | pipeline.ApplyResult) -> dict[str, str]:
    return {stack.stack: stack.status for stack in result.stacks}


@pytest.fixture(scope="module")
def applied(make_project: Any) -> dict[str, Any]:
    """The example applied from scratch: cluster first, then (after a second plan) the tenants."""
    project = make_project("main", BASE)
    first = project.plan()
    cluster_apply = project.apply()
    second = project.plan()
    tenants_apply = project.apply()
    return {"project": project, "first": first, "cluster_apply": cluster_apply, "second": second,
            "tenants_apply": tenants_apply}


def test_first_plan_plans_the_cluster_and_defers_tenants(applied: dict[str, Any]) -> None:
    first = applied["first"]
    assert statuses(first) == {"cluster": StackStatus.CHANGES, "tenants/client01": StackStatus.DEFERRED,
                               "tenants/client02": StackStatus.DEFERRED}
    creates = sorted(c.address for c in first.stacks[0].changes if c.action == "create")
    assert creates == ['aws_rds_cluster.this["shared-01"]', 'aws_rds_cluster.this["spare"]',
                       'aws_secretsmanager_secret.admin["shared-01"]', 'aws_secretsmanager_secret.admin["spare"]',
                       'aws_secretsmanager_secret_version.admin["shared-01"]',
                       'aws_secretsmanager_secret_version.admin["spare"]']
    assert statuses(applied["cluster_apply"]) == {"cluster": StackStatus.APPLIED}


def test_tenants_are_planned_with_the_cluster_outputs_and_applied(applied: dict[str, Any]) -> None:
    second = applied["second"]
    assert statuses(second) == {"cluster": StackStatus.UNCHANGED, "tenants/client01": StackStatus.CHANGES,
                                "tenants/client02": StackStatus.CHANGES}
    client01 = {c.address for c in second.stacks[1].changes}
    assert {"aws_iam_user.tenant", "aws_iam_role.access", "aws_iam_policy.rds_connect"} <= client01
    inputs = json.loads((second.plan_dir / "tenants__client01.inputs.tfvars.json").read_text())
    assert inputs["cluster_resource_id"].startswith("cluster-")
    assert statuses(applied["tenants_apply"]) == {"tenants/client01": StackStatus.APPLIED,
                                                  "tenants/client02": StackStatus.APPLIED}
    project = applied["project"]
    state = json.loads(project.workspace.local_state_file("tenants/client01").read_text())
    policy = next(r for r in state["resources"] if r["type"] == "aws_iam_policy")
    document = json.loads(policy["instances"][0]["attributes"]["policy"])
    assert inputs["cluster_resource_id"] in document["Statement"][0]["Resource"]


def test_replan_of_every_stack_reports_no_changes(applied: dict[str, Any]) -> None:
    result = applied["project"].plan(all_stacks=True)
    assert result.status == PlanStatus.NO_CHANGES, [(s.stack, s.changes, s.output_changes) for s in result.stacks]
    assert set(statuses(result).values()) == {StackStatus.NO_CHANGES}


def test_unchanged_stacks_are_skipped_without_running_terraform(
    applied: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("terraform must not run for unchanged stacks")

    monkeypatch.setattr(TerraformRunner, "plan", forbidden)
    monkeypatch.setattr(TerraformRunner, "init", forbidden)
    started = time.monotonic()
    result = applied["project"].plan()
    assert time.monotonic() - started < 10
    assert result.status == PlanStatus.NO_CHANGES
    assert set(statuses(result).values()) == {StackStatus.UNCHANGED}


def test_onboarding_one_tenant_plans_only_its_stack_and_stale_plans_are_refused(applied: dict[str, Any]) -> None:
    project = applied["project"]
    project.write_clients(clients_file(CLIENT01, CLIENT02, CLIENT03))
    result = project.plan()
    assert statuses(result) == {"cluster": StackStatus.UNCHANGED, "tenants/client01": StackStatus.UNCHANGED,
                                "tenants/client02": StackStatus.UNCHANGED, "tenants/client03": StackStatus.CHANGES}

    # The clients file changes after the plan: applying the reviewed plan is refused.
    project.write_clients(clients_file(CLIENT01, CLIENT02, CLIENT03.replace("109.241.200.7/32", "109.241.200.8/32")))
    with pytest.raises(RefusedError, match="stale"):
        project.apply()
    project.write_clients(clients_file(CLIENT01, CLIENT02, CLIENT03))

    older = project.plan()
    newer = project.plan()
    with pytest.raises(RefusedError, match=f"plan {newer.plan_id} was made after it"):
        project.apply(plan_id=older.plan_id)
    applied_result = project.apply()
    assert statuses(applied_result) == {"tenants/client03": StackStatus.APPLIED}
    with pytest.raises(RefusedError, match="already applied"):
        project.apply()
    assert project.plan().status == PlanStatus.NO_CHANGES


def test_removing_a_tenant_is_refused_not_destroyed(applied: dict[str, Any]) -> None:
    project = applied["project"]
    project.write_clients(clients_file(CLIENT01, CLIENT03))  # client02 removed
    try:
        result = project.plan()
        assert result.status == PlanStatus.REFUSED
        assert statuses(result)["tenants/client02"] == StackStatus.ORPHANED
        assert [v.stack for v in result.violations] == ["tenants/client02"]
        summary = json.loads((result.plan_dir / "summary.json").read_text())
        assert summary["status"] == "refused"  # the refused plan is kept as an artifact

        cli = project.cli("plan", "--format", "markdown")
        assert cli.returncode == ExitCode.REFUSED, cli.stderr
        assert "Refused by the guard" in cli.stdout and "tenants/client02" in cli.stdout
        assert "[!CAUTION]" in cli.stdout
        again = project.cli("apply", "--auto-approve")
        assert again.returncode == ExitCode.REFUSED
        assert "refused by the guard" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        project.write_clients(clients_file(CLIENT01, CLIENT02, CLIENT03))
    assert project.workspace.local_state_file("tenants/client02").exists()


def test_deleting_a_cluster_is_refused(applied: dict[str, Any]) -> None:
    project = applied["project"]
    project.write_clients(clients_file(CLIENT01, CLIENT02, CLIENT03, spare=False))
    try:
        cli = project.cli("plan", "--format", "json")
        assert cli.returncode == ExitCode.REFUSED, cli.stderr
        document = json.loads(cli.stdout)
        assert document["status"] == "refused"
        cluster = next(s for s in document["stacks"] if s["stack"] == "cluster")
        assert cluster["status"] == "refused"
        assert [v["address"] for v in document["violations"]] == ['aws_rds_cluster.this["spare"]']
    finally:
        project.write_clients(clients_file(CLIENT01, CLIENT02, CLIENT03))


def test_guard_refuses_replacing_a_tenant_iam_role(applied: dict[str, Any]) -> None:
    """A template change that would replace client01's IAM role: the real plan says replace."""
    project = applied["project"]

    def render_with_renamed_role(model: Any, out_dir: Path, backup: dict[str, bytes | None]) -> None:
        render_stacks(model, out_dir, backup=backup)
        iam = out_dir / "tenants" / "client01" / "iam.tf"
        iam.write_text(iam.read_text().replace('"client01-access"', '"client01-access-v2"'))

    try:
        result = project.plan(render=render_with_renamed_role)
        assert result.status == PlanStatus.REFUSED
        violation = result.violations[0]
        assert (violation.stack, violation.address, violation.action) == (
            "tenants/client01", "aws_iam_role.access", "replace")
        with pytest.raises(RefusedError):
            project.apply()
    finally:
        render_stacks(__import__("tenantctl.model", fromlist=["load_model"]).load_model(project.clients),
                      project.workspace.stacks_dir)


def test_cli_reports_and_exit_codes(applied: dict[str, Any]) -> None:
    project = applied["project"]
    unchanged = project.cli("plan", "--format", "markdown", "--detailed-exitcode")
    assert unchanged.returncode == ExitCode.OK, unchanged.stderr
    assert unchanged.stdout == ""  # nothing to post on a pull request

    project.write_clients(clients_file(CLIENT01, CLIENT02, CLIENT03.replace("app = true", "app = true, b = true")
                                       .replace('"109.241.200.7/32"', '"109.241.200.7/32", "109.241.200.9/32"')))
    try:
        pending = project.cli("plan", "--detailed-exitcode", "--format", "json")
        assert pending.returncode == ExitCode.CHANGES, pending.stderr
        document = json.loads(pending.stdout)
        assert document["schema"] == "tenantctl.plan/v1"
        client03 = next(s for s in document["stacks"] if s["stack"] == "tenants/client03")
        assert [(c["address"], c["action"]) for c in client03["changes"]] == [("aws_iam_role.access", "update")]
        assert client03["changes"][0]["changed_attributes"] == ["assume_role_policy"]
        assert "plan…" in pending.stderr  # progress goes to stderr, the document alone to stdout
        text = project.cli("plan")
        assert text.returncode == ExitCode.OK
        assert "client03" in text.stdout and "aws_iam_role.access" in text.stdout
    finally:
        project.write_clients(clients_file(CLIENT01, CLIENT02, CLIENT03))


def test_no_secret_in_artifacts_or_output(applied: dict[str, Any]) -> None:
    project = applied["project"]
    password = master_password_file(project.workspace.state_dir).read_text().strip()
    assert len(password) >= 20
    checked = 0
    for path in project.workspace.plans_dir.rglob("*"):
        if path.is_file() and path.suffix != ".tfplan":
            assert password not in path.read_text(errors="replace"), path
            checked += 1
    assert checked > 10
    for stack in ("cluster", "tenants/client01"):
        for path in (project.root / "stacks" / stack).iterdir():
            assert password not in path.read_text()
    cli = project.cli("plan", "--all", "--format", "json")
    assert password not in cli.stdout and password not in cli.stderr
