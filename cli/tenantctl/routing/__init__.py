"""The routing map: which cluster, host and physical database serve each tenant's connections.

Shared by the CLI (``tenantctl routes ...``) and the proxy; this package never imports the proxy.
"""

from tenantctl.routing.build import Endpoint, build_routing_map, endpoints_from_json
from tenantctl.routing.document import (
    FORMAT,
    ClusterRoute,
    ClusterTls,
    RoutingMap,
    RoutingMapError,
    TenantRoute,
    parse_map,
    serialize,
)
from tenantctl.routing.store import describe, load_map, read_map, read_previous, write_map

__all__ = [
    "FORMAT",
    "ClusterRoute",
    "ClusterTls",
    "Endpoint",
    "RoutingMap",
    "RoutingMapError",
    "TenantRoute",
    "build_routing_map",
    "describe",
    "endpoints_from_json",
    "load_map",
    "parse_map",
    "read_map",
    "read_previous",
    "serialize",
    "write_map",
]
