"""The routing map as part of the reviewed plan: what the apply will change for the proxy, and the
cluster moves it must refuse.

``apply`` rewrites the routing map from the clients file. A reviewer must see that change (a database
that stops being reachable, a tenant re-pointed) before merging, and ``plan --detailed-exitcode`` must
count it: after a crash between an apply and the map's write, the only pending change is the map.
The diff is pure (``route_changes``); the section reads the map on disk and the clusters' endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tenantctl.errors import RefusedError, TenantctlError
from tenantctl.model.desired import desired_state
from tenantctl.model.types import Model
from tenantctl.routing.build import Endpoint, tenant_routes
from tenantctl.routing.document import ClusterRoute, RoutingMap, TenantRoute
from tenantctl.routing.store import read_previous
from tenantctl.terraform import pipeline

# Actions that cut a tenant's access through the proxy or send it somewhere else: shown loudly.
ACCESS_CUT = "route-remove"
REPOINT = "route-repoint"
LOUD_ACTIONS = frozenset({ACCESS_CUT, REPOINT})


def route_changes(before: RoutingMap | None, after: dict[str, TenantRoute],
                  endpoints: dict[str, Endpoint] | None = None) -> list[pipeline.SectionItem]:
    """What writing ``after`` over ``before`` changes for clients of the proxy, per tenant."""
    items: list[pipeline.SectionItem] = []
    old_tenants = before.tenants if before else {}
    for role in sorted(set(old_tenants) | set(after)):
        old, new = old_tenants.get(role), after.get(role)
        if old is None and new is not None:
            dbs = ", ".join(f"{logical} -> {physical}" for logical, physical in sorted(new.databases.items()))
            items.append(pipeline.SectionItem(new.tenant, "route-add", f"route {role} to cluster {new.cluster}",
                                              dbs))
        elif new is None and old is not None:
            items.append(pipeline.SectionItem(
                old.tenant, ACCESS_CUT, f"route {role} removed",
                "the tenant can no longer connect through the proxy"))
        elif old is not None and new is not None:
            items += _tenant_changes(role, old, new)
    if before is not None and endpoints:
        for name in sorted(set(before.clusters) & set(endpoints)):
            was, now = before.clusters[name], endpoints[name]
            if (was.host, was.port, was.tls, was.hostaddr) != (now.host, now.port, now.tls, now.hostaddr):
                items.append(pipeline.SectionItem(
                    None, REPOINT, f"cluster {name} endpoint {_where(was)} -> {now.host}:{now.port}",
                    "every tenant on it is sent to the new endpoint"))
    return items


def _where(route: ClusterRoute) -> str:
    return f"{route.host}:{route.port}"


def _tenant_changes(role: str, old: TenantRoute, new: TenantRoute) -> list[pipeline.SectionItem]:
    items: list[pipeline.SectionItem] = []
    tenant = new.tenant
    if old.cluster != new.cluster:
        items.append(pipeline.SectionItem(tenant, REPOINT, f"route {role}: cluster {old.cluster} -> {new.cluster}",
                                          "the tenant's connections go to another cluster"))
    for logical in sorted(set(old.databases) | set(new.databases)):
        was, now = old.databases.get(logical), new.databases.get(logical)
        if was == now:
            continue
        if now is None:
            items.append(pipeline.SectionItem(
                tenant, ACCESS_CUT, f"route {role}/{logical} removed",
                f"{was} is no longer reachable through the proxy (the database itself is kept)"))
        elif was is None:
            items.append(pipeline.SectionItem(tenant, "route-add", f"route {role}/{logical} -> {now}"))
        else:
            items.append(pipeline.SectionItem(tenant, REPOINT, f"route {role}/{logical}: {was} -> {now}",
                                              "the logical name now opens another database"))
    if old.allowed_cidrs != new.allowed_cidrs:
        items.append(pipeline.SectionItem(tenant, "route-update", f"route {role}: allowed addresses",
                                          f"{', '.join(old.allowed_cidrs)} -> {', '.join(new.allowed_cidrs)}"))
    if old.max_connections != new.max_connections:
        items.append(pipeline.SectionItem(tenant, "route-update", f"route {role}: proxy connection limit",
                                          f"{old.max_connections} -> {new.max_connections}"))
    return items


def unsupported_moves(before: RoutingMap | None, model: Model) -> list[str]:
    """Tenants the clients file places on another cluster than the one they are routed to (and hold
    their data on). Applying that would create empty databases there and route the tenant to them."""
    if before is None:
        return []
    routed = {route.tenant: route.cluster for route in before.tenants.values()}
    problems = []
    for tenant in model.tenants:
        was = routed.get(tenant.name)
        if was is None or was == tenant.cluster:
            continue
        why = "" if tenant.cluster_pinned else " (it has no `cluster` pin: the shared clusters changed)"
        problems.append(
            f"tenant {tenant.name!r} is routed to cluster {was!r}, where its data is, but the clients file now "
            f"places it on {tenant.cluster!r}{why}: the apply would create empty databases there and send the "
            f"tenant to them. This is a move: run `tenantctl move {tenant.name} --to {tenant.cluster} "
            f'--proxy-socket PATH` (it copies the data live, then pins the file), or set `cluster = "{was}"` '
            "in its block to keep it where it is")
    return problems


def refuse_unsupported_moves(routes_file: Path, model: Model) -> None:
    problems = unsupported_moves(read_previous(routes_file), model)
    if problems:
        raise RefusedError("refused before planning anything:\n  " + "\n  ".join(problems))


@dataclass
class RoutingSection:
    """The routing-map diff as a section of the plan (``pipeline.SectionPlanner``)."""

    root: Path
    routes_file: Path
    name: str = "routing"

    def plan(self, model: Model, plan_dir: Path) -> pipeline.Section:
        from tenantctl.workflow.deploy import cluster_endpoints

        before = read_previous(self.routes_file)
        try:
            endpoints: dict[str, Endpoint] | None = cluster_endpoints(self.root, model)
        except (TenantctlError, KeyError):
            endpoints = None  # a cluster not applied yet: its endpoint is known after the apply
        changes = route_changes(before, tenant_routes(desired_state(model)), endpoints)
        return pipeline.Section(self.name, items=tuple(changes))
