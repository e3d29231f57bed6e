"""The proxy's network side: asyncio Protocols that carry out the session's actions, then relay.

Hot path: once a session reaches ReadyForQuery its two sockets go to the native relay
(``native.py``, ``_relay.c``: one recv and one send per packet in an epoll thread) when it is built
and neither leg uses TLS. Otherwise both transports are switched (``set_protocol``) to ``RelayEnd``
objects whose ``data_received`` is a single ``peer.write(data)``; backpressure uses
``pause_writing``/``resume_writing`` to pause the opposite socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

from tenantctl.proxy import session as s
from tenantctl.proxy import wire
from tenantctl.proxy.admission import DEFAULT_MAX_PENDING, DEFAULT_MAX_PENDING_PER_ADDRESS, Admission
from tenantctl.proxy.cancel import BackendTarget, CancelKeys
from tenantctl.proxy.logsafe import printable
from tenantctl.proxy.metrics import Metrics
from tenantctl.proxy.mock_auth import MockAuth
from tenantctl.proxy.native import RELAY_NICE_DEFAULT, NativeRelay, RelayMode, native_available
from tenantctl.proxy.pause import TenantPauses
from tenantctl.proxy.routes import RouteTable
from tenantctl.proxy.tls import BackendContexts

log = logging.getLogger("tenantctl.proxy")


@dataclass
class ProxyOptions:
    host: str = "127.0.0.1"
    port: int = 6432
    server_tls: ssl.SSLContext | None = None
    require_tls: bool = False
    startup_timeout: float = 30.0
    connect_timeout: float = 10.0
    drain_timeout: float = 30.0
    max_startup_packet: int = wire.MAX_STARTUP_PACKET
    max_pending_handshakes: int = DEFAULT_MAX_PENDING
    max_pending_per_address: int = DEFAULT_MAX_PENDING_PER_ADDRESS
    backlog: int = 1024
    relay: RelayMode = "auto"  # auto: native when built; python: always the asyncio relay
    relay_threads: int = 2
    relay_nice: int = RELAY_NICE_DEFAULT
    extra: dict[str, object] = field(default_factory=dict)


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RelayEnd(asyncio.Protocol):
    """Receives from one socket and writes to the other. One per direction."""

    __slots__ = ("link", "nbytes", "peer")

    def __init__(self, link: Link, peer: asyncio.Transport) -> None:
        self.link = link
        self.peer = peer
        self.nbytes = 0

    def data_received(self, data: bytes) -> None:
        self.peer.write(data)
        self.nbytes += len(data)

    def eof_received(self) -> bool:
        return False  # close our side; connection_lost closes the peer

    def pause_writing(self) -> None:  # our socket's send buffer is full: stop reading the peer
        with contextlib.suppress(Exception):
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        with contextlib.suppress(Exception):
            self.peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.lost()


class Link:
    """A relayed session: the two transports and their byte counters."""

    __slots__ = ("backend", "client", "from_backend", "from_client", "proxy", "session", "tenant")

    def __init__(self, proxy: ProxyServer, session: s.Session, client: asyncio.Transport,
                 backend: asyncio.Transport) -> None:
        self.proxy = proxy
        self.session = session
        assert session.tenant is not None
        self.tenant: str = session.tenant
        self.client = client
        self.backend = backend
        self.from_client = RelayEnd(self, backend)
        self.from_backend = RelayEnd(self, client)

    def start(self) -> None:
        self.client.set_protocol(self.from_client)
        self.backend.set_protocol(self.from_backend)
        # Writes to one side may have paused the other while the handshake ran.
        for transport in (self.client, self.backend):
            with contextlib.suppress(Exception):
                transport.resume_reading()

    def bytes_from_client(self) -> int:
        return self.from_client.nbytes

    def bytes_from_backend(self) -> int:
        return self.from_backend.nbytes

    def lost(self) -> None:
        self.client.close()
        self.backend.close()
        links = self.proxy.links
        if self in links:
            links.discard(self)
            self.proxy.metrics.closed(self.tenant, self.from_client.nbytes, self.from_backend.nbytes)
            self.session.finish()
            self.proxy.connection_ended()

    def abort(self) -> None:
        self.client.abort()
        self.backend.abort()


class NativeLink:
    """A session relayed by the native relay: the server learns of its end through ``NativeRelay``."""

    __slots__ = ("link_id", "proxy", "session", "tenant")

    def __init__(self, proxy: ProxyServer, session: s.Session, link_id: int) -> None:
        self.proxy = proxy
        self.session = session
        assert session.tenant is not None
        self.tenant: str = session.tenant
        self.link_id = link_id

    def bytes_from_client(self) -> int:
        return self.proxy.native_counters.get(self.link_id, (0, 0))[0]

    def bytes_from_backend(self) -> int:
        return self.proxy.native_counters.get(self.link_id, (0, 0))[1]

    def ended(self, from_client: int, from_backend: int) -> None:
        self.proxy.links.discard(self)
        self.proxy.metrics.closed(self.tenant, from_client, from_backend)
        self.session.finish()
        self.proxy.connection_ended()

    def abort(self) -> None:
        if self.proxy.native is not None:
            self.proxy.native.abort(self.link_id)


class BackendHandshake(asyncio.Protocol):
    """The backend connection until ReadyForQuery: hands everything to the client's handshake."""

    def __init__(self, owner: ClientHandshake) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        _nodelay(self.transport)

    def data_received(self, data: bytes) -> None:
        self.owner.run(self.owner.session.backend_data(data))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.backend_lost()


