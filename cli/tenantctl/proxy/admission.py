"""Connection slots (pure bookkeeping, shared by all sessions).

Two kinds of slot are counted apart, so that clients who never finish authenticating cannot lock a
tenant out:

- a *pending* slot from the moment a startup packet is routed until the backend says ReadyForQuery,
  capped globally and per client address;
- an *established* slot per tenant, taken only once the backend has authenticated the client, capped
  by the tenant's ``max_connections`` (as PostgreSQL checks a role's connection limit after
  authentication, not before).
"""

from __future__ import annotations

DEFAULT_MAX_PENDING = 1024
DEFAULT_MAX_PENDING_PER_ADDRESS = 64


class Admission:
    def __init__(self, *, max_pending: int = DEFAULT_MAX_PENDING,
                 max_pending_per_address: int = DEFAULT_MAX_PENDING_PER_ADDRESS) -> None:
        self.max_pending = max_pending
        self.max_pending_per_address = max_pending_per_address
        self._active: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._pending_total = 0

    # --- established sessions, per tenant -------------------------------------------------------

    def has_room(self, tenant: str, limit: int) -> bool:
        """Whether an established slot is free now (an early, non-binding check before connecting)."""
        return self._active.get(tenant, 0) < limit

    def try_acquire(self, tenant: str, limit: int) -> bool:
        current = self._active.get(tenant, 0)
        if current >= limit:
            return False
        self._active[tenant] = current + 1
        return True

    def release(self, tenant: str) -> None:
        _decrement(self._active, tenant)

    def active(self, tenant: str) -> int:
        return self._active.get(tenant, 0)

    def total(self) -> int:
        return sum(self._active.values())

    # --- handshakes in progress, per client address ---------------------------------------------

    def try_begin_handshake(self, address: str) -> bool:
        current = self._pending.get(address, 0)
        if self._pending_total >= self.max_pending or current >= self.max_pending_per_address:
            return False
        self._pending[address] = current + 1
        self._pending_total += 1
        return True

    def end_handshake(self, address: str) -> None:
        if address in self._pending:
            _decrement(self._pending, address)
            self._pending_total -= 1

    def pending(self, address: str | None = None) -> int:
        return self._pending_total if address is None else self._pending.get(address, 0)


def _decrement(counts: dict[str, int], key: str) -> None:
    current = counts.get(key, 0) - 1
    if current > 0:
        counts[key] = current
    else:
        counts.pop(key, None)
