"""The one cluster resolver, for every target: endpoints from the cluster stack's outputs, the admin login
from Secrets Manager, TLS and a connect address.

The cluster stack records, per cluster, its ``endpoint``, ``reader_endpoint``, ``port`` and
``admin_secret_arn`` in ``applied.json`` when it is applied. On aws the secret is the RDS-managed
``master_user_secret``; on the local target the stack writes the same JSON (``{"username",
"password"}``) into moto's Secrets Manager. The connection is TLS ``verify-full`` against the endpoint
name with a CA bundle (aws: ``settings.postgres.ca_bundle``, the RDS global bundle; local: the project's
local CA), reached through a connect address when one is given (aws: ``settings.postgres.connect``, a
bastion or SSM tunnel; local: the local server that stands in for the cluster). Optionally the admin
login authenticates with an IAM token instead of the secret's password (``settings.postgres.iam_auth``).

The only target-specific part is ``LocalTunnel``: the local target starts a server per cluster and has
it serve a certificate for the endpoint names; everything after that is the aws code path.
botocore errors become ``BackendError`` here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantctl.errors import BackendError
from tenantctl.model.types import Model
from tenantctl.postgres.connect import ClusterConnection, ClusterNotCreatedError

RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"

# (cluster, endpoint names) -> the address and port that reach it; the local target's servers.
Tunnel = Callable[[str, tuple[str, ...]], tuple[str, int]]
# (endpoint, port, user) -> a short-lived IAM authentication token (boto3 rds.generate_db_auth_token).
TokenSigner = Callable[[str, int, str], str]


@dataclass(frozen=True)
class ClusterFacts:
    """What the applied cluster stack says about one cluster."""

    endpoint: str
    reader_endpoint: str | None
    port: int
    admin_secret_arn: str | None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.endpoint, self.reader_endpoint) if n)


def cluster_facts(cluster: str, outputs: dict[str, Any]) -> ClusterFacts:
    values = outputs.get(cluster)
    if not isinstance(values, dict) or not values.get("endpoint"):
        raise ClusterNotCreatedError(cluster)
    return ClusterFacts(endpoint=str(values["endpoint"]),
                        reader_endpoint=str(values["reader_endpoint"]) if values.get("reader_endpoint") else None,
                        port=int(values.get("port") or 5432),
                        admin_secret_arn=str(values["admin_secret_arn"]) if values.get("admin_secret_arn") else None)


@dataclass
class OutputsClusterResolver:
    model: Model
    outputs: dict[str, Any]  # the cluster stack's "clusters" output, as applied
    secrets_client: Any  # boto3 "secretsmanager"
    default_ca: str | None = None  # the local target's CA; aws: settings.postgres.ca_bundle only
    tunnel: Tunnel | None = None  # the local target's servers
    token_signer: TokenSigner | None = None  # settings.postgres.iam_auth
    _cache: dict[str, ClusterConnection] = field(default_factory=dict)

    def facts(self, cluster: str) -> ClusterFacts:
        return cluster_facts(cluster, self.outputs)

    def tls(self, cluster: str) -> tuple[str, str | None]:
        """The libpq ``sslmode`` and CA bundle every connection to ``cluster`` uses (verify-full by default)."""
        access = self.model.settings.postgres
        ca_bundle = access.ca_bundle or self.default_ca
        sslmode = access.ssl_mode or "verify-full"
        if sslmode in ("verify-full", "verify-ca") and not ca_bundle:
            raise BackendError(f"cluster {cluster}: TLS {sslmode} needs a CA bundle",
                               hint=f"download {RDS_CA_BUNDLE_URL} and set settings.postgres.ca_bundle to it")
        return sslmode, ca_bundle or None

    def resolve(self, cluster: str) -> ClusterConnection:
        if cluster in self._cache:
            return self._cache[cluster]
        facts = self.facts(cluster)
        access = self.model.settings.postgres
        sslmode, ca_bundle = self.tls(cluster)
        connect = access.connect_address(cluster)
        peer = None
        if self.tunnel is not None:
            peer = self.tunnel(cluster, facts.names)
            connect = connect or peer
        username, password = self._login(cluster, facts)
        resolved = ClusterConnection(
            cluster=cluster, host=facts.endpoint, port=facts.port, admin_user=username, admin_password=password,
            sslmode=sslmode, sslrootcert=ca_bundle,
            connect_address=connect[0] if connect else None, connect_port=connect[1] if connect else None,
            peer_address=peer[0] if peer else None, peer_port=peer[1] if peer else None)
        self._cache[cluster] = resolved
        return resolved

    def _login(self, cluster: str, facts: ClusterFacts) -> tuple[str, str]:
        access = self.model.settings.postgres
        if access.iam_auth:
            if self.token_signer is None:
                raise BackendError(f"cluster {cluster}: IAM authentication needs an RDS client")
            return access.iam_user, self.token_signer(facts.endpoint, facts.port, access.iam_user)
        if not facts.admin_secret_arn:
            raise BackendError(f"cluster {cluster}: its cluster stack recorded no admin secret (admin_secret_arn)",
                               hint="apply the cluster stack again with this tenantctl version "
                                    "(manage_master_user_password = true)")
        return self._credentials(cluster, facts.admin_secret_arn)

    def _credentials(self, cluster: str, secret: str) -> tuple[str, str]:
        try:
            response = self.secrets_client.get_secret_value(SecretId=secret)
        except Exception as error:  # botocore ClientError / EndpointConnectionError: this is the boundary
            raise BackendError(f"cluster {cluster}: cannot read its admin secret {secret}: {_one_line(error)}",
                               hint="the identity running tenantctl needs secretsmanager:GetSecretValue on it") \
                from error
        try:
            document = json.loads(response["SecretString"])
            return str(document["username"]), str(document["password"])
        except (KeyError, ValueError, TypeError) as error:
            raise BackendError(f"cluster {cluster}: secret {secret} is not an RDS admin secret "
                               '({"username", "password"})') from error


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def iam_token_signer(rds_client: Any, region: str) -> TokenSigner:
    """Signs with ``rds_client`` (or a callable returning it, created only when a token is needed)."""
    def sign(endpoint: str, port: int, user: str) -> str:
        rds = rds_client() if callable(rds_client) else rds_client
        try:
            return str(rds.generate_db_auth_token(DBHostname=endpoint, Port=port, DBUsername=user,
                                                         Region=region))
        except Exception as error:  # botocore: no credentials, bad region
            raise BackendError(f"cannot sign an IAM authentication token for {user}@{endpoint}: "
                               f"{_one_line(error)}",
                               hint="tenantctl needs AWS credentials allowed rds-db:connect for that user") from error
    return sign


@dataclass(frozen=True)
class LocalTunnel:
    """The local target: each cluster's server, serving a certificate for the cluster's endpoint names."""

    state_dir: Path

    def __call__(self, cluster: str, names: tuple[str, ...]) -> tuple[str, int]:
        from tenantctl.local.pgserver import ensure_server_tls, running_local_server

        server = running_local_server(self.state_dir, cluster)
        ensure_server_tls(server, self.state_dir, names)
        return server.host, server.port


def outputs_resolver(model: Model, state_dir: Path) -> OutputsClusterResolver:
    from tenantctl.aws.session import client, target_for
    from tenantctl.terraform.manifest import AppliedManifest

    outputs = dict(AppliedManifest(Path(state_dir) / "applied.json").cluster_outputs() or {})
    if model.settings.target == "local":
        from tenantctl.local.moto import ensure_moto
        from tenantctl.local.pki import ensure_ca

        target = target_for(model.settings, ensure_moto(state_dir).url)
        return OutputsClusterResolver(model, outputs, client(target, "secretsmanager"),
                                      default_ca=str(ensure_ca(state_dir)), tunnel=LocalTunnel(Path(state_dir)),
                                      token_signer=iam_token_signer(lambda: client(target, "rds"), target.region))
    target = target_for(model.settings)
    return OutputsClusterResolver(model, outputs, client(target, "secretsmanager"),
                                  token_signer=iam_token_signer(lambda: client(target, "rds"), target.region))
