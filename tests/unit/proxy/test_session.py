"""The handshake state machine, driven without sockets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantctl.proxy import session as s
from tenantctl.proxy import wire
from tenantctl.proxy.admission import Admission
from tenantctl.proxy.cancel import BackendTarget, CancelKeys
from tenantctl.routing.document import NO_TLS, ClusterRoute, ClusterTls, RoutingMap, TenantRoute, seal

MAP = seal(RoutingMap(
    1, "2026-11-23T09:30:00Z",
    {"c1": ClusterRoute("10.1.0.1", 5432), "c2": ClusterRoute("10.2.0.1", 5433, ClusterTls("require"))},
    {
        "alice": TenantRoute("alice", "c1", {"app": "alice_app"}, ("127.0.0.0/8",), 2),
        "bob": TenantRoute("bob", "c2", {"app": "bob_app"}, ("127.0.0.1/32", "::1/128"), 5),
        "carol": TenantRoute("carol", "c1", {"app": "carol_app"}, ("203.0.113.0/24",), 5),
    },
))


class Harness:
    def __init__(self, address: str = "127.0.0.1", policy: s.SessionPolicy = s.SessionPolicy(),
                 routing_map: RoutingMap = MAP) -> None:
        self.admission = Admission()
        self.cancel_keys = CancelKeys()
        self.map = routing_map
        self.address = address
        self.policy = policy

    def session(self) -> s.Session:
        return s.Session(client_address=self.address, routes=lambda: self.map, admission=self.admission,
                         cancel_keys=self.cancel_keys, policy=self.policy)


def startup(**params: str) -> bytes:
    return wire.encode_startup_message(wire.StartupMessage(wire.PROTOCOL_3_0, tuple(params.items())))


def sent_to_client(actions: list[s.Action]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, s.SendToClient))


def error_of(actions: list[s.Action]) -> dict[str, str]:
    data = sent_to_client(actions)
    assert data[:1] == b"E", actions
    return wire.decode_error_fields(data[5:])


def authenticate(session: s.Session, backend_pid: int = 4242, secret: bytes = b"bsec") -> list[s.Action]:
    """Backend side of a successful login: AuthenticationOk, BackendKeyData, ReadyForQuery."""
    stream = (b"R" + struct.pack("!ii", 8, 0) + wire.encode_backend_key_data(backend_pid, secret)
              + b"S" + struct.pack("!i", 4 + 13) + b"TimeZone\x00UTC\x00" + b"Z\x00\x00\x00\x05I")
    return session.backend_data(stream)


def test_happy_path_rewrites_database_and_relays_after_ready_for_query() -> None:
    harness = Harness()
    session = harness.session()
    actions = session.client_data(startup(user="alice", database="app", application_name="t"))
    assert actions == [s.ConnectBackend(BackendTarget("c1", "10.1.0.1", 5432, NO_TLS))]
    (send,) = session.backend_connected()
    assert isinstance(send, s.SendToBackend)
    forwarded = wire.decode_startup_packet(send.data)
    assert isinstance(forwarded, wire.StartupMessage)
    assert forwarded.parameters == (("user", "alice"), ("database", "alice_app"), ("application_name", "t"))
    # Authentication bytes from the client pass through untouched.
    assert session.client_data(b"p\x00\x00\x00\x09pass\x00") == [s.SendToBackend(b"p\x00\x00\x00\x09pass\x00")]
    actions = authenticate(session)
    assert actions[-1] == s.Relay()
    assert session.state is s.State.RELAY
    assert harness.admission.active("alice") == 1
    session.finish()
    assert harness.admission.active("alice") == 0
    assert len(harness.cancel_keys) == 0


def test_client_gets_the_real_pid_and_a_cancel_reaches_the_right_backend_despite_pid_collision() -> None:
    harness = Harness()
    # The first secret drawn for the second session clashes with the first session's: another is drawn.
    draws = iter([b"sec1", b"sec1", b"sec2"])
    harness.cancel_keys = CancelKeys(random=lambda n: next(draws))
    first, second = harness.session(), harness.session()
    keys = []
    for session, user in ((first, "alice"), (second, "bob")):
        session.client_data(startup(user=user, database="app"))
        if session.target and session.target.tls.mode != "disable":
            assert session.backend_connected() == [s.SendToBackend(wire.encode_ssl_request())]
            assert session.backend_data(b"S") == [s.StartBackendTls(session.target)]
            session.backend_tls_established()
        else:
            session.backend_connected()
        actions = authenticate(session, backend_pid=777, secret=b"same")  # same pid on both clusters
        data = sent_to_client(actions)
        key_at = data.index(b"K")
        keys.append(wire.decode_backend_key_data(data[key_at + 5:key_at + 13]))
    assert keys == [(777, b"sec1"), (777, b"sec2")]  # the backend's real pid, the proxy's own secrets
    for (pid, secret), cluster in zip(keys, ("c1", "c2"), strict=True):
        canceller = harness.session()
        actions = canceller.client_data(wire.encode_cancel_request(pid, secret))
        forward = actions[0]
        assert isinstance(forward, s.ForwardCancel)
        assert (forward.target.cluster, forward.pid, forward.secret) == (cluster, 777, b"same")
        assert actions[-1] == s.Close()


def test_unknown_or_wrong_cancel_keys_are_dropped_silently() -> None:
    harness = Harness()
    session = harness.session()
    session.client_data(startup(user="alice", database="app"))
    session.backend_connected()
    data = sent_to_client(authenticate(session))
    pid, _secret = wire.decode_backend_key_data(data[data.index(b"K") + 5:][:8])
    for request in (wire.encode_cancel_request(pid, b"nope"), wire.encode_cancel_request(pid + 999, b"abcd")):
        canceller = harness.session()
        assert canceller.client_data(request) == [s.Close()]
        assert canceller.cancel_dropped


def test_unknown_tenant_unknown_database_and_address_get_one_ambiguous_message() -> None:
    messages = {}
    for name, user, database, address in (
        ("unknown tenant", "mallory", "app", "127.0.0.1"),
        ("unknown database", "alice", "postgres", "127.0.0.1"),
        ("physical name", "alice", "alice_app", "127.0.0.1"),
        ("address", "carol", "app", "127.0.0.1"),
    ):
        session = Harness(address=address).session()
        actions = session.client_data(startup(user=user, database=database))
        fields = error_of(actions)
        assert fields["C"] == "28000"
        assert isinstance(actions[-1], s.Close)
        messages[name] = fields["M"].replace(f"\"{database}\"", "D").replace(f"\"{user}\"", "U")
    assert len(set(messages.values())) == 1, messages
    assert messages["address"] == 'no pg_hba.conf entry for host "127.0.0.1", user U, database D, no encryption'


def test_ipv6_and_ipv4_mapped_addresses_are_matched() -> None:
    for address in ("::1", "::ffff:127.0.0.1"):
        session = Harness(address=address).session()
        assert isinstance(session.client_data(startup(user="bob", database="app"))[0], s.ConnectBackend)


def test_per_tenant_connection_limit_is_53300_and_slots_are_released() -> None:
    harness = Harness()
    admitted = [harness.session() for _ in range(2)]
    for session in admitted:
        assert isinstance(session.client_data(startup(user="alice", database="app"))[0], s.ConnectBackend)
        session.backend_connected()
        assert authenticate(session)[-1] == s.Relay()
    refused = harness.session()
    actions = refused.client_data(startup(user="alice", database="app"))
    assert error_of(actions)["C"] == "53300"
    assert actions[-1] == s.Close(s.Reason.TOO_MANY_CONNECTIONS)
    admitted[0].finish()
    admitted[0].finish()  # idempotent
    assert isinstance(harness.session().client_data(startup(user="alice", database="app"))[0], s.ConnectBackend)


def test_clients_that_never_finish_authenticating_hold_no_tenant_slot() -> None:
    harness = Harness()
    stalled = [harness.session() for _ in range(20)]  # alice's limit is 2
    for session in stalled:
        assert isinstance(session.client_data(startup(user="alice", database="app"))[0], s.ConnectBackend)
        session.backend_connected()
    assert harness.admission.active("alice") == 0 and harness.admission.pending("127.0.0.1") == 20
    real = harness.session()
    real.client_data(startup(user="alice", database="app"))
    real.backend_connected()
    assert authenticate(real)[-1] == s.Relay()
    assert harness.admission.active("alice") == 1 and harness.admission.pending() == 20
    for session in stalled:
        session.timeout()
        session.finish()
    assert harness.admission.pending() == 0 and harness.admission.active("alice") == 1


def test_the_tenant_limit_is_enforced_when_authentication_completes() -> None:
    harness = Harness()
    racing = [harness.session() for _ in range(3)]
    for session in racing:  # all three pass the early check while none is established yet
        assert isinstance(session.client_data(startup(user="alice", database="app"))[0], s.ConnectBackend)
        session.backend_connected()
    assert authenticate(racing[0])[-1] == s.Relay()
    assert authenticate(racing[1])[-1] == s.Relay()
    actions = authenticate(racing[2])
    assert error_of(actions)["C"] == "53300" and actions[-1] == s.Close(s.Reason.TOO_MANY_CONNECTIONS)
    assert b"Z" not in sent_to_client(actions)[:1]
    for session in racing:
        session.finish()
    assert harness.admission.active("alice") == 0 and harness.admission.pending() == 0


def test_pending_handshakes_are_capped_per_address_and_globally() -> None:
    harness = Harness()
    harness.admission = Admission(max_pending=5, max_pending_per_address=3)
    for _ in range(3):
        assert isinstance(harness.session().client_data(startup(user="alice", database="app"))[0], s.ConnectBackend)
    actions = harness.session().client_data(startup(user="alice", database="app"))
    assert error_of(actions)["C"] == "53300" and actions[-1] == s.Close(s.Reason.TOO_MANY_HANDSHAKES)
    other = Harness(address="127.0.0.2")
    other.admission = harness.admission
    for _ in range(2):
        assert isinstance(other.session().client_data(startup(user="alice", database="app"))[0], s.ConnectBackend)
    actions = other.session().client_data(startup(user="alice", database="app"))
    assert actions[-1] == s.Close(s.Reason.TOO_MANY_HANDSHAKES)  # the global cap of 5


def test_a_repeated_startup_parameter_is_refused_before_routing() -> None:
    for params in ((("user", "alice"), ("database", "app"), ("user", "postgres")),
                   (("user", "alice"), ("database", "app"), ("database", "postgres")),
                   (("user", "alice"), ("database", "app"), ("options", "-c a=b"), ("options", "-c c=d"))):
        harness = Harness()
        session = harness.session()
        packet = wire.encode_startup_message(wire.StartupMessage(wire.PROTOCOL_3_0, params))
        actions = session.client_data(packet)
        assert error_of(actions)["C"] == "08P01", params
        assert actions[-1] == s.Close(s.Reason.DUPLICATE_PARAMETER)
        assert not any(isinstance(a, s.ConnectBackend) for a in actions)
        assert session.tenant is None and harness.admission.pending() == 0


_KEYS = st.sampled_from(["user", "database", "options", "application_name", "client_encoding", "x"])
_VALUES = st.sampled_from(["alice", "bob", "postgres", "app", "admin", "-c role=postgres", ""])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_KEYS, _VALUES), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=wire.MAX_STARTUP_PACKET))
def test_the_backend_never_sees_a_user_other_than_the_admitted_tenant(
        params: list[tuple[str, str]], padding: int) -> None:
    if padding % 3 == 0:
        params = [*params, ("application_name_pad", "p" * padding)]
    session = Harness().session()
    actions = session.client_data(wire.encode_startup_message(wire.StartupMessage(wire.PROTOCOL_3_0, tuple(params))))
    if not any(isinstance(a, s.ConnectBackend) for a in actions):
        return
    (send,) = session.backend_connected()
    if send == s.SendToBackend(wire.encode_ssl_request()):  # a cluster on TLS: the startup follows the handshake
        assert session.backend_data(wire.SSL_ACCEPT)
        (send,) = session.backend_tls_established()
    assert isinstance(send, s.SendToBackend)
    forwarded = wire.decode_startup_packet(send.data)
    assert isinstance(forwarded, wire.StartupMessage)
    users = [value for key, value in forwarded.parameters if key == "user"]
    assert users == [session.tenant], (params, forwarded.parameters)
    keys = [key for key, _ in forwarded.parameters]
    assert len(keys) == len(set(keys))


def test_ssl_request_is_refused_without_a_certificate_and_gssenc_always() -> None:
    session = Harness().session()
    actions = session.client_data(wire.encode_gssenc_request() + wire.encode_ssl_request())
    assert actions == [s.SendToClient(b"N"), s.SendToClient(b"N")]
    assert isinstance(session.client_data(startup(user="alice", database="app"))[0], s.ConnectBackend)


def test_ssl_request_with_a_certificate_starts_tls_and_refuses_injected_plaintext() -> None:
    policy = s.SessionPolicy(tls_available=True, require_tls=True)
    session = Harness(policy=policy).session()
    assert session.client_data(wire.encode_ssl_request()) == [s.SendToClient(b"S"), s.StartClientTls()]
    session.client_tls_established()
    assert isinstance(session.client_data(startup(user="alice", database="app"))[0], s.ConnectBackend)
    injected = Harness(policy=policy).session()
    actions = injected.client_data(wire.encode_ssl_request() + startup(user="alice", database="app"))
    assert error_of(actions)["C"] == "08P01"


def test_require_tls_refuses_plaintext_startup() -> None:
    session = Harness(policy=s.SessionPolicy(tls_available=True, require_tls=True)).session()
    actions = session.client_data(startup(user="alice", database="app"))
    assert error_of(actions)["C"] == "28000"
    assert actions[-1] == s.Close(s.Reason.TLS_REQUIRED)


def test_backend_that_refuses_tls_or_cannot_be_reached_gives_08001_naming_only_the_cluster() -> None:
    session = Harness().session()
    session.client_data(startup(user="bob", database="app"))
    session.backend_connected()
    fields = error_of(session.backend_data(b"N"))
    assert fields["C"] == "08001" and "c2" in fields["M"] and "10.2.0.1" not in fields["M"]
    harness = Harness()
    unreachable = harness.session()
    unreachable.client_data(startup(user="alice", database="app"))
    fields = error_of(unreachable.backend_connect_failed())
    assert fields == {"S": "FATAL", "V": "FATAL", "C": "08001", "M": 'could not connect to cluster "c1"'}
    unreachable.finish()
    assert harness.admission.active("alice") == 0


def test_fragmented_startup_and_oversized_packets() -> None:
    session = Harness().session()
    packet = startup(user="alice", database="app")
    for byte in packet[:-1]:
        assert session.client_data(bytes([byte])) == []
    assert isinstance(session.client_data(packet[-1:])[0], s.ConnectBackend)
    small = Harness(policy=s.SessionPolicy(max_startup_packet=64)).session()
    actions = small.client_data(startup(user="alice", database="a" * 100))
    assert error_of(actions)["C"] == "08P01"
    assert actions[-1] == s.Close(s.Reason.MALFORMED_STARTUP)


def test_timeout_refuses_until_relaying() -> None:
    session = Harness().session()
    session.client_data(startup(user="alice", database="app")[:5])
    actions = session.timeout()
    assert error_of(actions)["C"] == "08P01"
    assert actions[-1] == s.Close(s.Reason.STARTUP_TIMEOUT)


def test_removed_tenant_gets_no_new_connections() -> None:
    harness = Harness()
    live = harness.session()
    live.client_data(startup(user="alice", database="app"))
    harness.map = seal(RoutingMap(2, MAP.generated_at, MAP.clusters,
                                  {k: v for k, v in MAP.tenants.items() if k != "alice"}))
    assert error_of(harness.session().client_data(startup(user="alice", database="app")))["C"] == "28000"
    assert live.backend_connected()  # the session admitted under the old map carries on


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=64), max_size=8))
def test_random_client_bytes_never_raise_and_never_leak_a_slot(chunks: list[bytes]) -> None:
    harness = Harness()
    session = harness.session()
    for chunk in [startup(user="alice", database="app")[:3], *chunks]:
        for action in session.client_data(chunk):
            assert not isinstance(action, s.StartBackendTls)
    session.timeout()
    session.finish()
    assert harness.admission.total() == 0 and harness.admission.pending() == 0


def _sasl_initial(client_first: bytes, mechanism: bytes = b"SCRAM-SHA-256") -> bytes:
    body = mechanism + b"\x00" + struct.pack("!i", len(client_first)) + client_first
    return b"p" + struct.pack("!i", 4 + len(body)) + body


def _sasl_response(data: bytes) -> bytes:
    return b"p" + struct.pack("!i", 4 + len(data)) + data


def test_refusals_run_a_mock_scram_exchange_that_ends_like_a_wrong_password() -> None:
    from tenantctl.proxy.mock_auth import MockAuth

    mock = MockAuth(secret=b"k" * 32)
    mock.observe_latency(0.004)
    salts = set()
    for user, database, address, reason in (("mallory", "app", "127.0.0.1", s.Reason.UNKNOWN_TENANT),
                                            ("alice", "postgres", "127.0.0.1", s.Reason.UNKNOWN_DATABASE),
                                            ("carol", "app", "127.0.0.1", s.Reason.ADDRESS_NOT_ALLOWED)):
        harness = Harness(address=address)
        session = s.Session(client_address=address, routes=lambda: MAP, admission=harness.admission,
                            cancel_keys=harness.cancel_keys, mock_auth=mock)
        actions = session.client_data(startup(user=user, database=database))
        assert actions[0] == s.Rejected(reason)
        offer = actions[1]
        assert isinstance(offer, s.SendToClient) and offer.delay == pytest.approx(0.004)
        assert offer.data == b"R" + struct.pack("!ii", 23, 10) + b"SCRAM-SHA-256\x00\x00"
        assert not any(isinstance(a, (s.ConnectBackend, s.Close)) for a in actions)
        assert harness.admission.pending(address) == 1  # a mock exchange holds a pending slot like a real one
        (challenge,) = session.client_data(_sasl_initial(b"n,,n=,r=clientnonce"))
        assert isinstance(challenge, s.SendToClient) and challenge.data[5:9] == struct.pack("!i", 11)
        fields = dict(p.split(b"=", 1) for p in challenge.data[9:].split(b","))
        assert fields[b"r"].startswith(b"clientnonce") and fields[b"i"] == b"4096"
        salts.add((user, fields[b"s"]))
        failure, close = session.client_data(_sasl_response(b"c=biws,r=" + fields[b"r"] + b",p=AAAA"))
        assert isinstance(failure, s.SendToClient) and close == s.Close()
        error = wire.decode_error_fields(failure.data[5:])
        assert error == {"S": "FATAL", "V": "FATAL", "C": "28P01", "F": "auth.c", "L": "326", "R": "auth_failed",
                         "M": f'password authentication failed for user "{user}"'}
        session.finish()
        assert harness.admission.pending() == 0 and harness.admission.total() == 0
    assert len({salt for _, salt in salts}) == 3  # one salt per user name (stable: see the integration test)


def test_the_mock_learns_iterations_and_failure_fields_from_real_backends() -> None:
    from tenantctl.proxy.mock_auth import MockAuth

    mock = MockAuth()
    body = struct.pack("!i", 11) + b"r=abc,s=c2FsdA==,i=10000"
    mock.observe_backend_message(b"R", b"R" + struct.pack("!i", 4 + len(body)) + body)
    error = wire.encode_error("28P01", 'password authentication failed for user "x"')
    mock.observe_backend_message(b"E", error[:-1] + b"Fauth.c\x00L999\x00Rauth_failed\x00\x00")
    server_first = mock.server_first("u", b"n,,n=,r=xyz")
    assert server_first is not None and server_first.endswith(b",i=10000")
    assert wire.decode_error_fields(mock.failure("u")[5:])["L"] == "999"
    assert mock.server_first("u", b"garbage") is None


def test_mock_exchanges_count_against_the_pending_handshake_caps() -> None:
    from tenantctl.proxy.mock_auth import MockAuth

    admission = Admission(max_pending=100, max_pending_per_address=2)
    sessions = [s.Session(client_address="127.0.0.1", routes=lambda: MAP, admission=admission,
                          cancel_keys=CancelKeys(), mock_auth=MockAuth()) for _ in range(3)]
    for session in sessions[:2]:
        assert isinstance(session.client_data(startup(user="mallory", database="app"))[0], s.Rejected)
    actions = sessions[2].client_data(startup(user="mallory", database="app"))
    assert actions[-1] == s.Close(s.Reason.TOO_MANY_HANDSHAKES)
    for session in sessions:
        session.finish()
    assert admission.pending() == 0


def test_a_malformed_or_unexpected_message_in_the_mock_exchange_ends_it() -> None:
    from tenantctl.proxy.mock_auth import MockAuth

    for message, expected in ((_sasl_initial(b"n,,n=,r=x", mechanism=b"SCRAM-SHA-256-PLUS"), "08P01"),
                              (_sasl_initial(b"not scram"), "08P01"), (b"X\x00\x00\x00\x04", None)):
        session = s.Session(client_address="127.0.0.1", routes=lambda: MAP, admission=Admission(),
                            cancel_keys=CancelKeys(), mock_auth=MockAuth())
        session.client_data(startup(user="mallory", database="app"))
        actions = session.client_data(message)
        assert actions[-1] == s.Close()
        if expected:
            assert error_of(actions)["C"] == expected
        assert session.state is s.State.CLOSED


def test_a_cluster_behind_a_hostaddr_is_dialled_there_and_verified_by_name() -> None:
    tls = ClusterTls("verify-full", "/p/ca.pem")
    tunnelled = seal(RoutingMap(1, "2026-11-23T09:30:00Z", {
        "c1": ClusterRoute("c1.cluster-x.eu-west-1.rds.amazonaws.com", 40001, tls, hostaddr="127.0.0.1")},
        {"alice": MAP.tenants["alice"]}))
    (action,) = Harness(routing_map=tunnelled).session().client_data(startup(user="alice", database="app"))
    assert action == s.ConnectBackend(BackendTarget("c1", "c1.cluster-x.eu-west-1.rds.amazonaws.com", 40001, tls,
                                                    "127.0.0.1"))
    assert action.target.dial == "127.0.0.1" and action.target.host.endswith(".rds.amazonaws.com")
