"""Per-tenant pause: the session waits and re-routes with the map in force at resume; the registry
bounds queues and always ends a pause."""

from __future__ import annotations

import asyncio
import struct

import pytest

from tenantctl.proxy import session as s
from tenantctl.proxy import wire
from tenantctl.proxy.admission import Admission
from tenantctl.proxy.cancel import BackendTarget, CancelKeys
from tenantctl.proxy.pause import TenantPauses
from tenantctl.routing.document import NO_TLS, ClusterRoute, RoutingMap, TenantRoute, seal


def _map(cluster: str, serial: int) -> RoutingMap:
    return seal(RoutingMap(
        serial, "2026-11-23T09:30:00Z",
        {"c1": ClusterRoute("10.1.0.1", 5432), "c2": ClusterRoute("10.2.0.1", 5433)},
        {"alice": TenantRoute("alice", cluster, {"app": "alice_app"}, ("127.0.0.0/8",), 1),
         "bob": TenantRoute("bob", "c1", {"app": "bob_app"}, ("127.0.0.0/8",), 5)},
    ))


def _startup(user: str) -> bytes:
    return wire.encode_startup_message(wire.StartupMessage(wire.PROTOCOL_3_0, (("user", user), ("database", "app"))))


class World:
    def __init__(self) -> None:
        self.map = _map("c1", 1)
        self.paused: set[str] = set()
        self.admission = Admission()

    def session(self) -> s.Session:
        return s.Session(client_address="127.0.0.1", routes=lambda: self.map, admission=self.admission,
                         cancel_keys=CancelKeys(), paused=self.paused.__contains__)


def test_a_paused_tenants_connection_waits_then_goes_where_the_map_says_at_resume() -> None:
    world = World()
    world.paused.add("alice")
    session = world.session()
    assert session.client_data(_startup("alice")) == [s.WaitForResume("alice")]
    assert session.state is s.State.PAUSED
    assert world.admission.pending() == 0, "a queued connection holds no handshake slot"
    assert session.client_data(b"early") == []  # buffered, not lost
    world.map = _map("c2", 2)  # the cut-over switched the tenant while it waited
    world.paused.clear()
    actions = session.resumed()
    assert actions == [s.ConnectBackend(BackendTarget("c2", "10.2.0.1", 5433, NO_TLS))]
    (send,) = session.backend_connected()
    assert isinstance(send, s.SendToBackend) and send.data.endswith(b"early")


def test_other_tenants_are_not_held() -> None:
    world = World()
    world.paused.add("alice")
    actions = world.session().client_data(_startup("bob"))
    assert isinstance(actions[0], s.ConnectBackend)


def test_a_tenant_paused_again_keeps_waiting_and_limits_still_apply_at_resume() -> None:
    world = World()
    world.paused.add("alice")
    first, second = world.session(), world.session()
    first.client_data(_startup("alice"))
    second.client_data(_startup("alice"))
    assert first.resumed() == [s.WaitForResume("alice")], "still paused: waits again"
    world.paused.clear()
    assert isinstance(first.resumed()[0], s.ConnectBackend)
    first.backend_connected()
    ready = (b"R" + struct.pack("!ii", 8, 0) + wire.encode_backend_key_data(7, b"kkkk") + b"Z\x00\x00\x00\x05I")
    assert first.backend_data(ready)[-1] == s.Relay()
    refused = second.resumed()  # alice allows 1 connection: the limit holds after a pause too
    assert any(isinstance(a, s.Close) for a in refused)
    assert b"53300" in b"".join(a.data for a in refused if isinstance(a, s.SendToClient))


def test_a_full_queue_is_refused_like_a_connection_over_the_limit() -> None:
    world = World()
    world.paused.add("alice")
    session = world.session()
    session.client_data(_startup("alice"))
    actions = session.queue_full()
    assert b"53300" in b"".join(a.data for a in actions if isinstance(a, s.SendToClient))
    assert session.state is s.State.CLOSED


def test_pauses_end_by_themselves_and_queues_are_bounded() -> None:
    async def scenario() -> None:
        pauses = TenantPauses(max_queued=2)
        pauses.pause("alice", 0.2)
        waiters = [asyncio.ensure_future(pauses.wait("alice")) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert pauses.queued() == {"alice": 2}
        assert waiters[2].done() and waiters[2].result() is False, "the third waiter is refused at once"
        assert await asyncio.wait_for(asyncio.gather(*waiters[:2]), 1.0) == [True, True]
        assert not pauses.is_paused("alice")
        assert pauses.stats.ended == {"resumed": 0, "expired": 1}
        assert await pauses.wait("alice") is True, "not paused: no wait"

    asyncio.run(scenario())


def test_resume_releases_at_once_and_a_repause_moves_the_deadline() -> None:
    async def scenario() -> None:
        pauses = TenantPauses()
        pauses.pause("alice", 0.2)
        await asyncio.sleep(0.1)
        pauses.pause("alice", 0.3)  # extended: must not expire at the first deadline
        waiter = asyncio.ensure_future(pauses.wait("alice"))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        ended = pauses.resume("alice")
        assert ended is not None and ended["ended"] == "resumed" and ended["queued"] == 1
        assert await asyncio.wait_for(waiter, 1.0) is True
        assert pauses.resume("alice") is None
        with pytest.raises(ValueError):
            pauses.pause("alice", 0)
        with pytest.raises(ValueError):
            pauses.pause("alice", 10_000)

    asyncio.run(scenario())