class ClientHandshake(asyncio.Protocol):
    """A client connection from accept until it is relayed or refused."""

    def __init__(self, proxy: ProxyServer) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.backend: BackendHandshake | None = None
        self.session: s.Session
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._admitted = False
        self._connect_started: float | None = None
        self._forwarded_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- asyncio callbacks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        _nodelay(self.transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        proxy = self.proxy
        self.session = s.Session(
            client_address=address, routes=proxy.routes.get, admission=proxy.admission,
            cancel_keys=proxy.cancel_keys, policy=proxy.policy, mock_auth=proxy.mock_auth,
            paused=proxy.pauses.is_paused,
        )
        proxy.metrics.client_connections_total += 1
        proxy.handshakes.add(self)
        self._timer = self.loop.call_later(proxy.options.startup_timeout, self._timeout)

    def data_received(self, data: bytes) -> None:
        self.run(self.session.client_data(data))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session.state is not s.State.RELAY:
            self._close()

    # --- driving the session --------------------------------------------------------------------

    def run(self, actions: list[s.Action]) -> None:
        for index, action in enumerate(actions):
            if self._closed:
                return
            if isinstance(action, s.SendToClient):
                if self._connect_started is not None:  # a backend's first answer: how long a real one takes
                    self.proxy.mock_auth.observe_latency(self.loop.time() - self._connect_started)
                    self._connect_started = None
                elif self._forwarded_at is not None:  # its answer to a client's authentication message
                    self.proxy.mock_auth.observe_step(self.loop.time() - self._forwarded_at)
                self._forwarded_at = None
                if action.delay > 0:  # the rest (a Close, say) waits for it
                    self.loop.call_later(action.delay, self._send_then_run, action.data, actions[index + 1:])
                    return
                if self.transport is not None:
                    self.transport.write(action.data)
            elif isinstance(action, s.Rejected):
                self._rejected(action.reason)
            elif isinstance(action, s.SendToBackend):
                if self.session.state is s.State.AUTHENTICATING and self._connect_started is None:
                    self._forwarded_at = self.loop.time()
                if self.backend is not None and self.backend.transport is not None:
                    self.backend.transport.write(action.data)
            elif isinstance(action, s.ConnectBackend):
                self._connect_started = self.loop.time()
                self._admitted_now()
                self._spawn(self._connect(action.target))
            elif isinstance(action, s.StartClientTls):
                self._spawn(self._start_client_tls())
            elif isinstance(action, s.StartBackendTls):
                self._spawn(self._start_backend_tls(action.target))
            elif isinstance(action, s.ForwardCancel):
                self.proxy.forward_cancel(action.target, action.pid, action.secret)
            elif isinstance(action, s.WaitForResume):
                self._spawn(self._wait_for_resume(action.tenant))
            elif isinstance(action, s.Relay):
                self._relay()
            elif isinstance(action, s.Close):
                if self.session.cancel_dropped:
                    self.proxy.cancel_dropped()
                if action.rejection is not None:
                    self._rejected(action.rejection)
                self._close()

    def _rejected(self, reason: s.Reason) -> None:
        self.proxy.metrics.rejected(reason.value, self.session.rejected_tenant)
        log.info("refused %s from %s: %s", printable(self.session.user), self.session.client_address, reason.value)

    def _send_then_run(self, data: bytes, rest: list[s.Action]) -> None:
        if self._closed or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        self.run(rest)

    def _spawn(self, coroutine: object) -> None:
        task: asyncio.Task[None] = self.loop.create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _admitted_now(self) -> None:
        if not self._admitted and self.session.tenant is not None:
            self._admitted = True
            self.proxy.metrics.admitted(self.session.tenant)

    async def _wait_for_resume(self, tenant: str) -> None:
        self._cancel_timer()  # the pause has its own maximum; the startup timeout starts again after it
        admitted = await self.proxy.pauses.wait(tenant)
        if self._closed:
            return
        if not admitted:
            self.run(self.session.queue_full())
            return
        self._timer = self.loop.call_later(self.proxy.options.startup_timeout, self._timeout)
        self.run(self.session.resumed())

    async def _connect(self, target: BackendTarget) -> None:
        try:
            _, protocol = await asyncio.wait_for(
                self.loop.create_connection(lambda: BackendHandshake(self), target.dial, target.port),
                timeout=self.proxy.options.connect_timeout,
            )
        except (TimeoutError, OSError) as error:
            if not self._closed:
                log.warning("cluster %s unreachable: %s", target.cluster, error)
                self.run(self.session.backend_connect_failed())
            return
        if self._closed:
            if protocol.transport is not None:
                protocol.transport.close()
            return
        self.backend = protocol
        self.run(self.session.backend_connected())

    async def _start_client_tls(self) -> None:
        assert self.transport is not None and self.proxy.options.server_tls is not None
        try:
            transport = await self.loop.start_tls(
                self.transport, self, self.proxy.options.server_tls, server_side=True,
                ssl_handshake_timeout=self.proxy.options.startup_timeout,
            )
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as error:
            log.info("TLS handshake with %s failed: %s", self.session.client_address, error)
            self._close()
            return
        if transport is None or self._closed:
            self._close()
            return
        self.transport = transport
        self.run(self.session.client_tls_established())

    async def _start_backend_tls(self, target: BackendTarget) -> None:
        assert self.backend is not None and self.backend.transport is not None
        context = self.proxy.backend_tls.get(target.tls)
        try:
            transport = await self.loop.start_tls(
                self.backend.transport, self.backend, context,
                server_hostname=target.host if target.tls.mode == "verify-full" else None,
                ssl_handshake_timeout=self.proxy.options.connect_timeout,
            )
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as error:
            log.warning("TLS with cluster %s failed: %s", target.cluster, error)
            if not self._closed:
                self.run(self.session.backend_tls_failed())
            return
        if transport is None or self._closed:
            self._close()
            return
        self.backend.transport = transport
        self.run(self.session.backend_tls_established())

    def _relay(self) -> None:
        assert self.transport is not None and self.backend is not None and self.backend.transport is not None
        self._cancel_timer()
        self.proxy.handshakes.discard(self)
        if self.proxy.hand_off(self.session, self.transport, self.backend.transport):
            return
        link = Link(self.proxy, self.session, self.transport, self.backend.transport)
        self.proxy.links.add(link)
        link.start()
        if self.transport.is_closing() or self.backend.transport.is_closing():
            link.lost()

    def backend_lost(self) -> None:
        if self.session.state is not s.State.RELAY and not self._closed:
            self.run(self.session.backend_closed())

    def _timeout(self) -> None:
        self._timer = None
        self.run(self.session.timeout())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.close()
        for task in list(self._tasks):
            task.cancel()
        if self._admitted and self.session.tenant is not None:
            self.proxy.metrics.closed(self.session.tenant, 0, 0)
        self.session.finish()
        self.proxy.handshakes.discard(self)
        self.proxy.connection_ended()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._close()


class ProxyServer:
    def __init__(self, routes: RouteTable, options: ProxyOptions, metrics: Metrics) -> None:
        self.routes = routes
        self.options = options
        self.metrics = metrics
        self.admission = Admission(max_pending=options.max_pending_handshakes,
                                   max_pending_per_address=options.max_pending_per_address)
        self.cancel_keys = CancelKeys()
        self.mock_auth = MockAuth()
        self.pauses = TenantPauses()
        self.backend_tls = BackendContexts()
        self.policy = s.SessionPolicy(
            tls_available=options.server_tls is not None, require_tls=options.require_tls,
            max_startup_packet=options.max_startup_packet,
        )
        self.links: set[Link | NativeLink] = set()
        self.native: NativeRelay | None = None
        self.native_counters: dict[int, tuple[int, int]] = {}  # refreshed by live_links() for a scrape
        self._native_links: dict[int, NativeLink] = {}
        self._next_link_id = 0
        self.handshakes: set[ClientHandshake] = set()
        self.draining = False
        self._server: asyncio.Server | None = None
        self._idle = asyncio.Event()
        self._cancel_tasks: set[asyncio.Task[None]] = set()

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._server.sockets) if self._server is not None else []

    def live_links(self) -> Iterator[Link | NativeLink]:
        if self.native is not None:
            self.native_counters = self.native.counters()
        return iter(list(self.links))

    @property
    def relay_kind(self) -> str:
        return "native" if self.native is not None else "asyncio"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        mode = self.options.relay
        if mode == "native" or (mode == "auto" and native_available()):
            self.native = NativeRelay(loop, self.options.relay_threads, self.options.relay_nice, self._native_ended)
        self._server = await loop.create_server(
            lambda: ClientHandshake(self), self.options.host, self.options.port,
            backlog=self.options.backlog, reuse_address=True,
        )

    def hand_off(self, session: s.Session, client: asyncio.Transport, backend: asyncio.Transport) -> bool:
        """Gives a session that reached the relay state to the native relay, when there is one and it can."""
        if self.native is None:
            return False
        self._next_link_id += 1
        link = NativeLink(self, session, self._next_link_id)
        if not self.native.hand_off(link.link_id, client, backend):
            return False
        self._native_links[link.link_id] = link
        self.links.add(link)
        return True

    def _native_ended(self, link_id: int, from_client: int, from_backend: int) -> None:
        link = self._native_links.pop(link_id, None)
        if link is not None:
            link.ended(from_client, from_backend)

    def close(self) -> None:
        """Releases the native relay (after ``drain``)."""
        if self.native is not None:
            self.native.close()
            self.native = None

    def connection_ended(self) -> None:
        if self.draining and not self.links and not self.handshakes:
            self._idle.set()

    async def drain(self, timeout: float | None = None) -> int:
        """Stop accepting, wait for sessions to end (up to ``timeout``), then close the rest.

        Returns how many sessions had to be closed forcibly.
        """
        self.draining = True
        if self._server is not None:
            self._server.close()
        if self.links or self.handshakes:
            self._idle.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout if timeout is not None
                                       else self.options.drain_timeout)
        remaining = len(self.links) + len(self.handshakes)
        for link in list(self.links):
            link.abort()
        for handshake in list(self.handshakes):
            handshake.abort()
        if self._native_links:  # aborted native links are reported by the relay thread shortly
            self._idle.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 2.0)
        return remaining

    def forward_cancel(self, target: BackendTarget, pid: int, secret: bytes) -> None:
        self.metrics.cancels["forwarded"] += 1
        task = asyncio.get_running_loop().create_task(self._send_cancel(target, pid, secret))
        self._cancel_tasks.add(task)
        task.add_done_callback(self._cancel_tasks.discard)

    def cancel_dropped(self) -> None:
        self.metrics.cancels["dropped"] += 1

    async def _send_cancel(self, target: BackendTarget, pid: int, secret: bytes) -> None:
        started = time.monotonic()
        writer: asyncio.StreamWriter | None = None
        try:
            reader, opened = await asyncio.wait_for(
                asyncio.open_connection(target.dial, target.port), self.options.connect_timeout)
            writer = opened
            if target.tls.mode != "disable":
                opened.write(wire.encode_ssl_request())
                answer = await asyncio.wait_for(reader.readexactly(1), self.options.connect_timeout)
                if answer != wire.SSL_ACCEPT:
                    raise ConnectionError("cluster refused TLS")
                await opened.start_tls(
                    self.backend_tls.get(target.tls),
                    server_hostname=target.host if target.tls.mode == "verify-full" else None,
                )
            opened.write(wire.encode_cancel_request(pid, secret))
            await opened.drain()
            # The server closes the connection once it has read the request.
            await asyncio.wait_for(reader.read(1), self.options.connect_timeout)
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError, asyncio.IncompleteReadError) as error:
            log.warning("cancel request to cluster %s failed after %.1fs: %s", target.cluster,
                        time.monotonic() - started, error)
        finally:
            if writer is not None:
                writer.close()
