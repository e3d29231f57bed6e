"""The routing map being served, and how a new one replaces it (file watch, SIGHUP, S3 polling).

A new map is parsed and validated off the event loop (a worker thread), then swapped in with one
assignment: sessions look the map up only during their handshake, so live sessions never notice.
An invalid map is logged once (until the source changes again) and ignored; the previous map keeps
serving. A map whose serial is lower than the one being served is refused on automatic reloads (a
stale copy, or an older publisher racing a newer one); SIGHUP (``force``) accepts it with a warning,
which is how an operator rolls back on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import time
from pathlib import Path
from typing import NamedTuple

from tenantctl.errors import TenantctlError
from tenantctl.proxy.metrics import Metrics
from tenantctl.routing.document import RoutingMap, parse_map
from tenantctl.routing.store import is_s3_url

log = logging.getLogger("tenantctl.proxy")


def _release_freed_memory() -> None:
    """Give the memory of the previous map back to the OS (glibc keeps freed heap pages otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class _FileVersion(NamedTuple):
    inode: int
    size: int
    mtime_ns: int


class _Rejected(Exception):
    """A map that was read but is not served; ``version`` identifies its content so it is not re-read."""

    def __init__(self, version: object, message: str) -> None:
        super().__init__(message)
        self.version = version
        self.message = message


class RouteTable:
    def __init__(self, location: str, metrics: Metrics) -> None:
        self.location = location
        self._metrics = metrics
        self._current: RoutingMap | None = None
        self._version: object = None
        self._lock = asyncio.Lock()
        self._last_read_error: str | None = None

    @property
    def current(self) -> RoutingMap:
        assert self._current is not None, "load() first"
        return self._current

    def get(self) -> RoutingMap:
        return self.current

    def load_initial(self) -> RoutingMap:
        """Blocking first load (before serving); raises ``TenantctlError`` if the map is invalid."""
        version, routing_map = self._read(None)
        assert routing_map is not None
        self._install(routing_map, version)
        return routing_map

    async def reload(self, *, force: bool = False) -> bool:
        """Load the map again if it changed (or always with ``force``). True when a new map is served."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            previous_version = None if force else self._version
            started = time.perf_counter()
            try:
                version, routing_map, parse_cpu = await loop.run_in_executor(None, self._timed_read, previous_version)
            except _Rejected as rejected:
                self._version = rejected.version  # logged once: re-read only when the source changes
                self._metrics.reloads["failed"] += 1
                log.error("routing map reload rejected, still serving serial %s: %s",
                          self._metrics.map_serial, rejected.message)
                return False
            except TenantctlError as error:  # the source could not be read: say so once per distinct error
                self._metrics.reloads["failed"] += 1
                if error.message != self._last_read_error:
                    self._last_read_error = error.message
                    log.error("routing map reload rejected, still serving serial %s: %s",
                              self._metrics.map_serial, error.message)
                return False
            except Exception as error:
                self._metrics.reloads["failed"] += 1
                log.error("routing map reload failed, still serving serial %s: %r",
                          self._metrics.map_serial, error)
                return False
            self._last_read_error = None
            if routing_map is None:
                return False
            if self._current is not None and routing_map.checksum == self._current.checksum:
                self._version = version
                self._metrics.reloads["unchanged"] += 1
                return False
            if self._current is not None and routing_map.serial < self._current.serial:
                if not force:
                    self._version = version
                    self._metrics.reloads["failed"] += 1
                    log.error("routing map serial %s is older than the served serial %s: not loaded (send SIGHUP "
                              "to load it on purpose)", routing_map.serial, self._current.serial)
                    return False
                log.warning("routing map serial %s replaces the newer serial %s (forced reload)",
                            routing_map.serial, self._current.serial)
            self._install(routing_map, version)
            del routing_map
            _release_freed_memory()
            self._metrics.reloads["ok"] += 1
            routing_map = self.current
            log.info("routing map serial %s loaded (%d tenants, %.0f ms; %.0f ms CPU reading it)", routing_map.serial,
                     len(routing_map.tenants), (time.perf_counter() - started) * 1000, parse_cpu * 1000)
            return True

    async def watch(self, interval: float) -> None:
        """Poll for changes forever (file: stat; S3: conditional GET)."""
        while True:
            await asyncio.sleep(interval)
            await self.reload()

    def _install(self, routing_map: RoutingMap, version: object) -> None:
        self._current = routing_map
        self._version = version
        self._metrics.map_serial = routing_map.serial
        self._metrics.map_tenants = len(routing_map.tenants)
        self._metrics.map_loaded_at = time.time()
        tenants = routing_map.tenants
        self._metrics.forget_tenants(tenants.__contains__)

    def _timed_read(self, known_version: object) -> tuple[object, RoutingMap | None, float]:
        started = time.thread_time()
        version, routing_map = self._read(known_version)
        return version, routing_map, time.thread_time() - started

    def _read(self, known_version: object) -> tuple[object, RoutingMap | None]:
        """(version, map); map is None when the source still has ``known_version``. Runs in a thread."""
        if is_s3_url(self.location):
            from tenantctl.routing.s3 import fetch_map

            etag = known_version if isinstance(known_version, str) else None
            fetched = fetch_map(self.location, if_none_match=etag)
            if etag is not None and not fetched.data:
                return etag, None
            return fetched.etag, _parse(fetched.data, self.location, fetched.etag)
        path = Path(self.location)
        try:
            stat = os.stat(path)
            version = _FileVersion(stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if version == known_version:
                return version, None
            data = path.read_bytes()
        except OSError as error:
            raise TenantctlError(f"{path}: cannot read routing map: {error.strerror}") from None
        return version, _parse(data, str(path), version)


def _parse(data: bytes, source: str, version: object) -> RoutingMap:
    try:
        return parse_map(data, source)
    except TenantctlError as error:
        raise _Rejected(version, error.message) from None
