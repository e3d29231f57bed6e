"""Cancel keys: the proxy gives each client its own BackendKeyData and remembers what it stands for.

Backend PIDs of different clusters can collide, so a client's key is never the backend's: the
proxy allocates a unique process id and a random secret, and maps them to (cluster, backend pid,
backend secret). A CancelRequest with an unknown pid or a wrong secret is dropped.
"""

from __future__ import annotations

import hmac
import os
from typing import NamedTuple

from tenantctl.routing.document import ClusterTls


class BackendTarget(NamedTuple):
    cluster: str
    host: str
    port: int
    tls: ClusterTls


class CancelEntry(NamedTuple):
    secret: bytes
    target: BackendTarget
    backend_pid: int
    backend_secret: bytes


class CancelKeys:
    def __init__(self, *, random_bytes: int = 4) -> None:
        self._entries: dict[int, CancelEntry] = {}
        self._next_pid = int.from_bytes(os.urandom(3), "big") + 1
        self._random_bytes = random_bytes

    def register(self, target: BackendTarget, backend_pid: int, backend_secret: bytes) -> tuple[int, bytes]:
        """Allocate the key handed to the client: ``(proxy pid, proxy secret)``."""
        pid = self._allocate_pid()
        secret = os.urandom(self._random_bytes)
        self._entries[pid] = CancelEntry(secret, target, backend_pid, backend_secret)
        return pid, secret

    def lookup(self, pid: int, secret: bytes) -> CancelEntry | None:
        entry = self._entries.get(pid)
        if entry is None or not hmac.compare_digest(entry.secret, secret):
            return None
        return entry

    def unregister(self, pid: int) -> None:
        self._entries.pop(pid, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _allocate_pid(self) -> int:
        while True:
            pid = self._next_pid
            self._next_pid = pid + 1 if pid < 0x7FFFFFFF else 1
            if pid not in self._entries:
                return pid
