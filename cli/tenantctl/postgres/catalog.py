"""Read what exists on a cluster: roles, databases and their privileges, in a constant number of queries.

Shared catalogs (``pg_authid``, ``pg_auth_members``, ``pg_database``, ``pg_db_role_setting``,
``pg_shdescription``) are visible from any database, so two queries on the maintenance database cover
every role and database however many tenants there are. Schema-level grants and default privileges live
in each database's own catalogs; reading them needs one connection per database. To keep a no-op plan
cheap, tenantctl records a hash of the schema-level state it applied in the database's comment (a shared
catalog) and connects only to databases whose marker does not match the desired state (or to every
database with ``deep=True``, which also catches hand-made drift inside databases).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tenantctl.postgres.connect import ClusterConnection, Connection, connect_admin, translated

MARKER_PREFIX = "tenantctl"
ELEVATED_ATTRIBUTES = ("bypassrls", "createdb", "createrole", "replication", "superuser")


@dataclass(frozen=True)
class Privileges:
    """Who holds what on one object: grantee ("public" for PUBLIC) -> sorted privilege names."""

    by_grantee: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Privileges:
        collected: dict[str, set[str]] = {}
        for grantee, privilege in pairs:
            collected.setdefault(grantee, set()).add(privilege)
        return cls({grantee: tuple(sorted(privs)) for grantee, privs in sorted(collected.items())})

    def of(self, grantee: str) -> tuple[str, ...]:
        return self.by_grantee.get(grantee, ())

    def to_json(self) -> dict[str, list[str]]:
        return {grantee: list(privs) for grantee, privs in sorted(self.by_grantee.items())}


@dataclass(frozen=True)
class ObservedRole:
    name: str
    login: bool
    inherit: bool
    connection_limit: int
    elevated: tuple[str, ...]  # names from ELEVATED_ATTRIBUTES the role has
    settings: Mapping[str, str]  # cluster-wide role settings (ALTER ROLE ... SET)
    member_of: tuple[str, ...]
    has_password: bool | None  # None: not readable (pg_authid needs superuser)
    comment: str | None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "login": self.login, "inherit": self.inherit,
                "connection_limit": self.connection_limit, "elevated": list(self.elevated),
                "settings": dict(sorted(self.settings.items())), "member_of": list(self.member_of),
                "has_password": self.has_password, "comment": self.comment}


@dataclass(frozen=True)
class ObservedDatabase:
    name: str
    owner: str
    allow_connections: bool
    privileges: Privileges
    comment: str | None

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "owner": self.owner, "allow_connections": self.allow_connections,
                "privileges": self.privileges.to_json(), "comment": self.comment}


@dataclass(frozen=True)
class DefaultAcl:
    owner: str  # the role whose future objects get the privileges
    schema: str
    object_type: str  # "table" | "sequence" | "function" | "type" | "schema"
    privileges: Privileges


@dataclass(frozen=True)
class ObservedSchemas:
    """Schema ``public`` privileges and the default privileges inside one database."""

    database: str
    public_schema_exists: bool
    public_schema: Privileges
    default_acls: tuple[DefaultAcl, ...]

    def to_json(self) -> dict[str, object]:
        return {"database": self.database, "public_schema_exists": self.public_schema_exists,
                "public_schema": self.public_schema.to_json(),
                "default_acls": [{"owner": d.owner, "schema": d.schema, "object_type": d.object_type,
                                  "privileges": d.privileges.to_json()} for d in self.default_acls]}


@dataclass(frozen=True)
class ObservedCluster:
    cluster: str
    roles: Mapping[str, ObservedRole]
    databases: Mapping[str, ObservedDatabase]
    schemas: Mapping[str, ObservedSchemas] = field(default_factory=dict)  # only inspected databases
    catalog_queries: int = 0  # how many queries the inspection ran (for the no-op benchmark)


@dataclass(frozen=True)
class Marker:
    """What tenantctl writes in ``COMMENT ON ROLE/DATABASE``: owning tenant and applied state hash."""

    tenant: str
    state: str | None = None
    archived: str | None = None  # the offboarding run that archived this database

    def render(self) -> str:
        return (f"{MARKER_PREFIX} tenant={self.tenant}" + (f" state={self.state}" if self.state else "")
                + (f" archived={self.archived}" if self.archived else ""))

    @classmethod
    def parse(cls, comment: str | None) -> Marker | None:
        if not comment or not comment.startswith(MARKER_PREFIX + " "):
            return None
        fields = dict(part.split("=", 1) for part in comment.split()[1:] if "=" in part)
        if "tenant" not in fields:
            return None
        return cls(tenant=fields["tenant"], state=fields.get("state"), archived=fields.get("archived"))


_ACL_JSON = ("SELECT coalesce(json_agg(json_build_array(CASE WHEN a.grantee = 0 THEN 'public' "
             "ELSE pg_get_userbyid(a.grantee) END, a.privilege_type)), '[]') FROM aclexplode({acl}) a")

ROLES_QUERY = """
SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolconnlimit,
       ARRAY[r.rolbypassrls, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolsuper],
       coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                 WHERE s.setrole = r.oid AND s.setdatabase = 0), '{{}}'),
       coalesce((SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m
                 JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '{{}}'),
       {password},
       shobj_description(r.oid, 'pg_authid')
FROM pg_roles r {join}
WHERE r.rolname !~ '^pg_'
"""

DATABASES_QUERY = f"""
SELECT d.datname, pg_get_userbyid(d.datdba), d.datallowconn,
       ({_ACL_JSON.format(acl="coalesce(d.datacl, acldefault('d', d.datdba))")}),
       shobj_description(d.oid, 'pg_database')
FROM pg_database d
WHERE NOT d.datistemplate
"""

SCHEMAS_QUERY = f"""
SELECT (SELECT ({_ACL_JSON.format(acl="coalesce(n.nspacl, acldefault('n', n.nspowner))")})
          FROM pg_namespace n WHERE n.nspname = 'public'),
       (SELECT coalesce(json_agg(json_build_array(pg_get_userbyid(d.defaclrole), coalesce(dn.nspname, ''),
                 d.defaclobjtype, CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee) END,
                 a.privilege_type)), '[]')
          FROM pg_default_acl d LEFT JOIN pg_namespace dn ON dn.oid = d.defaclnamespace,
               aclexplode(d.defaclacl) a)
