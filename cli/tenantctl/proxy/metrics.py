"""Proxy counters and their Prometheus text exposition (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tenantctl.proxy.pause import TenantPauses


class ByteCounters(Protocol):
    """A live relayed session: bytes so far in each direction."""

    tenant: str

    def bytes_from_client(self) -> int: ...

    def bytes_from_backend(self) -> int: ...


class TenantStats:
    __slots__ = ("bytes_from_backend", "bytes_from_client", "current", "total")

    def __init__(self) -> None:
        self.current = 0  # sessions admitted and not yet closed (handshake or relay)
        self.total = 0
        self.bytes_from_client = 0  # of closed sessions; live ones are added at scrape time
        self.bytes_from_backend = 0


class Metrics:
    def __init__(self) -> None:
        self.tenants: dict[str, TenantStats] = {}  # only tenants that connected at least once
        self.rejections: dict[tuple[str, str], int] = {}  # (reason, tenant or "") -> count
        self.reloads: dict[str, int] = {"ok": 0, "failed": 0, "unchanged": 0}
        self.map_serial = 0
        self.map_tenants = 0
        self.map_loaded_at = 0.0
        self.client_connections_total = 0
        self.cancels: dict[str, int] = {"forwarded": 0, "dropped": 0}

    def stats(self, tenant: str) -> TenantStats:
        stats = self.tenants.get(tenant)
        if stats is None:
            stats = self.tenants[tenant] = TenantStats()
        return stats

    def admitted(self, tenant: str) -> None:
        stats = self.stats(tenant)
        stats.current += 1
        stats.total += 1

    def closed(self, tenant: str, from_client: int, from_backend: int) -> None:
        stats = self.stats(tenant)
        stats.current -= 1
        stats.bytes_from_client += from_client
        stats.bytes_from_backend += from_backend

    def rejected(self, reason: str, tenant: str | None) -> None:
        key = (reason, tenant or "")
        self.rejections[key] = self.rejections.get(key, 0) + 1

    def forget_tenants(self, keep: Callable[[str], bool]) -> None:
        """Drop the series of tenants no longer in the map (those with open sessions stay until they close)."""
        for tenant in [t for t, stats in self.tenants.items() if stats.current <= 0 and not keep(t)]:
            del self.tenants[tenant]
        for key in [k for k in self.rejections if k[1] and not keep(k[1])]:
            del self.rejections[key]

    def render(self, live: Iterable[ByteCounters], *, draining: bool = False,
               pauses: TenantPauses | None = None) -> str:
        live_in: dict[str, int] = {}
        live_out: dict[str, int] = {}
        for session in live:
            live_in[session.tenant] = live_in.get(session.tenant, 0) + session.bytes_from_client()
            live_out[session.tenant] = live_out.get(session.tenant, 0) + session.bytes_from_backend()
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        family("tenantctl_proxy_tenant_connections", "gauge", "Open client connections per tenant.")
        for tenant, stats in sorted(self.tenants.items()):
            lines.append(f'tenantctl_proxy_tenant_connections{{tenant="{_escape(tenant)}"}} {stats.current}')
        family("tenantctl_proxy_tenant_connections_total", "counter", "Client connections admitted per tenant.")
        for tenant, stats in sorted(self.tenants.items()):
            lines.append(f'tenantctl_proxy_tenant_connections_total{{tenant="{_escape(tenant)}"}} {stats.total}')
        family("tenantctl_proxy_tenant_bytes_total", "counter",
               "Bytes relayed per tenant; direction=client_to_backend|backend_to_client.")
        for tenant, stats in sorted(self.tenants.items()):
            label = _escape(tenant)
            sent = stats.bytes_from_client + live_in.get(tenant, 0)
            received = stats.bytes_from_backend + live_out.get(tenant, 0)
            lines.append(f'tenantctl_proxy_tenant_bytes_total{{tenant="{label}",direction="client_to_backend"}} {sent}')
            lines.append(
                f'tenantctl_proxy_tenant_bytes_total{{tenant="{label}",direction="backend_to_client"}} {received}')
        family("tenantctl_proxy_rejections_total", "counter",
               "Refused client connections by reason (tenant label only for tenants in the map).")
        for (reason, tenant), count in sorted(self.rejections.items()):
            lines.append(f'tenantctl_proxy_rejections_total{{reason="{reason}",tenant="{_escape(tenant)}"}} {count}')
        family("tenantctl_proxy_cancel_requests_total", "counter", "Cancel requests forwarded or dropped.")
        for result, count in sorted(self.cancels.items()):
            lines.append(f'tenantctl_proxy_cancel_requests_total{{result="{result}"}} {count}')
        family("tenantctl_proxy_client_connections_total", "counter", "TCP connections accepted.")
        lines.append(f"tenantctl_proxy_client_connections_total {self.client_connections_total}")
        family("tenantctl_proxy_reloads_total", "counter", "Routing map reloads by result.")
        for result, count in sorted(self.reloads.items()):
            lines.append(f'tenantctl_proxy_reloads_total{{result="{result}"}} {count}')
        family("tenantctl_proxy_routing_map_serial", "gauge", "Serial of the routing map being served.")
        lines.append(f"tenantctl_proxy_routing_map_serial {self.map_serial}")
        family("tenantctl_proxy_routing_map_tenants", "gauge", "Tenants in the routing map being served.")
        lines.append(f"tenantctl_proxy_routing_map_tenants {self.map_tenants}")
        family("tenantctl_proxy_routing_map_loaded_timestamp_seconds", "gauge", "When the map was loaded.")
        lines.append(f"tenantctl_proxy_routing_map_loaded_timestamp_seconds {self.map_loaded_at:.3f}")
        family("tenantctl_proxy_draining", "gauge", "1 while the proxy drains after SIGTERM.")
        lines.append(f"tenantctl_proxy_draining {int(draining)}")
        if pauses is not None:
            queued = pauses.queued()
            family("tenantctl_proxy_paused_tenants", "gauge", "Tenants whose new connections are held.")
            lines.append(f"tenantctl_proxy_paused_tenants {len(queued)}")
            family("tenantctl_proxy_paused_connections", "gauge", "Connections waiting for a paused tenant.")
            for tenant, count in queued.items():
                lines.append(f'tenantctl_proxy_paused_connections{{tenant="{_escape(tenant)}"}} {count}')
            family("tenantctl_proxy_pauses_total", "counter", "Ended pauses: resumed, or expired at their maximum.")
            for how, count in sorted(pauses.stats.ended.items()):
                lines.append(f'tenantctl_proxy_pauses_total{{ended="{how}"}} {count}')
            family("tenantctl_proxy_pause_seconds_total", "counter", "Time tenants spent paused (ended pauses).")
            lines.append(f"tenantctl_proxy_pause_seconds_total {pauses.stats.seconds_total:.6f}")
            family("tenantctl_proxy_pause_longest_seconds", "gauge", "The longest pause so far.")
            lines.append(f"tenantctl_proxy_pause_longest_seconds {pauses.stats.longest_s:.6f}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
