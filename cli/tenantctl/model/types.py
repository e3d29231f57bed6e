"""The validated model: frozen, pure, deterministically ordered.

Built by ``tenantctl.model.load`` from a clients file. Everything downstream (rendering, the
Postgres engine, the routing map) reads these objects and nothing else from the clients file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tenantctl.errors import Location

TARGETS = ("local", "aws")
POSTGRES_ENGINES = ("native", "terraform")
BACKENDS = ("local", "s3")


@dataclass(frozen=True)
class Tier:
    """Resource limits for a class of tenants (noisy-neighbour control)."""

    name: str
    connection_limit: int  # Postgres login role CONNECTION LIMIT
    statement_timeout_ms: int  # 0 = no limit
    idle_in_transaction_timeout_ms: int  # 0 = no limit
    proxy_max_connections: int  # concurrent connections the proxy admits for one tenant


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier("basic", connection_limit=10, statement_timeout_ms=30_000, idle_in_transaction_timeout_ms=60_000,
         proxy_max_connections=20),
    Tier("standard", connection_limit=50, statement_timeout_ms=120_000, idle_in_transaction_timeout_ms=300_000,
         proxy_max_connections=100),
    Tier("premium", connection_limit=200, statement_timeout_ms=0, idle_in_transaction_timeout_ms=600_000,
         proxy_max_connections=400),
)
DEFAULT_TIER = "standard"


@dataclass(frozen=True)
class Cluster:
    name: str
    identifier: str  # the AWS cluster identifier (prefix + name)
    min_acu: float
    max_acu: float
    engine_version: str
    max_tenants: int | None
    dedicated: bool
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Backend:
    """Where Terraform keeps state: ``local`` files or ``s3`` with DynamoDB locking."""

    kind: str = "local"
    bucket: str = ""
    key_prefix: str = "tenantctl"
    dynamodb_table: str = ""
    region: str = ""


@dataclass(frozen=True)
class PostgresAccess:
    """How tenantctl itself reaches the clusters' PostgreSQL (``settings.postgres``)."""

    ssl_mode: str = ""  # "": libpq's default; "verify-full" on aws (the RDS CA bundle as ca_bundle)
    ca_bundle: str = ""
    connect: tuple[tuple[str, str, int], ...] = ()  # (cluster, address, port): a bastion's or tunnel's end
    iam_auth: bool = False  # the admin login signs an IAM token (rds-db:connect) instead of the secret's password
    iam_user: str = "tenantctl_admin"  # the role it logs in as (granted rds_iam, CREATEROLE, CREATEDB)

    def connect_address(self, cluster: str) -> tuple[str, int] | None:
        return next(((address, port) for name, address, port in self.connect if name == cluster), None)


@dataclass(frozen=True)
class Settings:
    region: str = "eu-west-1"
    account_id: str = "123456789012"  # moto's default account
    prefix: str = ""  # prepended to every IAM and Postgres object name tenantctl creates
    postgres_engine: str = "native"
    target: str = "local"
    allow_private_source_ips: bool = False
    default_tier: str = DEFAULT_TIER
    backend: Backend = Backend()
    postgres: PostgresAccess = PostgresAccess()
    aws_endpoint_url: str = ""  # AWS APIs served elsewhere (LocalStack, moto): boto3 calls go there
    archive: str = ""  # where offboarding dumps go (s3://BUCKET/PREFIX or a directory); see default_archive


@dataclass(frozen=True)
class Tenant:
    name: str
    databases: tuple[str, ...]  # logical names with value true, sorted
    disabled_databases: tuple[str, ...]  # logical names declared false, sorted
    allowed_ips: tuple[str, ...]  # normalised CIDRs, in file order
    rds_iam_auth: bool
    tier: str
    cluster: str  # resolved placement
    cluster_pinned: bool  # True when the clients file names the cluster
    connection_limit: int | None  # overrides the tier's
    tags: tuple[tuple[str, str], ...]  # sorted by key
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Model:
    source: str  # the clients file path as given
    settings: Settings
    clusters: tuple[Cluster, ...]  # sorted by name
    tenants: tuple[Tenant, ...]  # sorted by name
    tiers: tuple[Tier, ...]  # sorted by name

    def tenant(self, name: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        raise KeyError(name)

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    def tenants_on(self, cluster: str) -> tuple[Tenant, ...]:
        return tuple(t for t in self.tenants if t.cluster == cluster)
