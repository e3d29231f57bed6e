"""Metrics exposition and the route table's reload rules (in-process, real files)."""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import pytest

from tenantctl.fsutil import atomic_write_bytes
from tenantctl.proxy import wire
from tenantctl.proxy.metrics import Metrics
from tenantctl.proxy.routes import RouteTable
from tenantctl.routing.document import ClusterRoute, RoutingMap, TenantRoute, seal
from tenantctl.routing.store import write_map


class Live:
    def __init__(self, tenant: str, sent: int, received: int) -> None:
        self.tenant = tenant
        self._sent = sent
        self._received = received

    def bytes_from_client(self) -> int:
        return self._sent

    def bytes_from_backend(self) -> int:
        return self._received


def test_metrics_add_live_and_closed_bytes_and_escape_labels() -> None:
    metrics = Metrics()
    metrics.admitted("a")
    metrics.admitted("a")
    metrics.closed("a", 10, 20)
    metrics.rejected("unknown_tenant", None)
    metrics.rejected("too_many_connections", 'we"ird')
    text = metrics.render([Live("a", 1, 2)])
    assert 'tenantctl_proxy_tenant_connections{tenant="a"} 1' in text
    assert 'tenantctl_proxy_tenant_connections_total{tenant="a"} 2' in text
    assert 'tenantctl_proxy_tenant_bytes_total{tenant="a",direction="client_to_backend"} 11' in text
    assert 'tenantctl_proxy_tenant_bytes_total{tenant="a",direction="backend_to_client"} 22' in text
    assert 'tenantctl_proxy_rejections_total{reason="unknown_tenant",tenant=""} 1' in text
    assert 'tenant="we\\"ird"' in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2


def sample(serial: int, limit: int = 10) -> RoutingMap:
    return seal(RoutingMap(serial, "2026-11-23T09:30:00Z", {"c": ClusterRoute("127.0.0.1", 5432)},
                           {"t": TenantRoute("t", "c", {"app": "t_app"}, ("10.0.0.0/8",), limit)}))


def test_route_table_reloads_changes_and_rejects_invalid_maps(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    write_map(path, sample(1))
    metrics = Metrics()
    table = RouteTable(str(path), metrics)
    table.load_initial()

    async def scenario() -> None:
        assert await table.reload() is False  # unchanged file: not even read
        write_map(path, sample(2, limit=20))
        assert await table.reload() is True
        assert table.current.tenants["t"].max_connections == 20
        atomic_write_bytes(path, b"{ truncated")
        assert await table.reload() is False
        assert table.current.serial == 2  # still serving the last good map
        assert await table.reload(force=True) is False
        write_map(path, sample(2, limit=20))
        assert await table.reload(force=True) is False  # same checksum: nothing to swap

    asyncio.run(scenario())
    assert metrics.reloads == {"ok": 1, "failed": 2, "unchanged": 1}
    assert metrics.map_serial == 2


def test_scram_plus_is_removed_from_sasl_mechanisms() -> None:
    body = struct.pack("!i", wire.AUTH_SASL) + b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"
    message = b"R" + struct.pack("!i", 4 + len(body)) + body
    stripped = wire.without_channel_binding(message)
    assert stripped[9:] == b"SCRAM-SHA-256\x00\x00"
    assert struct.unpack("!i", stripped[1:5])[0] == len(stripped) - 1
    ok = b"R" + struct.pack("!ii", 8, 0)
    assert wire.without_channel_binding(ok) is ok


def test_an_invalid_map_is_logged_once_until_it_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "routes.json"
    write_map(path, sample(1))
    table = RouteTable(str(path), Metrics())
    table.load_initial()

    async def scenario() -> None:
        atomic_write_bytes(path, b"{ truncated")
        for _ in range(5):  # the watcher polls every second
            assert await table.reload() is False
        atomic_write_bytes(path, b"{ truncated again")
        for _ in range(5):
            assert await table.reload() is False

    with caplog.at_level(logging.ERROR, logger="tenantctl.proxy"):
        asyncio.run(scenario())
    rejected = [r for r in caplog.records if "reload rejected" in r.getMessage()]
    assert len(rejected) == 2, [r.getMessage() for r in rejected]
    assert table.current.serial == 1


def test_an_older_serial_is_refused_unless_forced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "routes.json"
    write_map(path, sample(5))
    table = RouteTable(str(path), Metrics())
    table.load_initial()

    async def scenario() -> None:
        write_map(path, sample(4, limit=99))
        assert await table.reload() is False
        assert await table.reload() is False  # not re-read, not re-logged
        assert table.current.serial == 5
        assert await table.reload(force=True) is True  # SIGHUP: a deliberate rollback
        assert table.current.serial == 4

    with caplog.at_level(logging.WARNING, logger="tenantctl.proxy"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert sum("older than the served serial" in m for m in messages) == 1
    assert any("replaces the newer serial 5" in m for m in messages)


def test_series_of_tenants_removed_from_the_map_are_dropped_on_reload(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    two = seal(RoutingMap(1, "2026-11-23T09:30:00Z", {"c": ClusterRoute("127.0.0.1", 5432)}, {
        name: TenantRoute(name, "c", {"app": f"{name}_app"}, ("10.0.0.0/8",), 5) for name in ("t", "gone")}))
    write_map(path, two)
    metrics = Metrics()
    table = RouteTable(str(path), metrics)
    table.load_initial()
    for tenant in ("t", "gone", "busy"):
        metrics.admitted(tenant)
        metrics.rejected("too_many_connections", tenant)
    metrics.closed("t", 1, 1)
    metrics.closed("gone", 1, 1)  # "busy" still has an open session
    metrics.rejected("unknown_tenant", None)
    write_map(path, sample(2))
    assert asyncio.run(table.reload()) is True
    text = metrics.render([])
    assert 'tenant="gone"' not in text
    assert 'tenantctl_proxy_tenant_connections{tenant="t"} 0' in text
    assert 'tenantctl_proxy_tenant_connections{tenant="busy"} 1' in text  # kept while its session lives
    assert 'reason="too_many_connections",tenant="busy"' not in text
    assert 'reason="unknown_tenant",tenant=""' in text
