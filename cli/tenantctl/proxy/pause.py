"""Per-tenant pause: new connections of a paused tenant wait (queued, not refused) until it resumes.

A pause is what a tenant move's cut-over needs: while the routing map switches the tenant to another
cluster, its new connections neither fail nor reach the old cluster; once resumed they are routed
with the map then in force. A pause always ends: at ``resume``, or by itself after its maximum
duration (a stuck orchestrator cannot hang a tenant forever). The queue per tenant is bounded; a
connection beyond it is refused like one over the tenant's connection limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_PAUSE_S = 30.0
MAX_PAUSE_LIMIT_S = 600.0
DEFAULT_MAX_QUEUED = 1000


@dataclass
class _Pause:
    started: float
    deadline: float
    reason: str
    released: asyncio.Event = field(default_factory=asyncio.Event)
    queued: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass
class PauseStats:
    """Counters for /metrics: how pauses ended, and for how long tenants were paused in total."""

    ended: dict[str, int] = field(default_factory=lambda: {"resumed": 0, "expired": 0})
    seconds_total: float = 0.0
    longest_s: float = 0.0
    queued_total: int = 0
    refused_total: int = 0


class TenantPauses:
    def __init__(self, *, max_queued: int = DEFAULT_MAX_QUEUED, clock: Callable[[], float] = time.monotonic) -> None:
        self._pauses: dict[str, _Pause] = {}
        self._max_queued = max_queued
        self._clock = clock
        self.stats = PauseStats()

    def is_paused(self, tenant: str) -> bool:
        return tenant in self._pauses

    def pause(self, tenant: str, max_seconds: float = DEFAULT_MAX_PAUSE_S, reason: str = "") -> dict[str, Any]:
        """Pause ``tenant`` (again: the deadline moves to ``max_seconds`` from now)."""
        if not 0 < max_seconds <= MAX_PAUSE_LIMIT_S:
            raise ValueError(f"max_seconds must be in (0, {MAX_PAUSE_LIMIT_S:.0f}]")
        now = self._clock()
        current = self._pauses.get(tenant)
        if current is None:
            current = self._pauses[tenant] = _Pause(started=now, deadline=now + max_seconds, reason=reason)
        else:
            current.deadline = now + max_seconds
            if current.timer is not None:
                current.timer.cancel()
        current.timer = asyncio.get_running_loop().call_later(max_seconds, self._expire, tenant, current)
        return self._describe(tenant, current, now)

    def resume(self, tenant: str) -> dict[str, Any] | None:
        """End ``tenant``'s pause and release its queued connections; None when it was not paused."""
        return self._end(tenant, "resumed")

    async def wait(self, tenant: str) -> bool:
        """Wait for ``tenant``'s pause to end. False, at once, when its queue is full."""
        current = self._pauses.get(tenant)
        if current is None:
            return True
        if current.queued >= self._max_queued:
            self.stats.refused_total += 1
            return False
        current.queued += 1
        self.stats.queued_total += 1
        try:
            await current.released.wait()
        finally:
            current.queued -= 1
        return True

    def status(self) -> dict[str, Any]:
        now = self._clock()
        return {"paused": {tenant: self._describe(tenant, p, now) for tenant, p in sorted(self._pauses.items())}}

    def queued(self) -> dict[str, int]:
        return {tenant: pause.queued for tenant, pause in sorted(self._pauses.items())}

    def resume_all(self) -> None:
        for tenant in list(self._pauses):
            self._end(tenant, "resumed")

    def _expire(self, tenant: str, pause: _Pause) -> None:
        if self._pauses.get(tenant) is pause:
            self._end(tenant, "expired")

    def _end(self, tenant: str, how: str) -> dict[str, Any] | None:
        pause = self._pauses.pop(tenant, None)
        if pause is None:
            return None
        if pause.timer is not None:
            pause.timer.cancel()
        now = self._clock()
        duration = now - pause.started
        self.stats.ended[how] += 1
        self.stats.seconds_total += duration
        self.stats.longest_s = max(self.stats.longest_s, duration)
        described = {**self._describe(tenant, pause, now), "ended": how, "paused_seconds": round(duration, 6)}
        pause.released.set()
        return described

    @staticmethod
    def _describe(tenant: str, pause: _Pause, now: float) -> dict[str, Any]:
        return {"tenant": tenant, "paused_for_s": round(now - pause.started, 6),
                "resumes_in_s": round(max(0.0, pause.deadline - now), 6), "queued": pause.queued,
                "reason": pause.reason}
