"""Reading a routing map: every malformed document is refused, naming the problem."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tenantctl.routing.document import (
    ClusterRoute,
    RoutingMap,
    RoutingMapError,
    TenantRoute,
    canonical_json,
    compute_checksum,
    parse_map,
    seal,
    serialize,
)


def sample(tenants: int = 2) -> RoutingMap:
    routes = {
        f"t{i}": TenantRoute(f"t{i}", "c1", {"app": f"t{i}_app"}, ("10.0.0.0/8",), 10) for i in range(tenants)
    }
    return seal(RoutingMap(3, "2026-11-23T09:30:00Z", {"c1": ClusterRoute("127.0.0.1", 5432)}, routes))


def resealed(document: dict[str, Any]) -> bytes:
    """Re-checksum an edited document so only the edit under test is wrong."""
    document.pop("checksum", None)
    document["checksum"] = compute_checksum(document)
    return json.dumps(document).encode()


def test_round_trip_keeps_everything() -> None:
    original = sample()
    parsed = parse_map(serialize(original))
    assert parsed == original


def test_hand_formatted_file_is_accepted_through_the_slow_checksum_path() -> None:
    document = json.loads(serialize(sample()))
    pretty = json.dumps(document, indent=4).encode()
    assert parse_map(pretty).tenants == sample().tenants


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="tenantctl.routing/v2"), "format"),
        (lambda d: d.update(serial=0), "serial"),
        (lambda d: d.update(serial="3"), "serial"),
        (lambda d: d.update(generated_at="yesterday"), "generated_at"),
        (lambda d: d.update(extra=1), "unknown member"),
        (lambda d: d.pop("tenants"), "missing member"),
        (lambda d: d["tenants"]["t0"].update(cluster="nope"), "tenants.t0.cluster"),
        (lambda d: d["tenants"]["t0"].update(allowed_cidrs=["10.0.0.1/8"]), "tenants.t0.allowed_cidrs"),
        (lambda d: d["tenants"]["t0"].update(allowed_cidrs=["300.0.0.0/8"]), "tenants.t0.allowed_cidrs"),
        (lambda d: d["tenants"]["t0"].update(allowed_cidrs=["010.0.0.0/8"]), "tenants.t0.allowed_cidrs"),
        (lambda d: d["tenants"]["t0"].update(allowed_cidrs="10.0.0.0/8"), "tenants.t0.allowed_cidrs"),
        (lambda d: d["tenants"]["t0"].update(max_connections=0), "tenants.t0.max_connections"),
        (lambda d: d["tenants"]["t0"].update(databases={"app": "x" * 64}), "tenants.t0.databases.app"),
        (lambda d: d["tenants"]["t0"].pop("tenant"), "tenants.t0: must have exactly"),
        (lambda d: d["tenants"].update({"u" * 64: d["tenants"]["t0"]}), "not a valid role name"),
        (lambda d: d["clusters"]["c1"].update(port=70000), "clusters.c1.port"),
        (lambda d: d["clusters"]["c1"].update(tls={"mode": "prefer"}), "clusters.c1.tls.mode"),
        (lambda d: d["clusters"]["c1"].update(host="bad host; rm -rf"), "clusters.c1.host"),
    ],
)
def test_invalid_content_is_refused_naming_the_field(edit: Any, message: str) -> None:
    document = json.loads(serialize(sample()))
    edit(document)
    with pytest.raises(RoutingMapError, match=message):
        parse_map(resealed(document), "routes.json")


def test_ipv6_cidrs_are_accepted() -> None:
    document = json.loads(serialize(sample()))
    document["tenants"]["t0"]["allowed_cidrs"] = ["2001:db8::/32", "::1/128"]
    assert parse_map(resealed(document)).tenants["t0"].allowed_cidrs == ("2001:db8::/32", "::1/128")


def test_checksum_mismatch_and_truncation_are_detected() -> None:
    data = serialize(sample())
    edited = data.replace(b'"max_connections":10', b'"max_connections":99')
    with pytest.raises(RoutingMapError, match="checksum mismatch"):
        parse_map(edited, "routes.json")
    with pytest.raises(RoutingMapError, match="not valid JSON"):
        parse_map(data[: len(data) // 2], "routes.json")
    with pytest.raises(RoutingMapError, match=r"routes\.json"):
        parse_map(b"[]", "routes.json")


def test_checksum_is_over_the_canonical_json_of_the_rest() -> None:
    routing_map = sample()
    document = json.loads(serialize(routing_map))
    rest = {k: v for k, v in document.items() if k != "checksum"}
    import hashlib

    assert routing_map.checksum == "sha256:" + hashlib.sha256(canonical_json(rest)).hexdigest()


def test_a_100k_tenant_map_parses_quickly() -> None:
    data = serialize(sample(100_000))
    parse_map(data)  # warm the CIDR cache like a reload would
    started = time.perf_counter()
    parsed = parse_map(data)
    elapsed = time.perf_counter() - started
    assert len(parsed.tenants) == 100_000
    assert elapsed < 3.0, f"parse took {elapsed:.2f}s"  # ~0.4 s on an idle core; generous for CI noise
