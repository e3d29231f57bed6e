"""How the native Postgres engine and the offboarding workflows reach a model's clusters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tenantctl.errors import InputError
from tenantctl.model.types import Model

if TYPE_CHECKING:
    from tenantctl.postgres.connect import ClusterResolver


def cluster_resolver(model: Model, state_dir: Path, *, start_local_servers: bool = True) -> ClusterResolver:
    """The resolver for the model's target (only ``local`` so far), starting its servers when asked."""
    if model.settings.target != "local":
        raise InputError(f"tenantctl cannot reach the PostgreSQL clusters of the {model.settings.target!r} target "
                         "directly yet (native Postgres engine, offboarding, restore and purge)",
                         hint='use the local target, or settings.postgres_engine = "terraform"')
    from tenantctl.postgres.connect import LocalClusterResolver  # psycopg: only when a cluster is reached

    if start_local_servers:
        from tenantctl.local.pgserver import up_local_clusters

        up_local_clusters(model, state_dir)
    return LocalClusterResolver(state_dir)
