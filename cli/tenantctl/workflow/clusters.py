"""How the native Postgres engine and the offboarding workflows reach a model's clusters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tenantctl.errors import InputError
from tenantctl.model.types import Model

if TYPE_CHECKING:
    from tenantctl.postgres.connect import ClusterResolver


def cluster_resolver(model: Model, state_dir: Path, *, start_local_servers: bool = True) -> ClusterResolver:
    """The resolver for the model's target, starting the local servers when asked (local target only).

    aws: endpoints from the applied cluster stack's outputs, the admin login from its RDS-managed secret,
    TLS and connect addresses from ``settings.postgres`` (``aws/clusters.py``)."""
    if model.settings.target == "aws":
        from tenantctl.aws.clusters import outputs_resolver

        return outputs_resolver(model, state_dir)
    if model.settings.target != "local":
        raise InputError(f"unknown target {model.settings.target!r}")
    from tenantctl.postgres.connect import LocalClusterResolver  # psycopg: only when a cluster is reached

    if start_local_servers:
        from tenantctl.local.pgserver import up_local_clusters

        up_local_clusters(model, state_dir)
    return LocalClusterResolver(state_dir)
