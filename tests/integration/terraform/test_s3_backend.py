"""The S3 backend with DynamoDB locking, against moto: a lock held by another run, and Ctrl-C."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from tenantctl.aws.session import client
from tenantctl.errors import ExitCode
from tenantctl.terraform.pipeline import PlanStatus, StackStatus

pytestmark = [pytest.mark.terraform, pytest.mark.slow]

BUCKET = "tenantctl-state"
TABLE = "tenantctl-locks"
CLIENTS = f"""
settings = {{
  region  = "eu-west-1"
  target  = "local"
  backend = {{ kind = "s3", bucket = "{BUCKET}", dynamodb_table = "{TABLE}", region = "eu-west-1" }}
}}
clusters = {{
  main = {{ min_acu = 0.5, max_acu = 4 }}
}}
clients = [
  {{ name = "s3client", databases = {{ db1 = true }}, allowed_ips = ["109.241.201.1/32"], rds_iam_auth = true }},
]
"""
CLUSTER_LOCK_ID = f"{BUCKET}/tenantctl/cluster.tfstate"


@pytest.fixture(scope="module")
def project(make_project: Any) -> Any:
    return make_project("s3", CLIENTS)


def lock_items(project: Any) -> list[dict[str, Any]]:
    dynamodb = client(project.environment().target, "dynamodb")
    items = dynamodb.scan(TableName=TABLE).get("Items", [])
    return [item for item in items if not item["LockID"]["S"].endswith("-md5")]


def test_a_lock_held_by_another_run_is_refused_naming_the_holder(project: Any) -> None:
    target = project.environment().target  # starts moto and creates the bucket and table
    holder = {"ID": "0b7e2d4c-1111-4222-8333-444455556666", "Operation": "OperationTypeApply",
              "Info": "", "Who": "alice@ci-runner-7", "Version": "1.0.3",
              "Created": "2026-11-23T09:00:00Z", "Path": CLUSTER_LOCK_ID}
    dynamodb = client(target, "dynamodb")
    dynamodb.put_item(TableName=TABLE, Item={"LockID": {"S": CLUSTER_LOCK_ID}, "Info": {"S": json.dumps(holder)}})
    try:
        result = project.plan(lock_timeout="2s")
        cluster = result.stacks[0]
        assert (cluster.stack, cluster.status, cluster.locked) == ("cluster", StackStatus.ERRORED, True)
        assert "alice@ci-runner-7" in (cluster.error or "")
        cli = project.cli("plan", "--lock-timeout", "2s")
        assert cli.returncode == ExitCode.REFUSED, cli.stderr
        assert "alice@ci-runner-7" in cli.stdout + cli.stderr
    finally:
        dynamodb.delete_item(TableName=TABLE, Key={"LockID": {"S": CLUSTER_LOCK_ID}})


def test_ctrl_c_during_apply_leaves_no_stale_lock(project: Any) -> None:
    result = project.plan()
    assert result.status == PlanStatus.CHANGES and result.stacks[0].status == StackStatus.CHANGES
    rds = client(project.environment().target, "rds")
    process = project.cli_popen("apply", "--auto-approve")
    try:
        deadline = time.monotonic() + 120
        # Interrupt while the provider waits on the cluster create (moto: ~30 s): the lock is held then.
        while not rds.describe_db_clusters().get("DBClusters"):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "apply never reached the cluster create"
            time.sleep(0.2)
        assert [item["LockID"]["S"] for item in lock_items(project)] == [CLUSTER_LOCK_ID]
        process.send_signal(signal.SIGINT)
        _stdout, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert lock_items(project) == []
    s3 = client(project.environment().target, "s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert "tenantctl/cluster.tfstate" in keys
    # The interrupted plan cannot be applied again, and a new plan runs (no lock left behind).
    again = project.cli("apply", "--auto-approve")
    assert again.returncode == ExitCode.REFUSED, again.stderr
    replan = project.plan(lock_timeout="2s")
    assert replan.stacks[0].status in (StackStatus.CHANGES, StackStatus.NO_CHANGES), replan.stacks[0].error


def test_plan_history_is_copied_to_the_bucket_and_verified_from_there(project: Any) -> None:
    s3 = client(project.environment().target, "s3")

    def keys() -> set[str]:
        return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="tenantctl/plans/").get("Contents", [])}

    planned = project.plan()
    assert f"tenantctl/plans/{planned.plan_id}/summary.json" in keys()
    assert not any(key.endswith((".tfplan", ".plan.json")) for key in keys()), "plan files stay local"
    project.apply()
    assert "tenantctl/plans/applied.log" in keys()
    listed = json.loads(project.cli("plans", "list", "--from-s3", "-f", "json").stdout)["plans"]
    applied = next(p for p in listed if p["plan_id"] == planned.plan_id)["applied"]
    assert applied["event"] == "apply-finished" and applied["status"] == "applied"
    assert project.cli("plans", "verify", "--from-s3").returncode == 0

    log_key = "tenantctl/plans/applied.log"
    original = s3.get_object(Bucket=BUCKET, Key=log_key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=log_key, Body=original.replace(b'"status":"applied"', b'"status":"x"'))
    try:
        tampered = project.cli("plans", "verify", "--from-s3")
        assert tampered.returncode == ExitCode.BREACH and "was edited" in tampered.stdout, tampered.stdout
    finally:
        s3.put_object(Bucket=BUCKET, Key=log_key, Body=original)
    assert project.cli("plans", "verify").returncode == 0, "the local copy was never touched"
