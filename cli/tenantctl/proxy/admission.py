"""Per-tenant concurrent connection limits (pure bookkeeping, shared by all sessions)."""

from __future__ import annotations


class Admission:
    def __init__(self) -> None:
        self._active: dict[str, int] = {}

    def try_acquire(self, tenant: str, limit: int) -> bool:
        current = self._active.get(tenant, 0)
        if current >= limit:
            return False
        self._active[tenant] = current + 1
        return True

    def release(self, tenant: str) -> None:
        current = self._active.get(tenant, 0) - 1
        if current > 0:
            self._active[tenant] = current
        else:
            self._active.pop(tenant, None)

    def active(self, tenant: str) -> int:
        return self._active.get(tenant, 0)

    def total(self) -> int:
        return sum(self._active.values())
