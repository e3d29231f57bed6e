"""Read and write routing maps: local files (atomic) and ``s3://bucket/key`` objects."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tenantctl.errors import InputError
from tenantctl.fsutil import PUBLIC, atomic_write_bytes
from tenantctl.routing.document import RoutingMap, parse_map, serialize


def is_s3_url(location: str) -> bool:
    return location.startswith("s3://")


def read_map(path: Path) -> RoutingMap:
    """Read and validate a routing map file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: routing map not found",
                         hint="`tenantctl apply` writes the project's map to .tenantctl/routes.json; "
                              "`tenantctl routes build` writes one from the clients file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read routing map: {error.strerror}") from None
    return parse_map(data, str(path))


def read_previous(path: Path) -> RoutingMap | None:
    """The map currently at ``path`` (to continue its serial), or None when there is none yet."""
    if not Path(path).exists():
        return None
    return read_map(path)


def write_map(path: Path, routing_map: RoutingMap) -> bool:
    """Atomically write ``routing_map`` unless the file already holds exactly it. True if written."""
    data = serialize(routing_map)
    try:
        if Path(path).read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    atomic_write_bytes(Path(path), data, mode=PUBLIC)  # no secrets; proxies may run as another user
    return True


def load_map(location: str) -> RoutingMap:
    """Load a map from a file path or an ``s3://`` URL."""
    if is_s3_url(location):
        from tenantctl.routing.s3 import fetch_map

        return parse_map(fetch_map(location).data, location)
    return read_map(Path(location))


def describe(routing_map: RoutingMap) -> dict[str, object]:
    """A short summary (for ``routes show`` / logs): never contains a secret, the map holds none."""
    by_cluster: dict[str, int] = {}
    for route in routing_map.tenants.values():
        by_cluster[route.cluster] = by_cluster.get(route.cluster, 0) + 1
    return {
        "serial": routing_map.serial,
        "generated_at": routing_map.generated_at,
        "checksum": routing_map.checksum,
        "clusters": len(routing_map.clusters),
        "tenants": len(routing_map.tenants),
        "tenants_per_cluster": dict(sorted(by_cluster.items())),
    }


def age_seconds(routing_map: RoutingMap, now: datetime) -> float:
    generated = datetime.fromisoformat(routing_map.generated_at.replace("Z", "+00:00"))
    return (now - generated).total_seconds()
