"""The routing map's part of the reviewed plan: its diff, and the cluster moves that are refused (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantctl.errors import RefusedError
from tenantctl.model import model_from_text
from tenantctl.render.snapshot import restore_backup
from tenantctl.routing.build import Endpoint
from tenantctl.routing.document import ClusterRoute, RoutingMap, TenantRoute, seal
from tenantctl.routing.store import write_map
from tenantctl.workflow.route_plan import refuse_unsupported_moves, route_changes, unsupported_moves

BEFORE = seal(RoutingMap(3, "2026-12-01T00:00:00Z", {"c1": ClusterRoute("10.0.0.1", 5432)}, {
    "client01": TenantRoute("client01", "c1", {"db1": "client01_db1", "db2": "client01_db2"}, ("1.2.3.4/32",), 20),
    "client02": TenantRoute("client02", "c1", {"db1": "client02_db1"}, ("1.2.3.4/32",), 20),
}))


def actions(items: list[object]) -> list[tuple[str | None, str, str]]:
    return [(i.tenant, i.action, i.object) for i in items]  # type: ignore[attr-defined]


def test_a_disabled_database_is_an_access_cut_and_nothing_else_changes() -> None:
    after = dict(BEFORE.tenants)
    after["client01"] = TenantRoute("client01", "c1", {"db1": "client01_db1"}, ("1.2.3.4/32",), 20)
    (item,) = route_changes(BEFORE, after)
    assert (item.tenant, item.action, item.object) == ("client01", "route-remove", "route client01/db2 removed")
    assert "client01_db2 is no longer reachable" in item.detail
    assert route_changes(BEFORE, dict(BEFORE.tenants)) == []


def test_added_removed_repointed_and_updated_routes() -> None:
    after = {
        "client01": TenantRoute("client01", "c1", {"db1": "other_db", "db2": "client01_db2", "db3": "client01_db3"},
                                ("1.2.3.4/32", "5.6.7.8/32"), 50),
        "client03": TenantRoute("client03", "c1", {"app": "client03_app"}, ("1.2.3.4/32",), 20),
    }
    assert actions(route_changes(BEFORE, after)) == [
        ("client01", "route-repoint", "route client01/db1: client01_db1 -> other_db"),
        ("client01", "route-add", "route client01/db3 -> client01_db3"),
        ("client01", "route-update", "route client01: allowed addresses"),
        ("client01", "route-update", "route client01: proxy connection limit"),
        ("client02", "route-remove", "route client02 removed"),
        ("client03", "route-add", "route client03 to cluster c1"),
    ]


def test_a_missing_map_makes_every_tenant_a_route_to_add_and_endpoint_moves_are_shown() -> None:
    assert [i.action for i in route_changes(None, dict(BEFORE.tenants))] == ["route-add", "route-add"]
    (item,) = route_changes(BEFORE, dict(BEFORE.tenants), {"c1": Endpoint("10.0.0.9", 5432)})
    assert item.action == "route-repoint" and item.object == "cluster c1 endpoint 10.0.0.1:5432 -> 10.0.0.9:5432"


CLIENTS = """
clusters = {
  c1 = {}
  c2 = {}
}
clients = [
  { name = "client01", databases = { db1 = true, db2 = true }, allowed_ips = ["1.2.3.4/32"], cluster = "%s" },
  { name = "client02", databases = { db1 = true }, allowed_ips = ["1.2.3.4/32"], cluster = "c1" },
]
"""


def test_a_changed_pin_is_a_move_and_is_refused(tmp_path: Path) -> None:
    assert unsupported_moves(BEFORE, model_from_text(CLIENTS % "c1", "clients.tfvars")) == []
    moved = model_from_text(CLIENTS % "c2", "clients.tfvars")
    (problem,) = unsupported_moves(BEFORE, moved)
    assert "'client01' is routed to cluster 'c1'" in problem and "places it on 'c2'" in problem
    assert 'set `cluster = "c1"`' in problem
    routes = tmp_path / "routes.json"
    refuse_unsupported_moves(routes, moved)  # no map yet: nothing is routed, nothing can move
    write_map(routes, BEFORE)
    with pytest.raises(RefusedError, match="tenantctl move"):
        refuse_unsupported_moves(routes, moved)


def test_a_refused_plan_puts_stacks_back_byte_for_byte(tmp_path: Path) -> None:
    from tenantctl.render import render_stacks

    stacks = tmp_path / "stacks"
    render_stacks(model_from_text(CLIENTS % "c1", "clients.tfvars"), stacks)
    (stacks / "tenants" / "client01" / "notes.txt").write_text("not rendered\n")

    def files() -> dict[str, bytes]:
        return {str(p.relative_to(stacks)): p.read_bytes() for p in sorted(stacks.rglob("*")) if p.is_file()}

    before = files()
    backup: dict[str, bytes | None] = {}
    changed = CLIENTS.replace('{ name = "client02"', '{ name = "client03", databases = { db1 = true }, '
                              'allowed_ips = ["1.2.3.4/32"] },\n  { name = "client02"').replace('"c1" },', '"c2" },', 1)
    render_stacks(model_from_text(changed % "c2", "clients.tfvars"), stacks, backup=backup)
    assert files() != before and any(value is None for value in backup.values())
    assert "tenants/client03/iam.tf" in backup and backup["tenants/client03/iam.tf"] is None
    restore_backup(stacks, backup)
    assert files() == before
    assert not (stacks / "tenants" / "client03").exists()


def test_an_offboarded_tenants_stack_is_removed_and_nothing_else(tmp_path: Path) -> None:
    from tenantctl.render.snapshot import remove_stack

    stacks = tmp_path / "stacks"
    for tenant in ("gone", "kept"):
        (stacks / "tenants" / tenant).mkdir(parents=True)
        (stacks / "tenants" / tenant / "main.tf").write_text(tenant)
    assert remove_stack(stacks, "tenants/gone") == ["tenants/gone/main.tf"]
    assert not (stacks / "tenants" / "gone").exists() and (stacks / "tenants" / "kept" / "main.tf").exists()
    assert remove_stack(stacks, "tenants/gone") == []  # a rerun after a crash
