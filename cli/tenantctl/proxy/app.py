"""Run the proxy: load the map, listen, watch for new maps, serve admin HTTP, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenantctl.errors import InputError
from tenantctl.proxy.admin import AdminServer
from tenantctl.proxy.admission import DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_PER_ADDRESS
from tenantctl.proxy.control import ControlServer
from tenantctl.proxy.metrics import Metrics
from tenantctl.proxy.native import RelayMode, choose_relay_nice, choose_threads
from tenantctl.proxy.pause import DEFAULT_MAX_PAUSE_S
from tenantctl.proxy.routes import RouteTable
from tenantctl.proxy.server import ProxyOptions, ProxyServer
from tenantctl.proxy.tls import server_context
from tenantctl.routing.store import is_s3_url

log = logging.getLogger("tenantctl.proxy")


@dataclass(frozen=True)
class ProxyConfig:
    routes: str  # file path or s3://bucket/key
    listen: tuple[str, int] = ("127.0.0.1", 6432)
    admin: tuple[str, int] | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    require_tls: bool = False
    allow_plaintext: bool = False  # with a certificate: also accept clients that do not use TLS
    startup_timeout: float = 30.0
    connect_timeout: float = 10.0
    drain_timeout: float = 30.0
    max_startup_packet: int = 10_000
    max_pending_handshakes: int = DEFAULT_MAX_PENDING
    max_pending_per_address: int = DEFAULT_MAX_PENDING_PER_ADDRESS
    relay: RelayMode = "auto"
    relay_threads: int | None = None
    relay_nice: int | None = None  # default RELAY_NICE_DEFAULT
    watch_interval: float | None = None  # default: 1 s for files, 10 s for S3
    control_socket: Path | None = None  # Unix socket for pause/resume/reload (proxy/control.py)


def parse_address(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InputError(f"{option}: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def install_uvloop() -> bool:
    """Use uvloop when installed (roughly halves the relay's CPU per packet)."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class ProxyRuntime:
    """The running proxy; ``started`` is called with (proxy port, admin port) once listening."""

    def __init__(self, config: ProxyConfig) -> None:
        if config.require_tls and config.allow_plaintext:
            raise InputError("--require-tls and --allow-plaintext contradict each other")
        if config.require_tls and config.tls_cert is None:
            raise InputError("--require-tls needs --tls-cert and --tls-key")
        if (config.tls_cert is None) != (config.tls_key is None):
            raise InputError("--tls-cert and --tls-key go together")
        self.config = config
        self.metrics = Metrics()
        self.routes = RouteTable(config.routes, self.metrics)
        self.server: ProxyServer | None = None
        self.admin: AdminServer | None = None
        self.control: ControlServer | None = None
        self._stop = asyncio.Event()

    def health(self) -> tuple[bool, dict[str, object]]:
        draining = self.server is not None and self.server.draining
        return (not draining), {
            "status": "draining" if draining else "ok",
            "serial": self.metrics.map_serial,
            "tenants": self.metrics.map_tenants,
            "connections": len(self.server.links) if self.server else 0,
            "relay": self.server.relay_kind if self.server else None,
        }

    def render_metrics(self) -> str:
        assert self.server is not None
        return self.metrics.render(self.server.live_links(), draining=self.server.draining,
                                   pauses=self.server.pauses)

    async def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control-socket request (see proxy/control.py); ValueError/KeyError become error answers."""
        assert self.server is not None
        pauses = self.server.pauses
        op = request["op"]
        if op == "status":
            sessions = {tenant: stats.current for tenant, stats in sorted(self.metrics.tenants.items())
                        if stats.current > 0}
            return {**pauses.status(), "serial": self.metrics.map_serial, "sessions": sessions}
        if op == "reload":
            changed = await self.routes.reload(force=True)
            return {"changed": changed, "serial": self.metrics.map_serial}
        tenant = request.get("tenant")
        if not isinstance(tenant, str) or not tenant:
            raise ValueError(f"{op}: a tenant is required")
        if op == "resume":
            return {"resumed": pauses.resume(tenant)}
        if op == "pause":
            if tenant not in {route.tenant for route in self.routes.get().tenants.values()}:
                raise ValueError(f"pause: tenant {tenant!r} is not in the routing map")
            max_seconds = float(request.get("max_seconds", DEFAULT_MAX_PAUSE_S))
            paused = pauses.pause(tenant, max_seconds, str(request.get("reason", "")))
            log.info("tenant %s paused (at most %.1fs): %s", tenant, max_seconds, paused["reason"] or "no reason")
            return {"pause": paused}
        raise ValueError(f"unknown op {op!r}: pause, resume, reload or status")

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, started: Callable[[int, int | None], None] | None = None) -> int:
        config = self.config
        load_started = time.perf_counter()
        routing_map = self.routes.load_initial()
        load_ms = (time.perf_counter() - load_started) * 1000
        tls = server_context(config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
        options = ProxyOptions(
            host=config.listen[0], port=config.listen[1], server_tls=tls,
            # With a certificate, plaintext is refused unless asked for: libpq's sslmode=prefer retries an
            # attempt that failed over TLS in plaintext, and must find no plaintext door at the proxy.
            require_tls=config.require_tls or (tls is not None and not config.allow_plaintext),
            startup_timeout=config.startup_timeout, connect_timeout=config.connect_timeout,
            drain_timeout=config.drain_timeout, max_startup_packet=config.max_startup_packet,
            max_pending_handshakes=config.max_pending_handshakes,
            max_pending_per_address=config.max_pending_per_address,
            relay=config.relay, relay_threads=choose_threads(config.relay_threads),
            relay_nice=choose_relay_nice(config.relay_nice),
        )
        self.server = ProxyServer(self.routes, options, self.metrics)
        await self.server.start()
        admin_port: int | None = None
        if config.admin is not None:
            self.admin = AdminServer(health=self.health, metrics=self.render_metrics)
            await self.admin.start(*config.admin)
            admin_port = self.admin.port
        if config.control_socket is not None:
            self.control = ControlServer(config.control_socket, self.handle_control)
            await self.control.start()
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[bool]] = set()

        def on_sighup() -> None:
            task = loop.create_task(self.routes.reload(force=True))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        for signum, handler in ((signal.SIGHUP, on_sighup), (signal.SIGTERM, self.request_stop),
                                (signal.SIGINT, self.request_stop)):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, handler)
        interval = config.watch_interval or (10.0 if is_s3_url(config.routes) else 1.0)
        watcher = loop.create_task(self.routes.watch(interval))
        port = self.server.sockets[0].getsockname()[1]
        log.info("proxy listening on %s:%s (routing map serial %s, %d tenants, loaded in %.0f ms; %s relay)%s",
                 config.listen[0], port, routing_map.serial, len(routing_map.tenants), load_ms,
                 self.server.relay_kind,
                 f", admin on port {admin_port}" if admin_port else "")
        if started is not None:
            started(int(port), admin_port)
        await self._stop.wait()
        log.info("draining: no new connections; waiting up to %.0fs for %d sessions", config.drain_timeout,
                 len(self.server.links) + len(self.server.handshakes))
        self.server.pauses.resume_all()  # queued connections go on (or meet the drain) rather than hang
        if self.control is not None:
            self.control.close()
        forced = await self.server.drain()
        self.server.close()
        watcher.cancel()
        if self.admin is not None:
            self.admin.close()
        log.info("stopped (%d sessions closed at the drain timeout)", forced)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        return forced


def run_proxy(config: ProxyConfig, started: Callable[[int, int | None], None] | None = None) -> int:
    install_uvloop()
    runtime = ProxyRuntime(config)
    return asyncio.run(runtime.run(started))