"""

_DEFACL_TYPES = {"r": "table", "S": "sequence", "f": "function", "T": "type", "n": "schema"}


SchemaSelector = Callable[[Mapping[str, ObservedDatabase]], Iterable[str]]


def inspect_cluster(target: ClusterConnection, *, schema_databases: SchemaSelector | None = None
                    ) -> ObservedCluster:
    """Read roles and databases (3 queries), then the schema state of the selected databases (1 each)."""
    with connect_admin(target) as connection, translated(f"reading the catalogs of {target.describe()}"):
        roles = read_roles(connection)
        databases = read_databases(connection)
    queries = 3
    schemas: dict[str, ObservedSchemas] = {}
    selected = schema_databases(databases) if schema_databases else ()
    for name in sorted(set(selected)):
        if name in databases and databases[name].allow_connections:
            schemas[name] = inspect_schemas(target, name)
            queries += 1
    return ObservedCluster(cluster=target.cluster, roles=roles, databases=databases, schemas=schemas,
                           catalog_queries=queries)


def read_roles(connection: Connection) -> dict[str, ObservedRole]:
    readable = connection.execute("SELECT has_table_privilege('pg_authid', 'SELECT')").fetchone()
    if readable and readable[0]:
        query = ROLES_QUERY.format(password="a.rolpassword IS NOT NULL",
                                   join="JOIN pg_authid a ON a.oid = r.oid")
    else:
        query = ROLES_QUERY.format(password="NULL::boolean", join="")
    roles: dict[str, ObservedRole] = {}
    for row in connection.execute(query).fetchall():
        name, login, inherit, limit, flags, config, member_of, has_password, comment = row
        settings = dict(str(item).split("=", 1) for item in (config or []))
        roles[str(name)] = ObservedRole(
            name=str(name), login=bool(login), inherit=bool(inherit), connection_limit=int(limit),
            elevated=tuple(attr for attr, on in zip(ELEVATED_ATTRIBUTES, flags, strict=True) if on),
            settings=settings, member_of=tuple(member_of),
            has_password=None if has_password is None else bool(has_password),
            comment=None if comment is None else str(comment),
        )
    return roles


def read_databases(connection: Connection) -> dict[str, ObservedDatabase]:
    databases: dict[str, ObservedDatabase] = {}
    for name, owner, allow, acl, comment in connection.execute(DATABASES_QUERY).fetchall():
        databases[str(name)] = ObservedDatabase(
            name=str(name), owner=str(owner), allow_connections=bool(allow),
            privileges=Privileges.from_pairs((str(g), str(p)) for g, p in _json(acl)),
            comment=None if comment is None else str(comment),
        )
    return databases


def inspect_schemas(target: ClusterConnection, database: str) -> ObservedSchemas:
    with connect_admin(target, database) as connection, translated(f"reading schemas of {database}"):
        return read_schemas(connection, database)


def read_schemas(connection: Connection, database: str) -> ObservedSchemas:
    row = connection.execute(SCHEMAS_QUERY).fetchone()
    assert row is not None
    schema_acl, default_rows = row
    grouped: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for owner, schema, objtype, grantee, privilege in _json(default_rows):
        key = (str(owner), str(schema), _DEFACL_TYPES.get(str(objtype), str(objtype)))
        grouped.setdefault(key, []).append((str(grantee), str(privilege)))
    return ObservedSchemas(
        database=database,
        public_schema_exists=schema_acl is not None,
        public_schema=Privileges.from_pairs((str(g), str(p)) for g, p in _json(schema_acl)),
        default_acls=tuple(DefaultAcl(owner, schema, objtype, Privileges.from_pairs(pairs))
                           for (owner, schema, objtype), pairs in sorted(grouped.items())),
    )


def _json(value: Any) -> list[list[Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    return [list(item) for item in value]
