"""Building the routing map from the model: content, serial continuation, determinism."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tenantctl.errors import InputError
from tenantctl.model import model_from_text
from tenantctl.model.desired import desired_state
from tenantctl.routing import Endpoint, build_routing_map, endpoints_from_json, parse_map, serialize
from tenantctl.routing.document import ClusterTls

CLIENTS = """
settings = { prefix = "acme_" }
clusters = {
  shared-01 = { min_acu = 0.5, max_acu = 4 }
  vip = { min_acu = 1, max_acu = 8, dedicated = true }
}
clients = [
  { name = "client01", databases = { db1 = true, db2 = false }, allowed_ips = ["109.241.200.168/32"],
    rds_iam_auth = true, cluster = "shared-01" },
  { name = "client02", databases = { app = true, reports = true }, allowed_ips = ["203.0.113.0/24", "198.51.100.7/32"],
    rds_iam_auth = false, tier = "premium", cluster = "vip" },
]
"""
T0 = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
T1 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ENDPOINTS = {"shared-01": Endpoint("10.0.0.1", 5432), "vip": Endpoint("vip.example", 5433, ClusterTls("require"))}


def desired(text: str = CLIENTS):  # type: ignore[no-untyped-def]
    return desired_state(model_from_text(text))


def test_routes_are_keyed_by_login_role_and_map_logical_to_physical_names() -> None:
    routing_map = build_routing_map(desired(), ENDPOINTS, now=T0)
    assert set(routing_map.tenants) == {"acme_client01", "acme_client02"}
    one = routing_map.tenants["acme_client01"]
    assert one.tenant == "client01"
    assert one.cluster == "shared-01"
    assert one.databases == {"db1": "acme_client01_db1"}  # db2 = false is not provisioned, so not routed
    assert one.allowed_cidrs == ("109.241.200.168/32",)
    assert one.max_connections == 100  # standard tier
    two = routing_map.tenants["acme_client02"]
    assert two.databases == {"app": "acme_client02_app", "reports": "acme_client02_reports"}
    assert two.allowed_cidrs == ("203.0.113.0/24", "198.51.100.7/32")
    assert two.max_connections == 400  # premium tier
    assert routing_map.clusters["vip"].tls.mode == "require"
    assert routing_map.serial == 1
    assert routing_map.generated_at == "2026-11-23T09:30:00Z"
    assert routing_map.checksum.startswith("sha256:")


def test_same_content_keeps_serial_and_bytes_changed_content_bumps_serial() -> None:
    first = build_routing_map(desired(), ENDPOINTS, now=T0)
    again = build_routing_map(desired(), ENDPOINTS, now=T1, previous=first)
    assert again is first
    assert serialize(again) == serialize(first)
    moved = dict(ENDPOINTS, **{"shared-01": Endpoint("10.0.0.2", 5432)})
    changed = build_routing_map(desired(), moved, now=T1, previous=first)
    assert changed.serial == 2
    assert changed.generated_at == "2026-11-23T10:00:00Z"
    assert changed.checksum != first.checksum


def test_output_is_byte_stable_and_round_trips() -> None:
    first = serialize(build_routing_map(desired(), ENDPOINTS, now=T0))
    second = serialize(build_routing_map(desired(), ENDPOINTS, now=T0))
    assert first == second
    parsed = parse_map(first, "routes.json")
    assert serialize(parsed) == first


def test_missing_endpoint_for_a_cluster_with_tenants_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no endpoint for cluster\\(s\\) vip"):
        build_routing_map(desired(), {"shared-01": ENDPOINTS["shared-01"]}, now=T0)


def test_map_never_contains_secrets() -> None:
    data = serialize(build_routing_map(desired(), ENDPOINTS, now=T0)).decode()
    for word in ("password", "secret", "token", "SCRAM-SHA-256$"):
        assert word not in data.lower() if word.islower() else word not in data


def test_endpoints_file_parsing_names_the_field() -> None:
    parsed = endpoints_from_json({"a": {"host": "h", "port": 5432, "tls": {"mode": "verify-full",
                                                                          "ca_file": "/ca.pem"}}}, "ep.json")
    assert parsed["a"] == Endpoint("h", 5432, ClusterTls("verify-full", "/ca.pem"))
    with pytest.raises(InputError, match=r"ep.json: a.port"):
        endpoints_from_json({"a": {"host": "h", "port": "5432"}}, "ep.json")
    with pytest.raises(InputError, match=r"ep.json: a.tls.mode"):
        endpoints_from_json({"a": {"host": "h", "port": 1, "tls": {"mode": "prefer"}}}, "ep.json")


def test_reader_endpoints_are_listed_and_survive_a_round_trip() -> None:
    endpoints = {**ENDPOINTS, "shared-01": Endpoint("w.example", 5432, reader_host="ro.example")}
    routing_map = build_routing_map(desired(), endpoints, now=T0)
    assert routing_map.clusters["shared-01"].reader_host == "ro.example"
    assert routing_map.clusters["vip"].reader_host is None
    text = serialize(routing_map)
    assert b'"reader_host":"ro.example"' in (text if isinstance(text, bytes) else text.encode())
    assert parse_map(text, "routes.json").clusters["shared-01"].reader_host == "ro.example"
    parsed = endpoints_from_json({"a": {"host": "w", "port": 5432, "reader_host": "r"}}, "endpoints.json")
    assert parsed["a"].reader_host == "r"
    with pytest.raises(InputError, match="reader_host"):
        endpoints_from_json({"a": {"host": "w", "port": 5432, "reader_host": 7}}, "endpoints.json")


def test_a_hostaddr_is_dialled_while_tls_verifies_the_endpoint_name() -> None:
    tls = ClusterTls("verify-full", "/p/ca.pem")
    endpoints = {**ENDPOINTS, "shared-01": Endpoint("w.cluster-x.eu-west-1.rds.amazonaws.com", 40001, tls,
                                                    hostaddr="127.0.0.1")}
    routing_map = build_routing_map(desired(), endpoints, now=T0)
    parsed = parse_map(serialize(routing_map), "routes.json").clusters["shared-01"]
    assert (parsed.host, parsed.hostaddr, parsed.port, parsed.tls) == (
        "w.cluster-x.eu-west-1.rds.amazonaws.com", "127.0.0.1", 40001, tls)
    assert routing_map.clusters["vip"].hostaddr is None
    assert endpoints_from_json({"a": {"host": "w", "port": 1, "hostaddr": "::1"}}, "ep.json")["a"].hostaddr == "::1"
    with pytest.raises(InputError, match=r"ep.json: a.hostaddr: must be an IP address"):
        endpoints_from_json({"a": {"host": "w", "port": 1, "hostaddr": "tunnel.example"}}, "ep.json")
