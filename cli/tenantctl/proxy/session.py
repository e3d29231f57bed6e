"""One client connection's handshake as a pure state machine (no sockets, no clock, no event loop).

The server feeds events (``client_data``, ``backend_connected``, ``backend_data``...) and carries
out the returned actions. The machine ends either with ``Close`` or with ``Relay``: from then on
the server copies bytes both ways without looking at them.

    STARTUP --StartupMessage--> CONNECTING --connected--> [BACKEND_TLS] --> AUTHENTICATING
    AUTHENTICATING --ReadyForQuery--> RELAY
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from tenantctl.proxy import wire
from tenantctl.proxy.admission import Admission
from tenantctl.proxy.cancel import BackendTarget, CancelKeys
from tenantctl.proxy.mock_auth import SCRAM, MockAuth, parse_sasl_initial
from tenantctl.routing.document import RoutingMap


class Reason(enum.StrEnum):
    """Why a connection was refused (the ``reason`` label of the rejection metric)."""

    MALFORMED_STARTUP = "malformed_startup"
    DUPLICATE_PARAMETER = "duplicate_startup_parameter"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    TLS_REQUIRED = "tls_required"
    UNKNOWN_TENANT = "unknown_tenant"
    UNKNOWN_DATABASE = "unknown_database"
    ADDRESS_NOT_ALLOWED = "address_not_allowed"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    TOO_MANY_HANDSHAKES = "too_many_pending_handshakes"
    BACKEND_UNREACHABLE = "backend_unreachable"
    BACKEND_TLS_UNAVAILABLE = "backend_tls_unavailable"
    STARTUP_TIMEOUT = "startup_timeout"
    BACKEND_PROTOCOL = "backend_protocol_error"


# --- actions the server carries out -------------------------------------------------------------

@dataclass(frozen=True)
class SendToClient:
    data: bytes
    delay: float = 0.0  # seconds to wait before sending (the mock exchange paces itself like a backend)


@dataclass(frozen=True)
class Rejected:
    """The connection is refused (counted and logged now); the mock exchange that hides it goes on."""

    reason: Reason


@dataclass(frozen=True)
class SendToBackend:
    data: bytes


@dataclass(frozen=True)
class StartClientTls:
    """Upgrade the client connection to TLS (the 'S' answer was already sent)."""


@dataclass(frozen=True)
class ConnectBackend:
    target: BackendTarget


@dataclass(frozen=True)
class StartBackendTls:
    target: BackendTarget


@dataclass(frozen=True)
class ForwardCancel:
    target: BackendTarget
    pid: int
    secret: bytes


@dataclass(frozen=True)
class WaitForResume:
    """The tenant is paused: hold the connection until its pause ends, then call ``Session.resumed``."""

    tenant: str


@dataclass(frozen=True)
class Relay:
    """The handshake is over: copy bytes both ways from now on."""


@dataclass(frozen=True)
class Close:
    """Close the client (after flushing) and the backend, if any."""

    rejection: Reason | None = None


Action = (SendToClient | SendToBackend | StartClientTls | ConnectBackend | StartBackendTls | ForwardCancel
          | WaitForResume | Relay | Close | Rejected)


class State(enum.Enum):
    STARTUP = "startup"
    PAUSED = "paused"  # routed to a paused tenant: waiting for the pause to end
    CONNECTING = "connecting"
    BACKEND_TLS = "backend_tls"
    AUTHENTICATING = "authenticating"
    MOCK_AUTH = "mock_auth"  # refused, but running a SCRAM exchange that ends like a wrong password
    RELAY = "relay"
    CLOSED = "closed"


@dataclass(frozen=True)
class SessionPolicy:
    tls_available: bool = False  # a certificate is configured: answer SSLRequest with 'S'
    require_tls: bool = False  # refuse StartupMessages that did not come over TLS
    max_startup_packet: int = wire.MAX_STARTUP_PACKET
    max_pending_bytes: int = 64 * 1024  # client bytes buffered while the backend connects


@functools.lru_cache(maxsize=65536)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def address_allowed(address: str, cidrs: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in _network(cidr) for cidr in cidrs)


def hba_style_refusal(address: str, user: str, database: str, encrypted: bool) -> bytes:
    """One message for unknown tenant, unknown database and address not allowed (no enumeration)."""
    encryption = "SSL encryption" if encrypted else "no encryption"
    return wire.encode_error(
        "28000",
        f'no pg_hba.conf entry for host "{address}", user "{user}", database "{database}", {encryption}',
    )


CHANNEL_BINDING_UNSUPPORTED = wire.encode_error(
    "08P01", "SCRAM channel binding is not supported through the tenantctl proxy: connect with "
    "channel_binding=disable (the connection to the proxy stays encrypted with TLS)",
    detail="The proxy terminates TLS, so a binding to the client's TLS session names the proxy's certificate, "
           "which the cluster cannot verify.")


def _is_channel_binding_error(message: bytes) -> bool:
    """The backend refused the client's SCRAM gs2 flag ('y': the client supports channel binding but was
    not offered it, because the proxy strips SCRAM-SHA-256-PLUS)."""
    return "channel binding" in wire.decode_error_fields(message[5:]).get("M", "")


TOO_MANY_CLIENTS = wire.encode_error("53300", "sorry, too many clients already")  # pending handshakes


def _too_many(user: str) -> bytes:
    return wire.encode_error("53300", f'too many connections for role "{user}"')


class Session:
    """The handshake of one client connection."""

    def __init__(
        self,
        *,
        client_address: str,
        routes: Callable[[], RoutingMap],
        admission: Admission,
        cancel_keys: CancelKeys,
        policy: SessionPolicy = SessionPolicy(),
        mock_auth: MockAuth | None = None,
        paused: Callable[[str], bool] | None = None,
    ) -> None:
        self.client_address = client_address
        self._paused = paused
        self._held_startup: wire.StartupMessage | None = None  # while PAUSED
        self._routes = routes
        self._admission = admission
        self._cancel_keys = cancel_keys
        self._policy = policy
        self.state = State.STARTUP
        self.client_tls = False
        self.tenant: str | None = None  # set once routed to a tenant
        self._limit = 0  # the routed tenant's max_connections
        self._holds_slot = False  # an established slot of ``tenant`` (after authentication)
        self._pending = False  # a pending-handshake slot of ``client_address``
        self.user: str | None = None
        self.target: BackendTarget | None = None
        self.proxy_key: tuple[int, bytes] | None = None
        self.rejection: Reason | None = None
        self.cancel_dropped = False  # a CancelRequest with an unknown key (dropped silently)
        self.rejected_tenant: str | None = None  # only for tenants that exist (never the raw user)
        self.tenant_waiting: str | None = None  # the paused tenant this connection waits for
        self._buffer = bytearray()
        self._pending_to_backend = bytearray()
        self._startup: bytes = b""
        self._backend_messages = wire.MessageSplitter()
        self._mock_auth = mock_auth
        self._mock_step = 0
        self._client_messages = wire.MessageSplitter(max_length=policy.max_startup_packet)

    # --- events from the client ---------------------------------------------------------------

    def client_data(self, data: bytes) -> list[Action]:
        if self.state is State.STARTUP:
            self._buffer += data
            return self._read_startup_packets()
        if self.state is State.PAUSED:
            self._buffer += data
            if len(self._buffer) > self._policy.max_pending_bytes:
                return self._refuse(Reason.MALFORMED_STARTUP, wire.encode_error(
                    "08P01", "too much data before authentication"))
            return []
        if self.state in (State.CONNECTING, State.BACKEND_TLS):
            self._pending_to_backend += data
            if len(self._pending_to_backend) > self._policy.max_pending_bytes:
                return self._refuse(Reason.MALFORMED_STARTUP, wire.encode_error(
                    "08P01", "too much data before authentication"))
            return []
        if self.state is State.AUTHENTICATING:
            return [SendToBackend(bytes(data))]
        if self.state is State.MOCK_AUTH:
            return self._mock_client_data(data)
        return []

    def client_tls_established(self) -> list[Action]:
        self.client_tls = True
        return self._read_startup_packets() if self._buffer else []

    def timeout(self) -> list[Action]:
        """The startup timeout expired; no-op once relaying."""
        if self.state in (State.RELAY, State.CLOSED):
            return []
        if self.state is State.MOCK_AUTH:  # already counted as refused
            self.state = State.CLOSED
            return [SendToClient(wire.encode_error("08P01", "canceling authentication due to timeout")), Close()]
        return self._refuse(Reason.STARTUP_TIMEOUT, wire.encode_error(
            "08P01", "canceling authentication due to timeout"))

    def resumed(self) -> list[Action]:
        """The tenant's pause ended: route again with the map in force now (it may have moved)."""
        if self.state is not State.PAUSED or self._held_startup is None:
            return []
        startup, self._held_startup = self._held_startup, None
        self.state = State.STARTUP
        return self._route(startup)

    def queue_full(self) -> list[Action]:
        """The paused tenant's queue is full: refused like a connection over its limit."""
        return self._refuse(Reason.TOO_MANY_CONNECTIONS, _too_many(self.user or ""), tenant=self.tenant_waiting)

    # --- events from the backend ----------------------------------------------------------------

    def backend_connected(self) -> list[Action]:
        assert self.target is not None
        if self.target.tls.mode != "disable":
            self.state = State.BACKEND_TLS
            return [SendToBackend(wire.encode_ssl_request())]
        return self._send_startup()

    def backend_connect_failed(self) -> list[Action]:
        assert self.target is not None
        return self._refuse(Reason.BACKEND_UNREACHABLE, wire.encode_error(
            "08001", f'could not connect to cluster "{self.target.cluster}"'))

    def backend_tls_established(self) -> list[Action]:
        return self._send_startup()

    def backend_tls_failed(self) -> list[Action]:
        assert self.target is not None
        return self._refuse(Reason.BACKEND_TLS_UNAVAILABLE, wire.encode_error(
            "08001", f'could not establish TLS with cluster "{self.target.cluster}"'))

    def backend_data(self, data: bytes) -> list[Action]:
        if self.state is State.BACKEND_TLS:
            if data[:1] == wire.SSL_ACCEPT and len(data) == 1:
                return [StartBackendTls(self.target)] if self.target else []
            return self.backend_tls_failed()
        if self.state is not State.AUTHENTICATING:
            return []
        try:
            messages = self._backend_messages.feed(data)
        except wire.ProtocolViolation:
            return self._refuse(Reason.BACKEND_PROTOCOL, wire.encode_error(
                "08P01", "invalid response from the database cluster"))
        out = bytearray()
        for kind, message in messages:
            if self._mock_auth is not None:
                self._mock_auth.observe_backend_message(kind, message)
            if kind == b"K":
                out += self._swap_backend_key(message)
                continue
            if kind == b"R":
                message = wire.without_channel_binding(message)
            elif kind == b"E" and self.client_tls and _is_channel_binding_error(message):
                self.state = State.CLOSED
                return [SendToClient(bytes(out) + CHANNEL_BINDING_UNSUPPORTED), Close()]
            out += message
            if kind == b"Z":
                if not self._establish():
                    assert self.tenant is not None
                    return self._refuse(Reason.TOO_MANY_CONNECTIONS, _too_many(self.user or ""),
                                        tenant=self.tenant)
                out += self._backend_messages.take_rest()
                self.state = State.RELAY
                return [SendToClient(bytes(out)), Relay()]
        return [SendToClient(bytes(out))] if out else []

    def backend_closed(self) -> list[Action]:
        if self.state is State.CLOSED:
            return []
        self.state = State.CLOSED
        return [Close()]

    # --- teardown -------------------------------------------------------------------------------

    def finish(self) -> None:
        """Release the admission slot and the cancel key (idempotent; call when the client is gone)."""
        if self._pending:
            self._admission.end_handshake(self.client_address)
            self._pending = False
        if self._holds_slot and self.tenant is not None:
            self._admission.release(self.tenant)
            self._holds_slot = False
        if self.proxy_key is not None:
            self._cancel_keys.unregister(*self.proxy_key)
            self.proxy_key = None
        self.state = State.CLOSED

    # --- internals ------------------------------------------------------------------------------

    def _read_startup_packets(self) -> list[Action]:
        actions: list[Action] = []
        while self.state is State.STARTUP:
            try:
                length = wire.startup_packet_length(self._buffer, self._policy.max_startup_packet)
                if length is None or len(self._buffer) < length:
                    return actions
                packet = bytes(self._buffer[:length])
                del self._buffer[:length]
                decoded = wire.decode_startup_packet(packet)
            except wire.ProtocolViolation as violation:
                if isinstance(violation, wire.DuplicateParameter):
                    reason = Reason.DUPLICATE_PARAMETER
                elif violation.sqlstate == "0A000":
                    reason = Reason.UNSUPPORTED_PROTOCOL
                else:
                    reason = Reason.MALFORMED_STARTUP
                return actions + self._refuse(reason, wire.encode_error(violation.sqlstate, str(violation)))
            if isinstance(decoded, wire.SSLRequest):
                if self.client_tls or not self._policy.tls_available:
                    actions.append(SendToClient(wire.SSL_REFUSE))
                    continue
                if self._buffer:  # bytes sent before the TLS handshake could be injected (CVE-2021-23214)
                    return actions + self._refuse(Reason.MALFORMED_STARTUP, wire.encode_error(
                        "08P01", "received unencrypted data after SSL request"))
                return [*actions, SendToClient(wire.SSL_ACCEPT), StartClientTls()]
            if isinstance(decoded, wire.GSSENCRequest):
                actions.append(SendToClient(wire.GSSENC_REFUSE))
                continue
            if isinstance(decoded, wire.CancelRequest):
                return actions + self._cancel(decoded)
            return actions + self._route(decoded)
        return actions

    def _cancel(self, request: wire.CancelRequest) -> list[Action]:
        self.state = State.CLOSED
        entry = self._cancel_keys.lookup(request.pid, request.secret, self.client_address)
        if entry is None:
            self.cancel_dropped = True
            return [Close()]
        return [ForwardCancel(entry.target, entry.backend_pid, entry.backend_secret), Close()]

    def _route(self, startup: wire.StartupMessage) -> list[Action]:
        user = startup.user or ""
        database = startup.database or ""
        self.user = user
        refusal = hba_style_refusal(self.client_address, user, database, self.client_tls)
        if not user:
            return self._refuse(Reason.MALFORMED_STARTUP, wire.encode_error(
                "28000", "no PostgreSQL user name specified in startup packet"))
        if self._policy.require_tls and not self.client_tls:
            return self._refuse(Reason.TLS_REQUIRED, refusal)
        routing_map = self._routes()
        route = routing_map.tenants.get(user)
        if route is None:
            return self._mock(Reason.UNKNOWN_TENANT, refusal)
        # Metric labels name a tenant only for clients inside its allowed ranges: anyone else could
        # otherwise mint a series per tenant name they guess.
        if not address_allowed(self.client_address, route.allowed_cidrs):
            return self._mock(Reason.ADDRESS_NOT_ALLOWED, refusal)
        physical = route.databases.get(database)
        if physical is None:
            return self._mock(Reason.UNKNOWN_DATABASE, refusal, tenant=route.tenant)
        cluster = routing_map.clusters.get(route.cluster)
        if cluster is None:  # cannot happen with a validated map
            return self._refuse(Reason.UNKNOWN_TENANT, refusal)
        if self._paused is not None and self._paused(route.tenant):
            self.state = State.PAUSED
            self._held_startup = startup
            self.tenant_waiting = route.tenant
            return [WaitForResume(route.tenant)]
        if not self._admission.has_room(route.tenant, route.max_connections):
            return self._refuse(Reason.TOO_MANY_CONNECTIONS, _too_many(user), tenant=route.tenant)
        if not self._admission.try_begin_handshake(self.client_address):
            return self._refuse(Reason.TOO_MANY_HANDSHAKES, TOO_MANY_CLIENTS)
        self._pending = True
        self.tenant = route.tenant
        self._limit = route.max_connections
        self.target = BackendTarget(route.cluster, cluster.host, cluster.port, cluster.tls, cluster.hostaddr)
        self._startup = wire.encode_startup_message(startup.replace("database", physical))
        self._pending_to_backend += self._buffer
        self._buffer.clear()
        self.state = State.CONNECTING
        return [ConnectBackend(self.target)]

    def _establish(self) -> bool:
        """Trade the pending-handshake slot for an established slot of the tenant."""
        assert self.tenant is not None
        if self._pending:
            self._admission.end_handshake(self.client_address)
            self._pending = False
        if not self._admission.try_acquire(self.tenant, self._limit):
            return False
        self._holds_slot = True
        return True

    def _send_startup(self) -> list[Action]:
        self.state = State.AUTHENTICATING
        data = self._startup + bytes(self._pending_to_backend)
        self._pending_to_backend.clear()
        return [SendToBackend(data)]

    def _swap_backend_key(self, message: bytes) -> bytes:
        assert self.target is not None
        backend_pid, backend_secret = wire.decode_backend_key_data(message[5:])
        if self.proxy_key is not None:
            self._cancel_keys.unregister(*self.proxy_key)
        self.proxy_key = self._cancel_keys.register(self.target, backend_pid, backend_secret)
        return wire.encode_backend_key_data(*self.proxy_key)

    def _mock(self, reason: Reason, refusal: bytes, *, tenant: str | None = None) -> list[Action]:
        """Refuse, but the way a backend refuses a wrong password (no tenant or database enumeration)."""
        if self._mock_auth is None:
            return self._refuse(reason, refusal, tenant=tenant)
        if not self._admission.try_begin_handshake(self.client_address):  # mock exchanges hold sockets too
            return self._refuse(Reason.TOO_MANY_HANDSHAKES, TOO_MANY_CLIENTS)
        self._pending = True
        self.rejection = reason
        self.rejected_tenant = tenant
        self.state = State.MOCK_AUTH
        leftover = bytes(self._buffer)
        self._buffer.clear()
        actions: list[Action] = [Rejected(reason),
                                 SendToClient(self._mock_auth.sasl_request(), delay=self._mock_auth.latency)]
        return actions + (self._mock_client_data(leftover) if leftover else [])

    def _mock_client_data(self, data: bytes) -> list[Action]:
        assert self._mock_auth is not None
        try:
            messages = self._client_messages.feed(data)
        except wire.ProtocolViolation as violation:
            self.state = State.CLOSED
            return [SendToClient(wire.encode_error("08P01", str(violation))), Close()]
        for kind, message in messages:
            if kind != b"p":  # a Terminate, or anything a backend would not take here
                self.state = State.CLOSED
                return [Close()]
            user = self.user or ""
            if self._mock_step == 0:
                initial = parse_sasl_initial(message[5:])
                challenge = (self._mock_auth.server_first(user, initial[1])
                             if initial is not None and initial[0] == SCRAM else None)
                if challenge is None:
                    self.state = State.CLOSED
                    return [SendToClient(wire.encode_error("08P01", "malformed SCRAM message")), Close()]
                self._mock_step = 1
                return [SendToClient(challenge, delay=self._mock_auth.step)]
            self.state = State.CLOSED
            return [SendToClient(self._mock_auth.failure(user), delay=self._mock_auth.step), Close()]
        return []

    def _refuse(self, reason: Reason, error: bytes, *, tenant: str | None = None) -> list[Action]:
        self.rejection = reason
        self.rejected_tenant = tenant
        self.state = State.CLOSED
        return [SendToClient(error), Close(reason)]
