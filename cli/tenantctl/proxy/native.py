"""Hands relayed sessions to the native relay (``_relay.c``) when it is built and the session allows it.

After the handshake the proxy only copies bytes, so that loop moves out of Python: the two sockets
are duplicated into a native epoll worker thread and the asyncio transports are closed (closing a
duplicate does not end the connection). Sessions with TLS on either leg stay on the asyncio relay,
since their bytes need the event loop's TLS objects; so do sessions whose transports still hold
unsent bytes at the hand-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Literal

from tenantctl.errors import InputError

try:
    from tenantctl.proxy import _relay
except ImportError:  # no C compiler at install time, or not Linux
    _relay = None  # type: ignore[assignment]

RelayMode = Literal["auto", "native", "python"]
ClosedCallback = Callable[[int, int, int], None]  # link id, bytes from client, bytes from backend


def native_available() -> bool:
    return _relay is not None


class _Detached(asyncio.Protocol):
    """Takes a transport's last callbacks once its socket has been handed to the native relay."""

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused before the hand-off
        pass


class NativeRelay:
    """The event loop's side of a ``_relay.Relay``: hand-offs in, ended sessions out."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int, nice: int, on_closed: ClosedCallback) -> None:
        if _relay is None:
            raise InputError("the native relay is not built in this installation (use --relay python)")
        self._relay = _relay.Relay(threads=threads, nice=nice)
        self._loop = loop
        self._on_closed = on_closed
        self._fd = self._relay.fileno()
        loop.add_reader(self._fd, self._collect)

    def hand_off(self, link_id: int, client: asyncio.Transport, backend: asyncio.Transport) -> bool:
        """Moves the session to the native relay; False (nothing changed) when it has to stay in asyncio."""
        transports = (client, backend)
        if any(_uses_tls(t) or t.is_closing() for t in transports):
            return False
        for transport in transports:
            transport.pause_reading()
        sockets = [t.get_extra_info("socket") for t in transports]
        if any(t.get_write_buffer_size() for t in transports) or any(sock is None for sock in sockets):
            for transport in transports:
                transport.resume_reading()
            return False
        self._relay.add(link_id, sockets[0].fileno(), sockets[1].fileno())
        for transport in transports:
            transport.set_protocol(_Detached())
            transport.close()
        return True

    def counters(self) -> dict[int, tuple[int, int]]:
        return self._relay.counters()

    def abort(self, link_id: int) -> None:
        self._relay.abort(link_id)

    def live(self) -> int:
        return self._relay.live()

    def close(self) -> None:
        """Stops the workers; links still live are closed without being reported."""
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._fd)
        self._relay.close()

    def _collect(self) -> None:
        for link_id, from_client, from_backend in self._relay.closed():
            self._on_closed(link_id, from_client, from_backend)


def _uses_tls(transport: asyncio.BaseTransport) -> bool:
    return transport.get_extra_info("sslcontext") is not None or transport.get_extra_info("ssl_object") is not None


def choose_threads(requested: int | None) -> int:
    """Two workers by default (one on a single core): measured here, at 32 clients the second worker
    thread turned the relay's 0.96-1.07x of PgBouncer's throughput into 1.03-1.10x, and it costs
    nothing at low concurrency (a session stays on its worker)."""
    if requested is None:
        return min(2, os.cpu_count() or 1)
    if not 1 <= requested <= (os.cpu_count() or 1) * 4:
        raise InputError(f"--relay-threads: expected 1..{(os.cpu_count() or 1) * 4}, got {requested}")
    return requested


RELAY_NICE_DEFAULT = 5


def choose_relay_nice(requested: int | None) -> int:
    """How many nice levels the relay workers run below the proxy's Python threads (default 5).

    When the relay saturates the CPU, the Python threads it depends on (handshakes, cancel requests,
    map reloads, /healthz) would otherwise wait in the run queue behind it. Measured here with a
    100,000-tenant map and pgbench saturating both cores: at 0 the reloads took 0.5-2.5 s (median
    1.0 s) for ~0.17 s of CPU, at 5 they took 0.39-0.87 s, with the same transaction throughput.
    Higher is not better: at 19 reloads took 0.3-0.5 s, but in a same-run A/B (``bench/proxy_bench.py
    --variant``) 8- and 32-client throughput fell 14-16 % below nice 5's, presumably because the
    scheduler balances CPUs by nice-weighted load and packs the light workers onto one core.
    Where CPU is shared per session or per cgroup (autogroups, systemd services) this only divides
    the proxy's own share; on a host where the proxy competes flat with other busy processes it
    also lowers the relay's weight against them: use 0 there.
    """
    if requested is None:
        return RELAY_NICE_DEFAULT
    if not 0 <= requested <= 19:
        raise InputError(f"--relay-nice: expected 0..19, got {requested}")
    return requested
