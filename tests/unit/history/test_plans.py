"""Plan history over a plans directory: records, verify against the plans, diff, prune."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tenantctl.errors import InputError
from tenantctl.history.chain import LOG_FILE
from tenantctl.history.plans import (
    diff_documents,
    list_plans,
    prune,
    record_apply,
    resolve_plan_id,
    show_plan,
    verify,
)


def _document(plan_id: str, rows: list[tuple[str | None, str, str]], sha: str = "aa") -> dict[str, Any]:
    return {
        "schema": "tenantctl.plan/v1", "plan_id": plan_id, "status": "changes", "artifacts": "",
        "inputs": {"clients_sha256": sha, "tenantctl_version": "1", "terraform_version": "1.0.3",
                   "target": "local", "backend": "local", "all_stacks": False},
        "totals": {"create": 0, "update": 0, "delete": 0, "replace": 0}, "stacks": [], "violations": [],
        "sections": [{"name": "routing", "error": None,
                      "items": [{"tenant": t, "action": a, "object": o, "detail": None} for t, a, o in rows]}],
    }


def _plan(plans: Path, plan_id: str, rows: list[tuple[str | None, str, str]], status: str = "changes") -> Path:
    plan_dir = plans / plan_id
    plan_dir.mkdir(parents=True)
    (plan_dir / "manifest.json").write_text(json.dumps({
        "plan_id": plan_id, "created_at": 1_800_000_000, "status": status, "target": "local",
        "clients_sha256": "aa", "clients_file": "clients.tfvars", "stacks": [{"plan_file": "cluster.tfplan"}]}))
    (plan_dir / "summary.json").write_text(json.dumps(_document(plan_id, rows)))
    (plan_dir / "cluster.tfplan").write_bytes(b"x" * 100)
    (plan_dir / "cluster.plan.json").write_text("{}")
    (plans / "LATEST").write_text(plan_id + "\n")
    return plan_dir


def _applied(plans: Path, plan_id: str, rows: list[tuple[str | None, str, str]]) -> Path:
    plan_dir = _plan(plans, plan_id, rows)
    record_apply(plans, plan_id, "apply-started")
    manifest = json.loads((plan_dir / "manifest.json").read_text())
    (plan_dir / "manifest.json").write_text(json.dumps({**manifest, "status": "applied"}))
    record_apply(plans, plan_id, "apply-finished", status="applied")
    return plan_dir


@pytest.fixture()
def plans(tmp_path: Path) -> Path:
    directory = tmp_path / "plans"
    _applied(directory, "20261201T000000Z-aaaaaa", [("client01", "route-add", "route client01/db1")])
    _plan(directory, "20261202T000000Z-bbbbbb", [("client01", "route-remove", "route client01/db2")])
    _applied(directory, "20261203T000000Z-cccccc", [("client02", "route-add", "route client02/app")])
    return directory


def test_an_untouched_history_verifies(plans: Path) -> None:
    report = verify(plans)
    assert report.ok, report.problems
    assert (report.records, report.plans) == (4, 3)


def test_list_shows_who_applied_what(plans: Path) -> None:
    entries = {e.plan_id: e for e in list_plans(plans)}
    applied = entries["20261201T000000Z-aaaaaa"].applied
    assert applied is not None and applied["status"] == "applied" and applied["actor"]["user"]
    assert entries["20261202T000000Z-bbbbbb"].applied is None
    assert entries["20261202T000000Z-bbbbbb"].attention == 1  # a route removal


def test_deleting_the_newest_records_is_caught_by_the_plans_anchor(plans: Path) -> None:
    log = plans / LOG_FILE
    lines = log.read_text().splitlines()
    log.write_text("".join(line + "\n" for line in lines[:-2]))  # the chain alone still looks fine
    report = verify(plans)
    assert not report.ok
    assert any("20261203T000000Z-cccccc" in p.message and "missing from the log" in p.message
               for p in report.problems), report.problems


def test_deleting_the_log_of_an_applied_plan_is_caught(plans: Path) -> None:
    (plans / LOG_FILE).unlink()
    (plans / "20261201T000000Z-aaaaaa" / "audit.json").unlink()
    (plans / "20261203T000000Z-cccccc" / "audit.json").unlink()
    report = verify(plans)
    assert any("is applied but the log has no record" in p.message for p in report.problems)


def test_editing_an_applied_plans_summary_is_caught(plans: Path) -> None:
    summary = plans / "20261201T000000Z-aaaaaa" / "summary.json"
    document = json.loads(summary.read_text())
    document["sections"][0]["items"] = []  # pretend the reviewer saw nothing
    summary.write_text(json.dumps(document))
    report = verify(plans)
    assert any("differs from what was applied" in p.message for p in report.problems)


def test_removing_an_applied_plans_directory_is_caught(plans: Path) -> None:
    import shutil

    shutil.rmtree(plans / "20261201T000000Z-aaaaaa")
    assert any("whose directory is gone" in p.message for p in verify(plans).problems)


def test_an_unfinished_apply_is_a_warning_not_tampering(plans: Path) -> None:
    _plan(plans, "20261204T000000Z-dddddd", [])
    record_apply(plans, "20261204T000000Z-dddddd", "apply-started")
    report = verify(plans)
    assert report.ok and any("never finished" in w for w in report.warnings)


def test_diff_shows_what_each_plan_proposes_per_tenant() -> None:
    old = _document("a", [("client01", "route-add", "route client01/db1"), ("client02", "create", "x")])
    new = _document("b", [("client01", "route-remove", "route client01/db2"), ("client02", "create", "x")],
                    sha="bb")
    difference = diff_documents(old, new)
    assert not difference["identical"]
    assert list(difference["tenants"]) == ["client01"]
    assert difference["tenants"]["client01"]["added"] == [
        {"source": "routing", "action": "route-remove", "address": "route client01/db2", "detail": ""}]
    assert difference["tenants"]["client01"]["removed"][0]["address"] == "route client01/db1"
    assert difference["inputs"] == {"clients_sha256": {"old": "aa", "new": "bb"}}
    assert diff_documents(old, {**old, "plan_id": "c"})["identical"]


def test_prune_trims_applied_plans_and_removes_the_others(plans: Path) -> None:
    _plan(plans, "20261204T000000Z-dddddd", [])  # newest, never applied
    report = prune(plans, 1)
    assert report.removed == ["20261202T000000Z-bbbbbb"]
    assert sorted(report.trimmed) == ["20261201T000000Z-aaaaaa", "20261203T000000Z-cccccc"]
    assert not (plans / "20261202T000000Z-bbbbbb").exists()
    old = plans / "20261201T000000Z-aaaaaa"
    assert not list(old.glob("*.tfplan")) and not list(old.glob("*.plan.json"))
    assert (old / "summary.json").exists() and (old / "audit.json").exists()
    assert verify(plans).ok, "pruning keeps what verify needs"
    assert show_plan(plans, "20261201").entry.pruned
    assert (plans / "20261204T000000Z-dddddd" / "cluster.tfplan").exists()


def test_prune_dry_run_removes_nothing_and_keep_zero_is_refused(plans: Path) -> None:
    before = sorted(str(p) for p in plans.rglob("*"))
    report = prune(plans, 1, dry_run=True)
    assert report.removed and sorted(str(p) for p in plans.rglob("*")) == before
    with pytest.raises(InputError):
        prune(plans, 0)


def test_plan_references(plans: Path) -> None:
    assert resolve_plan_id(plans, "latest") == "20261203T000000Z-cccccc"
    assert resolve_plan_id(plans, "20261202") == "20261202T000000Z-bbbbbb"
    with pytest.raises(InputError, match="ambiguous"):
        resolve_plan_id(plans, "2026120")
    with pytest.raises(InputError, match="no plan"):
        resolve_plan_id(plans, "nope")
