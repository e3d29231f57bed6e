"""Cancel keys: clients see the backend's real process id; only the secret is the proxy's.

A client's BackendKeyData carries the backend's own pid (so ``pg_backend_pid()``,
``pg_terminate_backend(<reported pid>)`` and a NOTIFY's pid all agree with what the driver reports)
and a secret drawn by the proxy. A CancelRequest is routed by the pair (pid, secret): backend pids of
two clusters may collide, the pair may not (on the rare clash the proxy draws another secret). An
unknown pair is dropped without an answer, as PostgreSQL does; the backend's own secret never
leaves the proxy, so a client cannot cancel by talking to a cluster directly with its key either.

Failed cancel attempts are limited per source address (``CancelLimiter``): a client guessing
secrets for a known pid gets a few tries per window, then nothing is even looked up.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from typing import NamedTuple

from tenantctl.routing.document import ClusterTls


class BackendTarget(NamedTuple):
    cluster: str
    host: str  # the name TLS verifies
    port: int
    tls: ClusterTls
    hostaddr: str | None = None  # the address dialled, when not host's

    @property
    def dial(self) -> str:
        return self.hostaddr or self.host


class CancelEntry(NamedTuple):
    secret: bytes
    target: BackendTarget
    backend_pid: int
    backend_secret: bytes


class CancelLimiter:
    """At most ``max_failures`` failed cancels per source address per ``window`` seconds."""

    def __init__(self, *, max_failures: int = 20, window: float = 60.0, max_sources: int = 65536,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_failures = max_failures
        self._window = window
        self._max_sources = max_sources
        self._clock = clock
        self._failures: dict[str, tuple[float, int]] = {}  # source -> (window start, failures in it)

    def allowed(self, source: str) -> bool:
        entry = self._failures.get(source)
        if entry is None:
            return True
        started, count = entry
        if self._clock() - started >= self._window:
            del self._failures[source]
            return True
        return count < self._max_failures

    def failed(self, source: str) -> None:
        now = self._clock()
        started, count = self._failures.get(source, (now, 0))
        if now - started >= self._window:
            started, count = now, 0
        if source not in self._failures and len(self._failures) >= self._max_sources:
            self._forget_expired(now)
            if len(self._failures) >= self._max_sources:  # a flood of sources: forget the oldest
                del self._failures[next(iter(self._failures))]
        self._failures[source] = (started, count + 1)

    def _forget_expired(self, now: float) -> None:
        for source in [s for s, (started, _) in self._failures.items() if now - started >= self._window]:
            del self._failures[source]


class CancelKeys:
    def __init__(self, *, random_bytes: int = 4, limiter: CancelLimiter | None = None,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        self._entries: dict[int, list[CancelEntry]] = {}  # backend pid -> the sessions with that pid
        self._random_bytes = random_bytes
        self._random = random
        self.limiter = limiter if limiter is not None else CancelLimiter()

    def register(self, target: BackendTarget, backend_pid: int, backend_secret: bytes) -> tuple[int, bytes]:
        """The key handed to the client: ``(backend pid, a secret unique among that pid's sessions)``."""
        same_pid = self._entries.setdefault(backend_pid, [])
        while True:
            secret = self._random(self._random_bytes)
            if all(entry.secret != secret for entry in same_pid):
                break
        same_pid.append(CancelEntry(secret, target, backend_pid, backend_secret))
        return backend_pid, secret

    def lookup(self, pid: int, secret: bytes, source: str) -> CancelEntry | None:
        """The session a CancelRequest from ``source`` stands for; None for unknown keys or when rate-limited."""
        if not self.limiter.allowed(source):
            return None
        found = None
        for entry in self._entries.get(pid, ()):
            if hmac.compare_digest(entry.secret, secret):
                found = entry
        if found is None:
            self.limiter.failed(source)
        return found

    def unregister(self, pid: int, secret: bytes) -> None:
        same_pid = self._entries.get(pid)
        if same_pid is None:
            return
        same_pid[:] = [entry for entry in same_pid if entry.secret != secret]
        if not same_pid:
            del self._entries[pid]

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._entries.values())
