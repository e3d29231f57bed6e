"""What templates see: plain, precomputed views of the model and the desired state.

Everything a template needs is decided here, in Python, so templates stay declarative: resource
labels, references between resources, the order grants run in, provider constraints. Templates get
the frozen model objects too (``model``, ``tenant``, ``state``) for overrides that need more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tenantctl.errors import InputError
from tenantctl.model.desired import PUBLIC, DefaultPrivilege, Grant, TenantState, desired_tenant
from tenantctl.model.types import Cluster, Model, Tenant
from tenantctl.render import hcl

AURORA_ENGINE = "aurora-postgresql"
MASTER_USERNAME = "tenantctl_admin"
# Provider constraints. aws target: manage_master_user_password needs hashicorp/aws >= 4.61.0 (and the
# serverlessv2_scaling_configuration block >= 4.12.0). local target: the offline provider is 3.39.0.
AWS_PROVIDER_CONSTRAINT = {"aws": ">= 4.61.0", "local": ">= 3.39.0"}
POSTGRESQL_PROVIDER_VERSION = "1.26.0"
POSTGRES_PROVIDER_MAX_CONNECTIONS = 2  # grants are serialised anyway; few connections, no contention
POSTGRES_PROVIDER_CONNECT_TIMEOUT = 30
LOCAL_ENDPOINT_SERVICES = ("dynamodb", "iam", "rds", "s3", "secretsmanager", "sts")


@dataclass(frozen=True)
class ClusterView:
    name: str
    identifier: str
    engine_version: str
    min_capacity: float
    max_capacity: float
    final_snapshot_identifier: str
    tags: Mapping[str, str]

    @property
    def parameter_family(self) -> str:
        """The cluster parameter group family of its engine version (15.4 -> aurora-postgresql15)."""
        return "aurora-postgresql" + self.engine_version.split(".", 1)[0]


@dataclass(frozen=True)
class GrantView:
    label: str
    database_ref: str  # HCL expression naming the database (a reference, so Terraform orders it)
    role_ref: str  # HCL expression naming the grantee
    object_type: str
    schema: str | None
    privileges: tuple[str, ...]
    depends_on: str | None  # address of the grant that must finish first (serialises grants)


@dataclass(frozen=True)
class DefaultPrivilegesView:
    label: str
    database_ref: str
    owner_ref: str
    role_ref: str
    schema: str
    object_type: str
    privileges: tuple[str, ...]
    depends_on: str | None


def cluster_context(model: Model) -> dict[str, object]:
    settings = model.settings
    return {
        "model": model,
        "settings": settings,
        "target": settings.target,
        "backend": settings.backend.kind,
        "aws_provider_constraint": AWS_PROVIDER_CONSTRAINT[settings.target],
        "local_endpoint_services": LOCAL_ENDPOINT_SERVICES,
        "engine": AURORA_ENGINE,
        "master_username": MASTER_USERNAME,
        "clusters": tuple(_cluster_view(cluster) for cluster in model.clusters),
    }


def _cluster_view(cluster: Cluster) -> ClusterView:
    return ClusterView(
        name=cluster.name,
        identifier=cluster.identifier,
        engine_version=cluster.engine_version,
        min_capacity=cluster.min_acu,
        max_capacity=cluster.max_acu,
        final_snapshot_identifier=f"{cluster.identifier}-final",
        tags={"cluster": cluster.name, "managed-by": "tenantctl",
              "tenancy": "dedicated" if cluster.dedicated else "shared"},
    )


class TenantContexts:
    """Builds tenant template contexts; the parts shared by every tenant are computed once."""

    def __init__(self, model: Model) -> None:
        self.model = model
        settings = model.settings
        self._clusters = {cluster.name: cluster for cluster in model.clusters}
        self._shared: dict[str, object] = {
            "model": model,
            "settings": settings,
            "target": settings.target,
            "backend": settings.backend.kind,
            "aws_provider_constraint": AWS_PROVIDER_CONSTRAINT[settings.target],
            "local_endpoint_services": LOCAL_ENDPOINT_SERVICES,
            "postgres_engine": settings.postgres_engine,
            "postgresql_provider_version": POSTGRESQL_PROVIDER_VERSION,
            "postgres_max_connections": POSTGRES_PROVIDER_MAX_CONNECTIONS,
            "postgres_connect_timeout": POSTGRES_PROVIDER_CONNECT_TIMEOUT,
            "postgres_sslmode": "require" if settings.target == "aws" else "disable",
            "master_username": MASTER_USERNAME,
        }

    @property
    def shared_names(self) -> frozenset[str]:
        """Context names whose values are the same for every tenant of this model."""
        return frozenset(self._shared)

    def build(self, tenant: Tenant) -> dict[str, object]:
        state = desired_tenant(self.model, tenant)
        cluster = self._clusters.get(tenant.cluster)
        if cluster is None:
            raise InputError(f"tenant {tenant.name!r} is placed on unknown cluster {tenant.cluster!r}")
        grants = _grant_views(state)
        context = dict(self._shared)
        context.update(
            tenant=tenant,
            state=state,
            iam=state.iam,
            tags=dict(state.iam.tags),
            cluster=cluster,
            postgres_expected_version=cluster.engine_version,
            owner=state.owner_role,
            login=state.login_role,
            login_password_auth=state.login_role.password_auth,
            databases={db.logical: db.name for db in state.databases},
            grants=grants,
            default_privileges=_default_privilege_views(
                state, after=f"postgresql_grant.{grants[-1].label}" if grants else None
            ),
        )
        return context


def _database_labels(state: TenantState) -> dict[str, str]:
    """Physical database name -> label used in grant resource names (``db1``)."""
    labels: dict[str, str] = {}
    for db in state.databases:
        labels[db.name] = hcl.label(db.logical)
    if len(set(labels.values())) != len(labels):
        raise InputError(
            f"tenant {state.name!r}: database names {sorted(d.logical for d in state.databases)} "
            "collide once reduced to Terraform labels"
        )
    return labels


def _role_ref(state: TenantState, role: str) -> tuple[str, str]:
    """(HCL expression, label word) for a role named in a grant."""
    if role == state.login_role.name:
        return "postgresql_role.login.name", "login"
    if role == state.owner_role.name:
        return "postgresql_role.owner.name", "owner"
    if role == PUBLIC:
        return hcl.string(PUBLIC), "public"
    return hcl.string(role), hcl.label(role)


def _database_ref(state: TenantState, database: str) -> str:
    for db in state.databases:
        if db.name == database:
            return f"postgresql_database.this[{hcl.string(db.logical)}].name"
    return hcl.string(database)


def _grant_views(state: TenantState) -> tuple[GrantView, ...]:
    labels = _database_labels(state)
    views: list[GrantView] = []
    previous: str | None = None
    for grant in state.grants:
        views.append(_grant_view(state, grant, labels, previous))
        previous = f"postgresql_grant.{views[-1].label}"
    return tuple(views)


def _grant_view(state: TenantState, grant: Grant, labels: Mapping[str, str], previous: str | None) -> GrantView:
    role_ref, role_word = _role_ref(state, grant.role)
    target = grant.object_type if grant.schema is None else f"{grant.object_type}_{hcl.label(grant.schema)}"
    return GrantView(
        label=f"{labels.get(grant.database, hcl.label(grant.database))}_{role_word}_{target}",
        database_ref=_database_ref(state, grant.database),
        role_ref=role_ref,
        object_type=grant.object_type,
        schema=grant.schema,
        privileges=grant.privileges,
        depends_on=previous,
    )


def _default_privilege_views(state: TenantState, *, after: str | None) -> tuple[DefaultPrivilegesView, ...]:
    labels = _database_labels(state)
    views: list[DefaultPrivilegesView] = []
    # Default privileges run after the last grant: the provider races on the catalogs otherwise (#178).
    previous = after
    for default in state.default_privileges:
        views.append(_default_privilege_view(state, default, labels, previous))
        previous = f"postgresql_default_privileges.{views[-1].label}"
    return tuple(views)


def _default_privilege_view(
    state: TenantState, default: DefaultPrivilege, labels: Mapping[str, str], previous: str | None
) -> DefaultPrivilegesView:
    owner_ref, owner_word = _role_ref(state, default.owner)
    role_ref, role_word = _role_ref(state, default.role)
    return DefaultPrivilegesView(
        label=(f"{labels.get(default.database, hcl.label(default.database))}_{hcl.label(default.schema)}_"
               f"{default.object_type}s_{owner_word}_to_{role_word}"),
        database_ref=_database_ref(state, default.database),
        owner_ref=owner_ref,
        role_ref=role_ref,
        schema=default.schema,
        object_type=default.object_type,
        privileges=default.privileges,
        depends_on=previous,
    )
