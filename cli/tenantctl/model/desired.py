"""Desired state: what must exist for every tenant, derived purely from the model.

One desired state feeds both Postgres engines (``native`` reconciles it with psycopg; ``terraform``
renders it as cyrilgdn/postgresql resources), the tenant Terraform stacks (IAM) and the routing map.
Grants are *authoritative* per (database, role, object type, schema): the listed privileges are the
complete set that role must hold there; an empty tuple means "revoke everything" (used for PUBLIC).
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantctl.model import naming
from tenantctl.model.types import Model, Tenant

RDS_IAM_ROLE = "rds_iam"
PUBLIC = "public"

DATABASE_PRIVILEGES = ("CONNECT", "TEMPORARY")
SCHEMA_PRIVILEGES = ("CREATE", "USAGE")
TABLE_PRIVILEGES = ("DELETE", "INSERT", "REFERENCES", "SELECT", "TRIGGER", "TRUNCATE", "UPDATE")
SEQUENCE_PRIVILEGES = ("SELECT", "UPDATE", "USAGE")


@dataclass(frozen=True)
class RoleSpec:
    name: str
    tenant: str
    login: bool
    connection_limit: int  # -1: unlimited
    statement_timeout_ms: int | None  # None: not managed (NOLOGIN roles)
    idle_in_transaction_timeout_ms: int | None
    member_of: tuple[str, ...]  # sorted role names this role is granted
    password_auth: bool  # True: a generated password (pre-hashed SCRAM) must be set


@dataclass(frozen=True)
class DatabaseSpec:
    name: str  # physical name on the cluster
    logical: str  # the name in the clients file (what applications ask the proxy for)
    tenant: str
    owner: str


@dataclass(frozen=True)
class Grant:
    database: str
    role: str  # grantee; "public" for PUBLIC
    object_type: str  # "database" | "schema"
    privileges: tuple[str, ...]  # sorted; the complete set (authoritative)
    schema: str | None = None  # for object_type == "schema"


@dataclass(frozen=True)
class DefaultPrivilege:
    database: str
    owner: str  # the role whose future objects get these privileges
    schema: str
    object_type: str  # "table" | "sequence"
    role: str  # grantee
    privileges: tuple[str, ...]


@dataclass(frozen=True)
class IamSpec:
    user_name: str
    role_name: str
    policy_name: str
    db_user: str  # the Postgres login role the rds-db:connect policy names
    allowed_ips: tuple[str, ...]
    rds_iam_auth: bool
    tags: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TenantState:
    tenant: Tenant
    cluster: str
    owner_role: RoleSpec
    login_role: RoleSpec
    databases: tuple[DatabaseSpec, ...]
    grants: tuple[Grant, ...]
    default_privileges: tuple[DefaultPrivilege, ...]
    iam: IamSpec

    @property
    def name(self) -> str:
        return self.tenant.name

    @property
    def roles(self) -> tuple[RoleSpec, RoleSpec]:
        return (self.owner_role, self.login_role)


@dataclass(frozen=True)
class DesiredState:
    model: Model
    tenants: tuple[TenantState, ...]  # sorted by tenant name

    def on_cluster(self, cluster: str) -> tuple[TenantState, ...]:
        return tuple(t for t in self.tenants if t.cluster == cluster)

    def tenant(self, name: str) -> TenantState:
        for state in self.tenants:
            if state.name == name:
                return state
        raise KeyError(name)


def tenant_tags(model: Model, tenant: Tenant) -> tuple[tuple[str, str], ...]:
    """Cost-allocation tags: the tenant's own plus tenant/tier/cluster/managed-by."""
    tags = dict(tenant.tags)
    tags.update({"tenant": tenant.name, "tier": tenant.tier, "cluster": tenant.cluster,
                 "managed-by": "tenantctl"})
    return tuple(sorted(tags.items()))


def desired_tenant(model: Model, tenant: Tenant) -> TenantState:
    settings = model.settings
    tier = model.tier(tenant.tier)
    owner = naming.owner_role(settings, tenant.name)
    login = naming.login_role(settings, tenant.name)
    member_of = tuple(sorted({owner, *((RDS_IAM_ROLE,) if tenant.rds_iam_auth else ())}))
    owner_role = RoleSpec(
        name=owner, tenant=tenant.name, login=False, connection_limit=-1,
        statement_timeout_ms=None, idle_in_transaction_timeout_ms=None, member_of=(), password_auth=False,
    )
    limit = tenant.connection_limit if tenant.connection_limit is not None else tier.connection_limit
    login_role = RoleSpec(
        name=login, tenant=tenant.name, login=True, connection_limit=limit,
        statement_timeout_ms=tier.statement_timeout_ms,
        idle_in_transaction_timeout_ms=tier.idle_in_transaction_timeout_ms,
        member_of=member_of, password_auth=not tenant.rds_iam_auth,
    )
    databases = tuple(
        DatabaseSpec(name=naming.database(settings, tenant.name, logical), logical=logical,
                     tenant=tenant.name, owner=owner)
        for logical in tenant.databases
    )
    grants: list[Grant] = []
    defaults: list[DefaultPrivilege] = []
    for db in databases:
        grants += [
            Grant(db.name, PUBLIC, "database", ()),
            Grant(db.name, login, "database", DATABASE_PRIVILEGES),
            Grant(db.name, PUBLIC, "schema", (), schema="public"),
            Grant(db.name, login, "schema", SCHEMA_PRIVILEGES, schema="public"),
        ]
        defaults += [
            DefaultPrivilege(db.name, login, "public", "table", owner, TABLE_PRIVILEGES),
            DefaultPrivilege(db.name, login, "public", "sequence", owner, SEQUENCE_PRIVILEGES),
        ]
    iam = IamSpec(
        user_name=naming.iam_user(settings, tenant.name),
        role_name=naming.iam_role(settings, tenant.name),
        policy_name=naming.iam_policy(settings, tenant.name),
        db_user=login,
        allowed_ips=tenant.allowed_ips,
        rds_iam_auth=tenant.rds_iam_auth,
        tags=tenant_tags(model, tenant),
    )
    return TenantState(
        tenant=tenant, cluster=tenant.cluster, owner_role=owner_role, login_role=login_role,
        databases=databases, grants=tuple(grants), default_privileges=tuple(defaults), iam=iam,
    )


def desired_state(model: Model) -> DesiredState:
    return DesiredState(model=model, tenants=tuple(desired_tenant(model, t) for t in model.tenants))
