"""How the native Postgres engine and the other Postgres workflows reach a model's clusters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tenantctl.errors import InputError
from tenantctl.model.types import Model

if TYPE_CHECKING:
    from tenantctl.aws.clusters import OutputsClusterResolver


def cluster_resolver(model: Model, state_dir: Path, *,
                     start_local_servers: bool = True) -> OutputsClusterResolver:
    """The one resolver (``aws/clusters.py``): endpoints from the applied cluster stack's outputs, the admin
    login from Secrets Manager, TLS verify-full. Only starting the local servers is target-specific."""
    if model.settings.target not in ("local", "aws"):
        raise InputError(f"unknown target {model.settings.target!r}")
    from tenantctl.aws.clusters import outputs_resolver

    if model.settings.target == "local" and start_local_servers:
        from tenantctl.local.pgserver import up_local_clusters

        up_local_clusters(model, state_dir)
    return outputs_resolver(model, state_dir)
