"""Fast tests of the workflow's pure logic: placement pinning, ledger runs, purge retention, onboard
rollback. The real flow runs in tests/e2e/test_lifecycle.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tenantctl.errors import InputError, TenantctlError
from tenantctl.model import model_from_text
from tenantctl.model.edit import TenantBlock
from tenantctl.model.placement import place
from tenantctl.workflow import offboard as offboard_module
from tenantctl.workflow import onboard as onboard_module
from tenantctl.workflow.ledger import Ledger

CLIENTS = """\
# a comment that must survive
settings = { target = "local" }

clusters = {
  shared-01 = { min_acu = 0.5, max_acu = 16 }
  shared-02 = { min_acu = 0.5, max_acu = 16 }
  vip       = { min_acu = 2, max_acu = 64, dedicated = true }
}

clients = [
  { name = "client01", databases = { db1 = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false },
]
"""


def block(name: str = "newco", **overrides: object) -> TenantBlock:
    fields: dict[str, object] = {"name": name, "databases": ("db1",), "allowed_ips": ("127.0.0.1/32",),
                                 "rds_iam_auth": False}
    fields.update(overrides)
    return TenantBlock(**fields)  # type: ignore[arg-type]


def test_placement_is_pinned_to_a_shared_cluster() -> None:
    model = model_from_text(CLIENTS)
    pinned = onboard_module.pin_placement(model, block())
    assert pinned.cluster == place("newco", ["shared-01", "shared-02"])
    assert pinned.cluster != "vip"


def test_an_unknown_cluster_is_refused() -> None:
    with pytest.raises(InputError, match="no cluster named 'nope'"):
        onboard_module.pin_placement(model_from_text(CLIENTS), block(cluster="nope"))


def test_duplicate_name_is_refused_and_nothing_written(tmp_path: Path) -> None:
    clients = tmp_path / "clients.tfvars"
    clients.write_text(CLIENTS)
    with pytest.raises(InputError, match="already exists"):
        onboard_module.onboard(tmp_path, clients, block("client01", databases=("other",)))
    assert clients.read_text() == CLIENTS


def test_invalid_block_is_refused_before_writing(tmp_path: Path) -> None:
    clients = tmp_path / "clients.tfvars"
    clients.write_text(CLIENTS)
    with pytest.raises(InputError, match="NAME 'Bad-Name'"):  # each argument checked before any edit
        onboard_module.onboard(tmp_path, clients, block("Bad-Name"))
    assert clients.read_text() == CLIENTS


def test_failed_plan_rolls_the_file_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clients = tmp_path / "clients.tfvars"
    clients.write_text(CLIENTS)
    seen: list[str] = []

    def failing_plan(root: Path, model: object, timings: object, progress: object) -> object:
        seen.append(clients.read_text())
        raise TenantctlError("terraform exploded")

    monkeypatch.setattr(onboard_module, "_plan", failing_plan)
    with pytest.raises(TenantctlError, match="exploded"):
        onboard_module.onboard(tmp_path, clients, block())
    assert 'name         = "newco"' in seen[0], "the block was in the file while planning"
    assert seen[0].startswith(CLIENTS.split("]")[0].rstrip("\n")), "other bytes unchanged"
    assert clients.read_text() == CLIENTS


def test_rerun_with_the_same_block_resumes_instead_of_refusing(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    clients = tmp_path / "clients.tfvars"
    text = CLIENTS.replace("]\n", '  { name = "newco", databases = { db1 = true }, allowed_ips = ["127.0.0.1/32"], '
                                  'rds_iam_auth = false, cluster = "shared-02" },\n]\n')
    clients.write_text(text)

    def failing_plan(root: Path, model: object, timings: object, progress: object) -> object:
        raise TenantctlError("stop here")

    monkeypatch.setattr(onboard_module, "_plan", failing_plan)
    with pytest.raises(TenantctlError, match="stop here"):
        onboard_module.onboard(tmp_path, clients, block())
    assert clients.read_text() == text, "a resumed onboarding never removes the block"


def record_run(ledger: Ledger, tenant: str, run: str, *steps: str, retain_days: int = 0) -> None:
    ledger.record(tenant, offboard_module.STARTED, run=run, block={
        "name": tenant, "databases": ["db1"], "allowed_ips": ["127.0.0.1/32"], "rds_iam_auth": False,
        "cluster": "shared-01"}, databases={f"{tenant}_db1": f"{tenant}_db1__archived_20260101"},
        cluster="shared-01", login_role=tenant, owner_role=f"{tenant}_owner", archive="archive",
        retain_days=retain_days)
    for step in steps:
        ledger.record(tenant, step, run=run)


def test_runs_and_their_state_come_from_the_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "offboarding.jsonl")
    record_run(ledger, "a", "r1", offboard_module.ROUTING_REVOKED)
    record_run(ledger, "b", "r2", offboard_module.COMPLETED)
    record_run(ledger, "c", "r3", offboard_module.COMPLETED, offboard_module.RESTORE_STARTED,
               offboard_module.RESTORE_COMPLETED)
    states = {run.tenant: run.state for run in offboard_module.runs(ledger)}
    assert states == {"a": "offboarding", "b": "offboarded", "c": "restored"}
    run = offboard_module.latest_run(ledger, "b")
    assert run is not None and run.block.cluster == "shared-01"
    assert run.databases == {"b_db1": "b_db1__archived_20260101"}


def test_purge_keeps_archives_within_retention(tmp_path: Path) -> None:
    clients = tmp_path / "clients.tfvars"
    clients.write_text(CLIENTS)
    ledger = Ledger(tmp_path / offboard_module.LEDGER_FILE)
    record_run(ledger, "b", "r2", offboard_module.COMPLETED, retain_days=30)
    now = datetime.now(UTC) + timedelta(days=10)
    outcomes = offboard_module.purge(tmp_path, clients, older_than_days=5, now=now)
    assert [(o.tenant, o.purged) for o in outcomes] == [("b", [])]
    assert outcomes[0].skipped is not None and "retention 30" in outcomes[0].skipped
    outcomes = offboard_module.purge(tmp_path, clients, older_than_days=20, now=now)
    assert outcomes[0].skipped is not None and "--older-than 20" in outcomes[0].skipped


def test_offboard_of_an_unknown_tenant_changes_nothing(tmp_path: Path) -> None:
    clients = tmp_path / "clients.tfvars"
    clients.write_text(CLIENTS)
    with pytest.raises(InputError, match="no tenant named 'ghost'"):
        offboard_module.offboard(tmp_path, clients, "ghost")
    assert clients.read_text() == CLIENTS
    assert not (tmp_path / offboard_module.LEDGER_FILE).exists()


def test_restore_of_a_tenant_never_offboarded_is_refused(tmp_path: Path) -> None:
    clients = tmp_path / "clients.tfvars"
    clients.write_text(CLIENTS)
    with pytest.raises(InputError, match="never offboarded"):
        offboard_module.restore(tmp_path, clients, "client01")


def test_the_ledger_block_pins_the_cluster_and_omits_the_default_tier() -> None:
    model = model_from_text(CLIENTS.replace('rds_iam_auth = false }', 'rds_iam_auth = false, tier = "basic" }'))
    plain = model_from_text(CLIENTS)
    tenant = plain.tenants[0]
    saved = offboard_module._block_of(plain, tenant)
    assert saved.cluster == tenant.cluster and saved.tier is None
    assert offboard_module._block_of(model, model.tenants[0]).tier == "basic"


def test_clusters_of_the_aws_target_resolve_from_the_applied_outputs_and_start_nothing(tmp_path: Path) -> None:
    from tenantctl.errors import BackendError
    from tenantctl.workflow.clusters import cluster_resolver

    model = model_from_text(CLIENTS.replace('target = "local"', 'target = "aws"'))
    resolver = cluster_resolver(model, tmp_path)  # no local server, no moto
    with pytest.raises(BackendError, match="no endpoint recorded") as refused:
        resolver.resolve(model.clusters[0].name)
    assert "tenantctl apply" in (refused.value.hint or "")
    assert not any(tmp_path.iterdir())  # nothing started, nothing written
