"""Deterministic placement of tenants that do not name a cluster.

Rendezvous (highest-random-weight) hashing over the shared clusters: a tenant's cluster depends
only on its own name and the set of shared clusters, never on the other tenants or on file order.
So adding, removing or reordering tenants never moves an existing tenant. Adding a *shared cluster*
would move some unpinned tenants, which is why ``tenantctl onboard`` writes the chosen cluster into
the tenant's block (pinning it) and why the plan reports any placement change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _score(tenant: str, cluster: str) -> bytes:
    return hashlib.sha256(f"{cluster}\x00{tenant}".encode()).digest()


def place(tenant: str, shared_clusters: Sequence[str]) -> str | None:
    """The shared cluster for ``tenant``, or None when there is no shared cluster."""
    if not shared_clusters:
        return None
    return max(sorted(shared_clusters), key=lambda cluster: _score(tenant, cluster))
