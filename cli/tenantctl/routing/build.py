"""Build a routing map from the desired state and the clusters' endpoints (pure, deterministic)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from tenantctl.errors import InputError
from tenantctl.model.desired import DesiredState
from tenantctl.routing.document import (
    NO_TLS,
    TLS_MODES,
    ClusterRoute,
    ClusterTls,
    RoutingMap,
    TenantRoute,
    seal,
)


class Endpoint(NamedTuple):
    """Where a cluster's writer accepts connections (Terraform output or a local server)."""

    host: str
    port: int
    tls: ClusterTls = NO_TLS
    reader_host: str | None = None
    hostaddr: str | None = None  # dial this IP, verify TLS against host (a tunnel; the local target's server)


def build_routing_map(
    desired: DesiredState,
    endpoints: Mapping[str, Endpoint],
    *,
    now: datetime,
    previous: RoutingMap | None = None,
) -> RoutingMap:
    """The routing map for ``desired``; continues ``previous``'s serial.

    Same content as ``previous``: ``previous`` itself is returned (serial and timestamp unchanged).
    Changed content: serial ``previous.serial + 1`` (or 1 for a first map), generated at ``now``.
    Only clusters that hold tenants must have an endpoint; every cluster of the model that has one
    is listed.
    """
    missing = sorted({state.cluster for state in desired.tenants} - set(endpoints))
    if missing:
        raise InputError(
            f"no endpoint for cluster(s) {', '.join(missing)}",
            hint="pass --endpoints FILE.json with {cluster: {host, port}} for every cluster holding tenants",
        )
    cluster_names = sorted({c.name for c in desired.model.clusters} | {s.cluster for s in desired.tenants})
    clusters = {
        name: ClusterRoute(endpoints[name].host, endpoints[name].port, endpoints[name].tls,
                           endpoints[name].reader_host, endpoints[name].hostaddr)
        for name in cluster_names
        if name in endpoints
    }
    tenants = tenant_routes(desired)
    candidate = RoutingMap(serial=1, generated_at=rfc3339(now), clusters=clusters, tenants=tenants)
    if previous is not None:
        if previous.same_content(candidate):
            return previous
        candidate = RoutingMap(previous.serial + 1, candidate.generated_at, clusters, tenants)
    return seal(candidate)


def tenant_routes(desired: DesiredState) -> dict[str, TenantRoute]:
    """Each tenant's route (keyed by its login role, sorted): what the map says apart from endpoints."""
    tenants: dict[str, TenantRoute] = {}
    for state in desired.tenants:
        tier = desired.model.tier(state.tenant.tier)
        tenants[state.login_role.name] = TenantRoute(
            tenant=state.name,
            cluster=state.cluster,
            databases={db.logical: db.name for db in state.databases},
            allowed_cidrs=tuple(state.iam.allowed_ips),
            max_connections=tier.proxy_max_connections,
        )
    return dict(sorted(tenants.items()))


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def endpoints_from_json(document: Any, source: str) -> dict[str, Endpoint]:
    """Parse an endpoints file:
    ``{cluster: {"host", "port", "tls"?: {"mode", "ca_file"?}, "reader_host"?, "hostaddr"?}}``."""
    if not isinstance(document, dict):
        raise InputError(f"{source}: must be a JSON object of cluster -> {{host, port}}")
    endpoints: dict[str, Endpoint] = {}
    for name, entry in document.items():
        where = f"{source}: {name}"
        if not isinstance(entry, dict) or not isinstance(entry.get("host"), str) or not entry["host"]:
            raise InputError(f"{where}.host: must be a non-empty string")
        port = entry.get("port")
        if type(port) is not int or not 0 < port < 65536:
            raise InputError(f"{where}.port: must be an integer between 1 and 65535")
        unknown = set(entry) - {"host", "port", "tls", "reader_host", "hostaddr"}
        if unknown:
            raise InputError(f"{where}: unknown member(s) {', '.join(sorted(unknown))}")
        tls = NO_TLS
        if "tls" in entry:
            raw = entry["tls"]
            if not isinstance(raw, dict) or raw.get("mode") not in TLS_MODES:
                raise InputError(f"{where}.tls.mode: must be one of {', '.join(TLS_MODES)}")
            ca_file = raw.get("ca_file")
            if ca_file is not None and not isinstance(ca_file, str):
                raise InputError(f"{where}.tls.ca_file: must be a path")
            tls = ClusterTls(raw["mode"], ca_file)
        reader = entry.get("reader_host")
        if reader is not None and (not isinstance(reader, str) or not reader):
            raise InputError(f"{where}.reader_host: must be a non-empty string")
        hostaddr = entry.get("hostaddr")
        if hostaddr is not None:
            import ipaddress

            try:
                ipaddress.ip_address(hostaddr)
            except (ValueError, TypeError):
                raise InputError(f"{where}.hostaddr: must be an IP address") from None
        endpoints[name] = Endpoint(entry["host"], port, tls, reader, hostaddr)
    return endpoints
