"""Desired state vs observed catalogs -> ordered actions. Pure and deterministic: no I/O here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tenantctl.errors import BackendError, RefusedError
from tenantctl.model import naming
from tenantctl.model.desired import RDS_IAM_ROLE, DesiredState, RoleSpec, TenantState
from tenantctl.postgres.catalog import Marker, ObservedCluster, ObservedDatabase, ObservedRole, ObservedSchemas
from tenantctl.postgres.plan import Action, Orphan, PgPlan, Phase, ordered, stable_hash

ROLE_SETTINGS = {  # RoleSpec field -> PostgreSQL parameter set with ALTER ROLE ... SET
    "statement_timeout_ms": "statement_timeout",
    "idle_in_transaction_timeout_ms": "idle_in_transaction_session_timeout",
}
SCHEMA = "public"


def schema_state(tenant: TenantState, database: str) -> dict[str, Any]:
    """The in-database part of the desired state of one database (what the marker hash covers)."""
    return {
        "schema_grants": [
            {"schema": g.schema, "role": g.role, "privileges": list(g.privileges)}
            for g in tenant.grants if g.database == database and g.object_type == "schema"
        ],
        "default_privileges": [
            {"owner": d.owner, "schema": d.schema, "object_type": d.object_type, "role": d.role,
             "privileges": list(d.privileges)}
            for d in tenant.default_privileges if d.database == database
        ],
    }


def schema_state_hash(tenant: TenantState, database: str) -> str:
    return stable_hash(schema_state(tenant, database), length=16)


def databases_to_inspect(desired: DesiredState, cluster: str, databases: Mapping[str, ObservedDatabase],
                         *, deep: bool) -> list[str]:
    """Existing databases whose schema state must be read: all with ``deep``, else marker mismatches."""
    names = []
    for tenant in desired.on_cluster(cluster):
        for spec in tenant.databases:
            observed = databases.get(spec.name)
            if observed is None or not observed.allow_connections:
                continue
            marker = Marker.parse(observed.comment)
            if deep or marker is None or marker.state != schema_state_hash(tenant, spec.name):
                names.append(spec.name)
    return sorted(names)


def compute_plan(desired: DesiredState, cluster: str, observed: ObservedCluster, *,
                 secret_names: frozenset[str] | None = None, deep: bool = False) -> PgPlan:
    """``secret_names``: names present in the secret store (None: unknown, then only missing passwords)."""
    tenants = desired.on_cluster(cluster)
    needs_rds_iam = any(RDS_IAM_ROLE in t.login_role.member_of for t in tenants)
    if needs_rds_iam and RDS_IAM_ROLE not in observed.roles:
        raise BackendError(f"cluster {cluster!r} has no {RDS_IAM_ROLE!r} role, needed by IAM-auth tenants",
                           hint="RDS/Aurora always has it; for local servers run `tenantctl local up`")
    conflicts = ownership_conflicts(tenants, observed)
    if conflicts:
        raise RefusedError(
            f"cluster {cluster!r}: tenantctl will not take over objects that belong to someone else:\n  "
            + "\n  ".join(conflicts),
            hint="rename the tenant or database in the clients file; if the object is really this tenant's, "
                 "fix its marker (COMMENT) by hand after checking its contents")
    actions: list[Action] = []
    for tenant in tenants:
        for spec in tenant.roles:
            actions += _role_actions(spec, observed.roles.get(spec.name))
        actions += _password_actions(desired, tenant, observed.roles.get(tenant.login_role.name), secret_names)
        for db in tenant.databases:
            actions += _database_actions(tenant, db.name, db.owner, observed.databases.get(db.name),
                                         observed.schemas.get(db.name))
    actions += _maintenance_database_actions(observed)
    return PgPlan(
        cluster=cluster, actions=ordered(actions), orphans=find_orphans(desired, cluster, observed),
        fingerprint=fingerprint(desired, cluster, observed, secret_names), deep=deep,
        inspected_databases=tuple(sorted(observed.schemas)), catalog_queries=observed.catalog_queries,
    )


MAINTENANCE_DATABASE = "postgres"


def _maintenance_database_actions(observed: ObservedCluster) -> list[Action]:
    """PUBLIC may CONNECT to ``postgres`` by default: a tenant could open it and list every tenant's roles and
    databases in the shared catalogs. The engine owns the cluster, so it takes that right away (the admin
    keeps it as the owner or a superuser)."""
    database = observed.databases.get(MAINTENANCE_DATABASE)
    public = database.privileges.by_grantee.get("public", ()) if database else ()
    if database is None or not public:
        return []
    return [Action("set_database_privileges", Phase.DATABASE_PRIVILEGES, "", MAINTENANCE_DATABASE,
                   f"database {MAINTENANCE_DATABASE}: PUBLIC gets nothing (had {', '.join(public)}); tenants "
                   "must not open the maintenance database", {"grantee": "public", "privileges": []})]


def ownership_conflicts(tenants: Sequence[TenantState], observed: ObservedCluster) -> list[str]:
    """Existing roles and databases the desired state names whose marker says they are not that tenant's
    (another tenant's, or an offboarded tenant's archive). Unmarked objects are adopted as before."""
    conflicts = []
    for tenant in tenants:
        for role in tenant.roles:
            found = observed.roles.get(role.name)
            marker = Marker.parse(found.comment) if found else None
            if marker is not None and marker.tenant != tenant.name:
                conflicts.append(f"role {role.name} is marked as tenant {marker.tenant!r}'s, not {tenant.name!r}'s")
        for spec in tenant.databases:
            database = observed.databases.get(spec.name)
            marker = Marker.parse(database.comment) if database else None
            if marker is None:
                continue
            if marker.archived is not None:
                conflicts.append(f"database {spec.name} is the archive of offboarded tenant {marker.tenant!r} "
                                 f"(run {marker.archived})")
            elif marker.tenant != tenant.name:
                conflicts.append(f"database {spec.name} is marked as tenant {marker.tenant!r}'s, "
                                 f"not {tenant.name!r}'s")
    return conflicts


def find_orphans(desired: DesiredState, cluster: str, observed: ObservedCluster) -> tuple[Orphan, ...]:
    tenants = {t.name: t for t in desired.on_cluster(cluster)}
    wanted_roles = {spec.name for t in tenants.values() for spec in t.roles}
    wanted_databases = {spec.name for t in tenants.values() for spec in t.databases}
    orphans = []
    for role in sorted(observed.roles.values(), key=lambda r: r.name):
        marker = Marker.parse(role.comment)
        if marker and role.name not in wanted_roles:
            reason = (f"tenant {marker.tenant!r} is not in the clients file for cluster {cluster!r}"
                      if marker.tenant not in tenants else "no longer a role of its tenant")
            orphans.append(Orphan("role", role.name, marker.tenant, reason))
    for database in sorted(observed.databases.values(), key=lambda d: d.name):
        marker = Marker.parse(database.comment)
        if marker and database.name not in wanted_databases:
            if marker.archived:
                reason = (f"archive of tenant {marker.tenant!r}'s database (run {marker.archived}: offboarded or "
                          "moved); kept")
            elif marker.tenant not in tenants:
                reason = f"tenant {marker.tenant!r} is not in the clients file for cluster {cluster!r}"
            else:
                reason = "database no longer enabled for its tenant"
            orphans.append(Orphan("database", database.name, marker.tenant, reason, archived=marker.archived))
    return tuple(orphans)


def fingerprint(desired: DesiredState, cluster: str, observed: ObservedCluster,
                secret_names: frozenset[str] | None) -> str:
    """Hash of every observed fact the plan depends on; ``apply`` refuses when it changed."""
    tenants = desired.on_cluster(cluster)
    role_names = {spec.name for t in tenants for spec in t.roles} | {RDS_IAM_ROLE}
    role_names |= {r.name for r in observed.roles.values() if Marker.parse(r.comment)}
    db_names = {spec.name for t in tenants for spec in t.databases}
    db_names |= {d.name for d in observed.databases.values() if Marker.parse(d.comment)}
    secrets = None
    if secret_names is not None:
        wanted = {naming.secret_name(desired.model.settings, t.name) for t in tenants}
        secrets = sorted(wanted & secret_names)
    return stable_hash({
        "cluster": cluster,
        "roles": [observed.roles[n].to_json() for n in sorted(role_names) if n in observed.roles],
        "databases": [observed.databases[n].to_json() for n in sorted(db_names) if n in observed.databases],
        "schemas": [observed.schemas[n].to_json() for n in sorted(observed.schemas)],
        "secrets": secrets,
    })


# --- roles -----------------------------------------------------------------------------------------


def _role_actions(spec: RoleSpec, role: ObservedRole | None) -> list[Action]:
    marker = Marker(tenant=spec.tenant).render()
    kind_text = "login role" if spec.login else "owner role (NOLOGIN)"
    actions: list[Action] = []
    if role is None:
        limit = f", connection limit {spec.connection_limit}" if spec.login else ""
        actions.append(Action("create_role", Phase.CREATE_ROLES if not spec.login else Phase.CREATE_ROLES + 1,
                              spec.tenant, spec.name, f"create {kind_text} {spec.name}{limit}",
                              {"login": spec.login, "connection_limit": spec.connection_limit,
                               "comment": marker}))
        observed_settings: Mapping[str, str] = {}
        observed_members: tuple[str, ...] = ()
    else:
        changes: dict[str, Any] = {}
        notes = []
        if role.login != spec.login:
            changes["login"] = spec.login
            notes.append(f"{'LOGIN' if spec.login else 'NOLOGIN'} (was {'LOGIN' if role.login else 'NOLOGIN'})")
        if role.connection_limit != spec.connection_limit:
            changes["connection_limit"] = spec.connection_limit
            notes.append(f"connection limit {spec.connection_limit} (was {role.connection_limit})")
        if not role.inherit:
            changes["inherit"] = True
            notes.append("INHERIT")
        if role.elevated:
            changes["revoke_attributes"] = list(role.elevated)
            notes.append("remove " + ", ".join(a.upper() for a in role.elevated))
        if changes:
            actions.append(Action("alter_role", Phase.ALTER_ROLES, spec.tenant, spec.name,
                                  f"alter role {spec.name}: " + "; ".join(notes), changes))
        if role.comment != marker:
            actions.append(Action("mark_role", Phase.ALTER_ROLES, spec.tenant, spec.name,
                                  f"mark role {spec.name} as managed for tenant {spec.tenant}",
                                  {"comment": marker}))
        observed_settings = role.settings
        observed_members = role.member_of
    for field_name, parameter in ROLE_SETTINGS.items():
        value = getattr(spec, field_name)
        if value is None:
            continue
        if observed_settings.get(parameter) != str(value):
            actions.append(Action("set_role_setting", Phase.ALTER_ROLES, spec.tenant, spec.name,
                                  f"set {parameter} = {value} for role {spec.name}",
                                  {"parameter": parameter, "value": str(value)}))
    for group in sorted(set(spec.member_of) - set(observed_members)):
        actions.append(Action("grant_membership", Phase.MEMBERSHIPS, spec.tenant, spec.name,
                              f"grant role {group} to {spec.name}", {"group": group}))
    for group in sorted(set(observed_members) - set(spec.member_of)):
        actions.append(Action("revoke_membership", Phase.MEMBERSHIPS - 1, spec.tenant, spec.name,
                              f"revoke role {group} from {spec.name} (not in the desired state)",
                              {"group": group}))
    return actions


def _password_actions(desired: DesiredState, tenant: TenantState, role: ObservedRole | None,
                      secret_names: frozenset[str] | None) -> list[Action]:
    spec = tenant.login_role
    secret = naming.secret_name(desired.model.settings, tenant.name)
    if spec.password_auth:
        secret_missing = secret_names is not None and secret not in secret_names
        if role is None or role.has_password is False or secret_missing:
            why = ("new role" if role is None else "secret missing: a new password is generated"
                   if secret_missing else "role has no password")
            return [Action("set_password", Phase.PASSWORDS, tenant.name, spec.name,
                           f"set the password of {spec.name} from secret {secret} ({why})",
                           {"secret": secret, "regenerate": secret_missing})]
    elif role is not None and role.has_password:
        return [Action("remove_password", Phase.PASSWORDS, tenant.name, spec.name,
                       f"remove the password of {spec.name} (IAM authentication only)", {})]
    return []


# --- databases -------------------------------------------------------------------------------------


def _database_actions(tenant: TenantState, name: str, owner: str, database: ObservedDatabase | None,
                      schemas: ObservedSchemas | None) -> list[Action]:
    actions: list[Action] = []
    wanted = {g.role: g.privileges for g in tenant.grants if g.database == name and g.object_type == "database"}
    if database is None:
        actions.append(Action("create_database", Phase.CREATE_DATABASES, tenant.name, name,
                              f"create database {name} owned by {owner} (connections disabled until "
                              "its privileges are set)",
                              {"owner": owner, "comment": Marker(tenant=tenant.name).render()},
                              transactional=False))
        current: Mapping[str, tuple[str, ...]] = {"public": ("CONNECT", "TEMPORARY")}
        allow_connections = False
    else:
        if database.owner != owner:
            actions.append(Action("set_database_owner", Phase.DATABASE_PRIVILEGES - 1, tenant.name, name,
                                  f"change owner of database {name} to {owner} (was {database.owner})",
                                  {"owner": owner}))
        current = {g: p for g, p in database.privileges.by_grantee.items() if g not in (owner, database.owner)}
        allow_connections = database.allow_connections
    for grantee in sorted(set(wanted) | set(current)):
        target = tuple(sorted(wanted.get(grantee, ())))
        if tuple(sorted(current.get(grantee, ()))) != target:
            who = "PUBLIC" if grantee == "public" else grantee
            what = ", ".join(target) if target else "nothing"
            actions.append(Action("set_database_privileges", Phase.DATABASE_PRIVILEGES, tenant.name, name,
                                  f"database {name}: {who} gets {what}"
                                  f" (had {', '.join(current.get(grantee, ())) or 'nothing'})",
                                  {"grantee": grantee, "privileges": list(target)}))
    if not allow_connections:
        actions.append(Action("open_database", Phase.OPEN_DATABASES, tenant.name, name,
                              f"allow connections to database {name}", {}))
    actions += _schema_actions(tenant, name, database, schemas)
    return actions


def _schema_actions(tenant: TenantState, name: str, database: ObservedDatabase | None,
                    schemas: ObservedSchemas | None) -> list[Action]:
    state = schema_state(tenant, name)
    marker = Marker(tenant=tenant.name, state=schema_state_hash(tenant, name)).render()
    if database is not None and schemas is None and database.comment == marker:
        return []  # applied by tenantctl and unchanged since (use --deep to re-read the database)
    extra_schema: list[str] = []
    extra_defaults: list[dict[str, str]] = []
    differences: list[str] = []
    if schemas is None:
        differences.append("not yet applied" if database is None or database.comment is None
                           else "desired state changed since last applied")
    else:
        wanted = {g["role"]: tuple(g["privileges"]) for g in state["schema_grants"]}
        owner = next((d["role"] for d in state["default_privileges"]), None)
        current = {g: p for g, p in schemas.public_schema.by_grantee.items()
                   if g not in ("pg_database_owner", owner)}
        for grantee in sorted(set(wanted) | set(current)):
            if tuple(sorted(current.get(grantee, ()))) != tuple(sorted(wanted.get(grantee, ()))):
                differences.append(f"schema public: {grantee} has {', '.join(current.get(grantee, ())) or 'nothing'}")
                if grantee not in wanted:
                    extra_schema.append(grantee)
        managed_owners = {spec.name for spec in tenant.roles}
        wanted_defaults = {(d["owner"], d["schema"], d["object_type"], d["role"]): tuple(d["privileges"])
                           for d in state["default_privileges"]}
        current_defaults = {(acl.owner, acl.schema, acl.object_type, grantee): privs
                            for acl in schemas.default_acls if acl.owner in managed_owners
                            for grantee, privs in acl.privileges.by_grantee.items()}
        for key in sorted(set(wanted_defaults) | set(current_defaults)):
            if current_defaults.get(key, ()) != wanted_defaults.get(key, ()):
                differences.append(f"default privileges for {key[0]} on {key[2]}s in "
                                   f"{key[1] or 'all schemas'} to {key[3]} differ")
                if key not in wanted_defaults:
                    extra_defaults.append({"owner": key[0], "schema": key[1], "object_type": key[2],
                                           "role": key[3]})
        if not differences:
            if database is not None and database.comment == marker:
                return []
            return [Action("mark_database", Phase.SCHEMAS, tenant.name, name,
                           f"record the applied state in the comment of database {name}",
                           {"comment": marker}, database=None)]
    return [Action("reconcile_schemas", Phase.SCHEMAS, tenant.name, name,
                   f"database {name}: set schema public grants and default privileges ("
                   + "; ".join(differences) + ")",
                   {**state, "revoke_schema_grantees": extra_schema, "revoke_default_privileges": extra_defaults,
                    "comment": marker}, database=name)]
