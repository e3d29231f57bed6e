"""Reading a routing map: every malformed document is refused, naming the problem."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantctl.routing.document import (
    ClusterRoute,
    RoutingMap,
    RoutingMapError,
    TenantRoute,
    _document_problem,
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
        (lambda d: d["clusters"]["c1"].update(reader_host="bad host; rm -rf"), "clusters.c1.reader_host"),
        (lambda d: d["clusters"]["c1"].update(reader_host=5), "clusters.c1"),
        (lambda d: d["clusters"]["c1"].update(hostaddr="evil.example"), "clusters.c1.hostaddr: must be an IP"),
        (lambda d: d["clusters"]["c1"].update(hostaddr=["127.0.0.1"]), "clusters.c1.hostaddr"),
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


def test_when_the_field_walker_finds_nothing_the_decoder_path_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from tenantctl.routing import document as module

    monkeypatch.setattr(module, "_document_problem", lambda document, fail: None)
    document = json.loads(serialize(sample()))
    document["tenants"]["t0"]["max_connections"] = 0
    with pytest.raises(RoutingMapError, match=r"routes.json: .*`document.tenants\[...\].max_connections`"):
        parse_map(resealed(document), "routes.json")


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=70)
    | st.sampled_from(["10.0.0.0/8", "c1", "disable", "verify-full", "x" * 64, ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
_FIELD_PATHS = [
    ("format",), ("serial",), ("generated_at",), ("clusters",), ("tenants",), ("clusters", "c1"),
    ("clusters", "c1", "host"), ("clusters", "c1", "port"), ("clusters", "c1", "tls"), ("tenants", "t0"),
    ("tenants", "t1", "tenant"), ("tenants", "t0", "cluster"), ("tenants", "t0", "databases"),
    ("tenants", "t1", "databases", "app"), ("tenants", "t0", "allowed_cidrs"), ("tenants", "t1", "max_connections"),
    ("tenants", "t0", "extra"), ("tenants", "u" * 64),
]


@settings(max_examples=400, deadline=None)
@given(path=st.sampled_from(_FIELD_PATHS), value=_JSON_VALUES)
def test_the_fast_decoder_accepts_nothing_the_field_walker_refuses(path: tuple[str, ...], value: Any) -> None:
    """Either a clean RoutingMapError, or a map the plain-JSON validator also accepts."""
    document = json.loads(serialize(sample()))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    data = resealed(document)
    try:
        parsed = parse_map(data, "routes.json")
    except RoutingMapError as error:
        assert error.source == "routes.json"
        return
    assert _document_problem(json.loads(data), lambda message: RoutingMapError("x", message)) is None
    assert parsed.tenants.keys() == document["tenants"].keys()
