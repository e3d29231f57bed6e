"""Placement of tenants that name no cluster: deterministic and stable when tenants are added."""

from __future__ import annotations

from tenantctl.model import model_from_text
from tenantctl.model.placement import place

HEAD = "clusters = {\n  shared-01 = {}\n  shared-02 = {}\n  shared-03 = {}\n}\n"


def tenants(names: list[str]) -> str:
    body = "".join(f'  {{ name = "{n}", databases = {{ app = true }}, allowed_ips = ["3.3.3.3/32"] }},\n'
                   for n in names)
    return HEAD + "clients = [\n" + body + "]\n"


def test_adding_tenants_never_moves_existing_ones() -> None:
    names = [f"t{i:03d}" for i in range(200)]
    before = {t.name: t.cluster for t in model_from_text(tenants(names)).tenants}
    grown = names[:100] + [f"new{i}" for i in range(50)] + names[100:]
    after = {t.name: t.cluster for t in model_from_text(tenants(grown)).tenants}
    assert all(after[name] == cluster for name, cluster in before.items())


def test_removing_or_reordering_tenants_never_moves_others() -> None:
    names = [f"t{i:03d}" for i in range(100)]
    before = {t.name: t.cluster for t in model_from_text(tenants(names)).tenants}
    after = {t.name: t.cluster for t in model_from_text(tenants(list(reversed(names[::2])))).tenants}
    assert all(before[name] == cluster for name, cluster in after.items())


def test_placement_spreads_over_shared_clusters() -> None:
    model = model_from_text(tenants([f"t{i:03d}" for i in range(300)]))
    counts = {c.name: len(model.tenants_on(c.name)) for c in model.clusters}
    assert all(60 <= n <= 140 for n in counts.values()), counts


def test_place_is_pure() -> None:
    assert place("x", ["b", "a"]) == place("x", ["a", "b"])
    assert place("x", []) is None
