"""The native relay (``_relay.c``) on socket pairs: bytes both ways, backpressure, ends, aborts, counters."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tenantctl.proxy.native import native_available

pytestmark = pytest.mark.skipif(not native_available() and not os.environ.get("CI"),
                                reason="native relay not built")


@pytest.fixture
def relay() -> Iterator[object]:
    from tenantctl.proxy import _relay  # CI must have built it: an ImportError there fails the test

    instance = _relay.Relay(threads=2)
    yield instance
    instance.close()


def session(relay: object, link_id: int) -> tuple[socket.socket, socket.socket]:
    """(application end, server end) joined through the relay; the relay holds the middle ends."""
    app, proxy_client = socket.socketpair()
    proxy_backend, server = socket.socketpair()
    relay.add(link_id, proxy_client.fileno(), proxy_backend.fileno())  # type: ignore[attr-defined]
    proxy_client.close()  # the relay keeps its own duplicates, as the server does with its transports
    proxy_backend.close()
    for sock in (app, server):
        sock.settimeout(10)
    return app, server


def wait_closed(relay: object, timeout: float = 10.0) -> list[tuple[int, int, int]]:
    ready, _, _ = select.select([relay.fileno()], [], [], timeout)  # type: ignore[attr-defined]
    assert ready, "the relay did not report an ended link"
    return relay.closed()  # type: ignore[attr-defined, no-any-return]


def test_bytes_flow_both_ways_on_many_links(relay: object) -> None:
    pairs = [session(relay, n) for n in range(40)]
    for n, (app, server) in enumerate(pairs):
        app.sendall(b"Q" * (n + 1))
        assert server.recv(100) == b"Q" * (n + 1)
        server.sendall(b"Z" * (n + 2))
        assert app.recv(100) == b"Z" * (n + 2)
    assert relay.live() == 40  # type: ignore[attr-defined]
    assert relay.counters()[7] == (8, 9)  # type: ignore[attr-defined]


def test_large_transfer_with_a_slow_reader_is_intact(relay: object) -> None:
    app, server = session(relay, 1)
    data = os.urandom(8 * 1024 * 1024)
    received = bytearray()

    def read_slowly() -> None:
        while len(received) < len(data):
            chunk = server.recv(4096)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    app.sendall(data)  # the relay must stop reading app while server's buffer is full, not drop bytes
    reader.join(30)
    assert bytes(received) == data


def test_end_of_one_side_closes_the_other_and_reports_counts(relay: object) -> None:
    app, server = session(relay, 42)
    app.sendall(b"hello")
    assert server.recv(5) == b"hello"
    server.sendall(b"fatal error\n")
    server.close()  # the backend goes away after sending: the client still gets the bytes, then EOF
    assert app.recv(100) == b"fatal error\n"
    assert app.recv(100) == b""
    assert wait_closed(relay) == [(42, 5, 12)]
    assert relay.live() == 0  # type: ignore[attr-defined]


def test_abort_closes_both_sides(relay: object) -> None:
    app, server = session(relay, 5)
    assert relay.abort(5) is True  # type: ignore[attr-defined]
    assert app.recv(10) == b"" and server.recv(10) == b""
    assert wait_closed(relay) == [(5, 0, 0)]
    assert relay.abort(5) is False  # type: ignore[attr-defined]


def test_close_ends_live_links(relay: object) -> None:
    app, server = session(relay, 9)
    relay.close()  # type: ignore[attr-defined]
    assert app.recv(10) == b"" and server.recv(10) == b""
    with pytest.raises(RuntimeError, match="closed"):
        relay.add(10, app.fileno(), server.fileno())  # type: ignore[attr-defined]


def test_bad_descriptor_is_an_oserror_and_leaks_nothing(relay: object) -> None:
    app, _ = socket.socketpair()
    with pytest.raises(OSError):
        relay.add(1, app.fileno(), 987654)  # type: ignore[attr-defined]
    assert relay.live() == 0  # type: ignore[attr-defined]


def _thread_nice_values() -> dict[int, int]:
    values = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        values[int(tid)] = int(fields[16])  # field 19 of stat(5): nice
    return values


def test_workers_run_the_requested_nice_levels_below_their_creator() -> None:
    from tenantctl.proxy import _relay

    before = _thread_nice_values()
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    instance = _relay.Relay(threads=2, nice=3)
    try:
        deadline = time.monotonic() + 10
        while True:
            workers = {tid: nice for tid, nice in _thread_nice_values().items() if tid not in before}
            if len(workers) == 2 and all(nice == min(own + 3, 19) for nice in workers.values()):
                break
            assert time.monotonic() < deadline, f"worker threads and their nice values: {workers}"
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # the creator is untouched
    finally:
        instance.close()
    with pytest.raises(ValueError, match="nice"):
        _relay.Relay(threads=1, nice=20)


def test_relay_options_are_checked_before_anything_starts() -> None:
    from tenantctl.errors import InputError
    from tenantctl.proxy.native import RELAY_NICE_DEFAULT, choose_relay_nice, choose_threads

    assert choose_relay_nice(None) == RELAY_NICE_DEFAULT
    assert choose_relay_nice(0) == 0
    with pytest.raises(InputError, match="--relay-nice"):
        choose_relay_nice(20)
    assert choose_threads(None) == min(2, os.cpu_count() or 1)
    with pytest.raises(InputError, match="--relay-threads"):
        choose_threads(0)
