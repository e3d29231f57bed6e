"""Reach the aws target's clusters: endpoints from the cluster stack's outputs, the admin login from the
RDS-managed secret, TLS and a connect address from ``settings.postgres``.

``OutputsClusterResolver`` is what the native engine, offboarding and the other Postgres workflows use on
the aws target. The cluster stack records, per cluster, its ``endpoint``, ``port`` and
``admin_secret_arn`` (``master_user_secret``, JSON ``{"username", "password"}``) in ``applied.json``
when it is applied. botocore errors become ``BackendError`` here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantctl.errors import BackendError
from tenantctl.model.types import Model
from tenantctl.postgres.connect import ClusterConnection

RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


@dataclass
class OutputsClusterResolver:
    model: Model
    outputs: dict[str, Any]  # the cluster stack's "clusters" output, as applied
    secrets_client: Any  # boto3 "secretsmanager"
    _cache: dict[str, ClusterConnection] = field(default_factory=dict)

    def resolve(self, cluster: str) -> ClusterConnection:
        if cluster in self._cache:
            return self._cache[cluster]
        values = self.outputs.get(cluster)
        if not isinstance(values, dict) or not values.get("endpoint"):
            raise BackendError(f"cluster {cluster}: no endpoint recorded: its cluster stack has not been applied",
                               hint="run `tenantctl plan` and `tenantctl apply` first")
        secret = values.get("admin_secret_arn")
        if not secret:
            raise BackendError(f"cluster {cluster}: its cluster stack recorded no admin secret (admin_secret_arn)",
                               hint="apply the cluster stack again with this tenantctl version "
                                    "(manage_master_user_password = true)")
        username, password = self._credentials(cluster, str(secret))
        access = self.model.settings.postgres
        connect = access.connect_address(cluster)
        resolved = ClusterConnection(
            cluster=cluster, host=str(values["endpoint"]), port=int(values.get("port") or 5432),
            admin_user=username, admin_password=password, sslmode=access.ssl_mode or "verify-full",
            sslrootcert=access.ca_bundle or None,
            connect_address=connect[0] if connect else None, connect_port=connect[1] if connect else None)
        if resolved.sslmode == "verify-full" and not resolved.sslrootcert:
            raise BackendError(f"cluster {cluster}: TLS verify-full needs a CA bundle",
                               hint=f"download {RDS_CA_BUNDLE_URL} and set settings.postgres.ca_bundle to it")
        self._cache[cluster] = resolved
        return resolved

    def _credentials(self, cluster: str, secret: str) -> tuple[str, str]:
        try:
            response = self.secrets_client.get_secret_value(SecretId=secret)
        except Exception as error:  # botocore ClientError / EndpointConnectionError: this is the boundary
            raise BackendError(f"cluster {cluster}: cannot read its admin secret {secret}: {error}",
                               hint="the identity running tenantctl needs secretsmanager:GetSecretValue on it") \
                from error
        try:
            document = json.loads(response["SecretString"])
            return str(document["username"]), str(document["password"])
        except (KeyError, ValueError, TypeError) as error:
            raise BackendError(f"cluster {cluster}: secret {secret} is not an RDS admin secret "
                               '({"username", "password"})') from error


def outputs_resolver(model: Model, state_dir: Path) -> OutputsClusterResolver:
    from tenantctl.aws.session import client, target_for
    from tenantctl.terraform.manifest import AppliedManifest

    outputs = AppliedManifest(Path(state_dir) / "applied.json").cluster_outputs() or {}
    return OutputsClusterResolver(model, dict(outputs), client(target_for(model.settings), "secretsmanager"))
