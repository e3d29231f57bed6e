"""Validate a parsed clients file and build the model, collecting every problem (not just the first).

Each problem is a ``Diagnostic`` printed as ``file:line:col: field.path: message``. The rules and
their exact messages are tested one by one in tests/unit/model/test_validate.py.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tenantctl.errors import Diagnostic, ValidationFailed
from tenantctl.model import naming, placement
from tenantctl.model.hcl import Node, SourceFile
from tenantctl.model.types import (
    BACKENDS,
    DEFAULT_TIER,
    DEFAULT_TIERS,
    POSTGRES_ENGINES,
    TARGETS,
    Backend,
    Cluster,
    Model,
    PostgresAccess,
    Settings,
    Tenant,
    Tier,
)

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
CLUSTER_NAME = re.compile(r"[a-z](?:[a-z0-9]|-(?!-))*")
PREFIX = re.compile(r"[a-z](?:[a-z0-9]|_(?!_))*")  # no `__`: reserved for archive names
ACCOUNT_ID = re.compile(r"[0-9]{12}")
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+")
RESERVED_NAMES = frozenset(
    {"postgres", "template0", "template1", "rdsadmin", "rdsproxyadmin", "rdstopmgr", "public",
     "tenantctl_admin", "none", "current_user", "session_user", "current_role"}
)
RESERVED_PREFIXES = ("rds_", "pg_")
PG_NAME_MAX = 63
IAM_ROLE_MAX = 64

TOP_LEVEL_KEYS = ("clients", "clusters", "settings", "tiers")
TENANT_KEYS = ("name", "databases", "allowed_ips", "rds_iam_auth", "tier", "cluster", "connection_limit", "tags")
# Serverless v2 capacities every provider of the supported range (hashicorp/aws >= 4.61.0) accepts: 4.61.0
# caps both at 128 ACU; later releases (up to 256) require a maximum of at least 1 ACU, as Aurora does.
ACU_RANGE = {"min_acu": (0.5, 128.0), "max_acu": (1.0, 128.0)}
ACU_RANGE_WHY = "what Aurora Serverless v2 and every hashicorp/aws >= 4.61.0 accept"
CLUSTER_KEYS = ("min_acu", "max_acu", "engine_version", "max_tenants", "dedicated")
SETTINGS_KEYS = ("region", "account_id", "prefix", "postgres_engine", "target", "allow_private_source_ips",
                 "default_tier", "backend", "postgres", "aws_endpoint_url", "archive")
POSTGRES_ACCESS_KEYS = ("ssl_mode", "ca_bundle", "connect", "iam_auth", "iam_user")
# s3://BUCKET[/PREFIX], or a directory (anything else not starting with a URL scheme)
ARCHIVE_LOCATION = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?|(?![a-zA-Z][a-zA-Z0-9+.-]*:)[^\s][^\n]*")
IAM_USER_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
ENDPOINT_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?/?")
BACKEND_KEYS = ("kind", "bucket", "key_prefix", "dynamodb_table", "region")
TIER_KEYS = ("connection_limit", "statement_timeout_ms", "idle_in_transaction_timeout_ms", "proxy_max_connections")

DEFAULT_CLUSTER = "shared-01"
DEFAULT_ENGINE_VERSION = "15.4"


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


ARCHIVE_SEPARATOR_RULE = (
    "cannot contain `__` or end with `_`: `__` separates a database from its archive suffix (offboarded "
    "databases are renamed `<database>__archived_<date>`), so such a name could produce another tenant's "
    "archive name")


def splits_archive_names(name: str) -> bool:
    """Whether ``name`` could make a live physical name contain ``__`` (reserved for archive names)."""
    return "__" in name or name.endswith("_")


def _is_reserved(name: str) -> bool:
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES)


@dataclass(frozen=True)
class _Entry:
    """A tenant with the path and node it came from, for rules that look across tenants."""

    tenant: Tenant
    path: str
    node: Node

    def field(self, key: str) -> tuple[int, str]:
        node = self.node.value.get(key, self.node)
        return node.pos, f"{self.path}.{key}"


class _Checker:
    """Holds the diagnostics while walking the parsed tree."""

    def __init__(self, source: SourceFile) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def error(self, pos: int, path: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.source.location(pos), path, message))

    def kind(self, node: Node, kind: str, path: str, what: str) -> bool:
        if node.kind == kind:
            return True
        self.error(node.pos, path, f"must be {what}, not {_describe(node)}")
        return False

    def keys(self, node: Node, allowed: tuple[str, ...], path: str, required: tuple[str, ...] = ()) -> None:
        assert node.key_pos is not None
        for key, pos in node.key_pos.items():
            if key not in allowed:
                self.error(pos, f"{path}.{key}" if path else key,
                           f"unknown key{_did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")
        for key in required:
            if key not in node.value:
                self.error(node.pos, path, f"missing required key `{key}`")

    def string(self, node: Node, path: str) -> str | None:
        return node.value if self.kind(node, "string", path, "a string") else None

    def boolean(self, node: Node, path: str) -> bool | None:
        return node.value if self.kind(node, "bool", path, "true or false") else None

    def integer(self, node: Node, path: str, low: int, high: int) -> int | None:
        if node.kind != "number" or not isinstance(node.value, int):
            self.error(node.pos, path, f"must be a whole number, not {_describe(node)}")
            return None
        if not low <= node.value <= high:
            self.error(node.pos, path, f"must be between {low} and {high}, not {node.value}")
            return None
        return int(node.value)

    def number(self, node: Node, path: str) -> float | None:
        if node.kind != "number":
            self.error(node.pos, path, f"must be a number, not {_describe(node)}")
            return None
        return float(node.value)

    def choice(self, node: Node, path: str, choices: tuple[str, ...]) -> str | None:
        value = self.string(node, path)
        if value is None:
            return None
        if value not in choices:
            self.error(node.pos, path, f"must be one of {', '.join(choices)}, not `{value}`"
                       f"{_did_you_mean(value, choices)}")
            return None
        return value


def _describe(node: Node) -> str:
    if node.kind == "string":
        return f'the string "{node.value}"' if len(node.value) < 40 else "a string"
    if node.kind in ("number", "bool"):
        return f"{node.kind} {str(node.value).lower() if node.kind == 'bool' else node.value}"
    return {"list": "a list", "object": "an object", "null": "null"}[node.kind]


def build_model(root: Node, source: SourceFile) -> Model:
    """Validate the parsed top level of a clients file and build the model (or raise ValidationFailed)."""
    check = _Checker(source)
    check.keys(root, TOP_LEVEL_KEYS, "")
    settings = _settings(check, root.value.get("settings"))
    tiers = _tiers(check, root.value.get("tiers"))
    tier_names = tuple(t.name for t in tiers)
    if settings.default_tier not in tier_names:
        node = root.value["settings"].value["default_tier"]
        check.error(node.pos, "settings.default_tier",
                    f"unknown tier `{settings.default_tier}`{_did_you_mean(settings.default_tier, tier_names)}")
    clusters = _clusters(check, root.value.get("clusters"), settings)
    clients = root.value.get("clients")
    entries: list[_Entry] = []
    if clients is None:
        check.error(0, "clients", "missing: the file must define `clients = [ ... ]`")
    elif check.kind(clients, "list", "clients", "a list of tenant objects"):
        for index, node in enumerate(clients.value):
            tenant = _tenant(check, node, f"clients[{index}]", settings, tier_names)
            if tenant is not None:
                entries.append(_Entry(tenant, f"clients[{index}]", node))
    entries = _place_and_check_clusters(check, entries, clusters, root.value.get("clusters"))
    _check_uniqueness(check, entries, settings)
    tenants = [entry.tenant for entry in entries]
    if check.diagnostics:
        raise ValidationFailed(check.diagnostics)
    return Model(
        source=source.name,
        settings=settings,
        clusters=tuple(sorted(clusters.values(), key=lambda c: c.name)),
        tenants=tuple(sorted(tenants, key=lambda t: t.name)),
        tiers=tiers,
    )


def _settings(check: _Checker, node: Node | None) -> Settings:
    settings = Settings()
    if node is None or not check.kind(node, "object", "settings", "an object"):
        return settings
    check.keys(node, SETTINGS_KEYS, "settings")
    values: dict[str, Any] = {}
    fields: dict[str, Callable[[Node, str], Any]] = {
        "region": lambda n, p: _matching(check, n, p, REGION, "an AWS region such as eu-west-1"),
        "account_id": lambda n, p: _matching(check, n, p, ACCOUNT_ID, "a 12-digit AWS account id"),
        "prefix": lambda n, p: _matching(check, n, p, PREFIX, "lowercase letters, digits and `_`, "
                                         "starting with a letter, no `__` (reserved for archive names)",
                                         max_len=20, empty_ok=True),
        "postgres_engine": lambda n, p: check.choice(n, p, POSTGRES_ENGINES),
        "target": lambda n, p: check.choice(n, p, TARGETS),
        "allow_private_source_ips": check.boolean,
        "default_tier": check.string,
        "backend": lambda n, p: _backend(check, n, p),
        "postgres": lambda n, p: _postgres_access(check, n, p),
        "aws_endpoint_url": lambda n, p: _matching(check, n, p, ENDPOINT_URL, "an http(s)://host[:port] URL"),
        "archive": lambda n, p: _matching(check, n, p, ARCHIVE_LOCATION,
                                          "s3://BUCKET/PREFIX or a directory", max_len=1024),
    }
    for key, parse in fields.items():
        if key in node.value:
            value = parse(node.value[key], f"settings.{key}")
            if value is not None:
                values[key] = value
    return replace(settings, **values)


def _matching(check: _Checker, node: Node, path: str, pattern: re.Pattern[str], what: str, *,
              max_len: int = 255, empty_ok: bool = False) -> str | None:
    value = check.string(node, path)
    if value is None or (empty_ok and value == ""):
        return value
    if not pattern.fullmatch(value) or len(value) > max_len:
        check.error(node.pos, path, f"`{value}` is not valid: expected {what}"
                    + (f" (at most {max_len} characters)" if max_len < 255 else ""))
        return None
    return value


def _postgres_access(check: _Checker, node: Node, path: str) -> PostgresAccess | None:
    if not check.kind(node, "object", path, "an object"):
        return None
    check.keys(node, POSTGRES_ACCESS_KEYS, path)
    values: dict[str, Any] = {}
    if "ssl_mode" in node.value:
        values["ssl_mode"] = check.choice(node.value["ssl_mode"], f"{path}.ssl_mode", SSL_MODES)
    if "ca_bundle" in node.value:
        values["ca_bundle"] = check.string(node.value["ca_bundle"], f"{path}.ca_bundle")
    if "iam_auth" in node.value:
        values["iam_auth"] = check.boolean(node.value["iam_auth"], f"{path}.iam_auth")
    if "iam_user" in node.value:
        user = check.string(node.value["iam_user"], f"{path}.iam_user")
        if user is not None and not IAM_USER_PATTERN.fullmatch(user):
            check.error(node.value["iam_user"].pos, f"{path}.iam_user",
                        f"`{user}` is not a PostgreSQL role name (lower case letters, digits, _; at most 63)")
        values["iam_user"] = user
    connect = node.value.get("connect")
    if connect is not None and check.kind(connect, "object", f"{path}.connect", "an object of cluster = \"HOST:PORT\""):
        entries = []
        for cluster, item in connect.value.items():
            where = f"{path}.connect.{cluster}"
            text = check.string(item, where)
            host, sep, port = (text or "").rpartition(":")
            if text is not None and (not sep or not host or not port.isdigit() or not 0 < int(port) < 65536):
                check.error(item.pos, where, f"`{text}` is not HOST:PORT")
            elif text is not None:
                entries.append((cluster, host.strip("[]"), int(port)))
        values["connect"] = tuple(sorted(entries))
    return PostgresAccess(**{k: v for k, v in values.items() if v is not None})


def _backend(check: _Checker, node: Node, path: str) -> Backend | None:
    if not check.kind(node, "object", path, "an object"):
        return None
    check.keys(node, BACKEND_KEYS, path)
    values: dict[str, Any] = {}
    for key in BACKEND_KEYS:
        if key in node.value:
            value = (check.choice(node.value[key], f"{path}.{key}", BACKENDS) if key == "kind"
                     else check.string(node.value[key], f"{path}.{key}"))
            if value is not None:
                values[key] = value
    backend = Backend(**values)
    if backend.kind == "s3":
        for key in ("bucket", "dynamodb_table"):
            if not getattr(backend, key):
                check.error(node.pos, path, f"an s3 backend needs `{key}`")
    return backend


def _tiers(check: _Checker, node: Node | None) -> tuple[Tier, ...]:
    tiers = {tier.name: tier for tier in DEFAULT_TIERS}
    if node is not None and check.kind(node, "object", "tiers", "an object of tier name = { limits }"):
        assert node.key_pos is not None
        for name, spec in node.value.items():
            path = f"tiers.{name}"
            if not IDENTIFIER.fullmatch(name):
                check.error(node.key_pos[name], path, "tier names use lowercase letters, digits and `_`")
                continue
            if not check.kind(spec, "object", path, "an object"):
                continue
            check.keys(spec, TIER_KEYS, path)
            base = tiers.get(name, tiers[DEFAULT_TIER])
            values: dict[str, Any] = {"name": name}
            for key in TIER_KEYS:
                if key in spec.value:
                    low = 1 if key in ("connection_limit", "proxy_max_connections") else 0
                    value = check.integer(spec.value[key], f"{path}.{key}", low, 86_400_000)
                    if value is not None:
                        values[key] = value
            tiers[name] = replace(base, **values)
    return tuple(sorted(tiers.values(), key=lambda t: t.name))


def _clusters(check: _Checker, node: Node | None, settings: Settings) -> dict[str, Cluster]:
    if node is None:
        return {DEFAULT_CLUSTER: Cluster(DEFAULT_CLUSTER, f"{settings.prefix.replace('_', '-')}{DEFAULT_CLUSTER}",
                                         0.5, 16.0, DEFAULT_ENGINE_VERSION, None, False)}
    clusters: dict[str, Cluster] = {}
    if not check.kind(node, "object", "clusters", "an object of cluster name = { settings }"):
        return clusters
    assert node.key_pos is not None
    for name, spec in node.value.items():
        path = f"clusters.{name}"
        location = check.source.location(node.key_pos[name])
        identifier = f"{settings.prefix.replace('_', '-')}{name}"
        if not CLUSTER_NAME.fullmatch(name) or name.endswith("-") or len(identifier) > 63:
            check.error(node.key_pos[name], path, "cluster names start with a lowercase letter, hold lowercase "
                        "letters, digits and single hyphens, do not end with a hyphen, and the identifier "
                        "(prefix + name) has at most 63 characters")
        if not check.kind(spec, "object", path, "an object"):
            continue
        check.keys(spec, CLUSTER_KEYS, path)
        values = spec.value
        min_acu = check.number(values["min_acu"], f"{path}.min_acu") if "min_acu" in values else 0.5
        max_acu = check.number(values["max_acu"], f"{path}.max_acu") if "max_acu" in values else 16.0
        for key, acu in (("min_acu", min_acu), ("max_acu", max_acu)):
            lowest = ACU_RANGE[key][0]
            if acu is not None and key in values and (not lowest <= acu <= ACU_RANGE[key][1] or (acu * 2) % 1):
                check.error(values[key].pos, f"{path}.{key}", f"must be a multiple of 0.5 between {lowest:g} and "
                            f"{ACU_RANGE[key][1]:g}, not {acu:g} ({ACU_RANGE_WHY})")
        if min_acu is not None and max_acu is not None and min_acu > max_acu:
            check.error(spec.pos, path, f"min_acu ({min_acu:g}) is larger than max_acu ({max_acu:g})")
        engine = (check.string(values["engine_version"], f"{path}.engine_version")
                  if "engine_version" in values else DEFAULT_ENGINE_VERSION)
        max_tenants = (check.integer(values["max_tenants"], f"{path}.max_tenants", 1, 100_000)
                       if "max_tenants" in values else None)
        dedicated = check.boolean(values["dedicated"], f"{path}.dedicated") if "dedicated" in values else False
        clusters[name] = Cluster(name, identifier, min_acu or 0.5, max_acu or 16.0,
                                 engine or DEFAULT_ENGINE_VERSION, max_tenants, bool(dedicated), location)
    if not clusters:
        check.error(node.pos, "clusters", "defines no cluster")
    return clusters


def _tenant(check: _Checker, node: Node, path: str, settings: Settings,
            tier_names: tuple[str, ...]) -> Tenant | None:
    if not check.kind(node, "object", path, "a tenant object"):
        return None
    before = len(check.diagnostics)
    check.keys(node, TENANT_KEYS, path, required=("name", "databases", "allowed_ips"))
    values = node.value
    name = _tenant_name(check, values["name"], f"{path}.name", settings) if "name" in values else None
    enabled, disabled = _databases(check, values.get("databases"), f"{path}.databases", settings, name)
    rds_iam_auth = check.boolean(values["rds_iam_auth"], f"{path}.rds_iam_auth") if "rds_iam_auth" in values \
        else False
    allowed_ips = _allowed_ips(check, values.get("allowed_ips"), f"{path}.allowed_ips",
                               iam_auth=bool(rds_iam_auth), settings=settings)
    tier = settings.default_tier
    if "tier" in values:
        tier_value = check.string(values["tier"], f"{path}.tier")
        if tier_value is not None and tier_value not in tier_names:
            check.error(values["tier"].pos, f"{path}.tier", f"unknown tier `{tier_value}`"
                        f"{_did_you_mean(tier_value, tier_names)}; tiers: {', '.join(tier_names)}")
        tier = tier_value or tier
    cluster = check.string(values["cluster"], f"{path}.cluster") if "cluster" in values else None
    limit = (check.integer(values["connection_limit"], f"{path}.connection_limit", 1, 10_000)
             if "connection_limit" in values else None)
    tags = _tags(check, values["tags"], f"{path}.tags") if "tags" in values else ()
    if name is None or len(check.diagnostics) > before:
        return None
    return Tenant(
        name=name, databases=enabled, disabled_databases=disabled, allowed_ips=allowed_ips,
        rds_iam_auth=bool(rds_iam_auth), tier=tier, cluster=cluster or "", cluster_pinned=cluster is not None,
        connection_limit=limit, tags=tags, location=check.source.location(node.pos),
    )


def _tenant_name(check: _Checker, node: Node, path: str, settings: Settings) -> str | None:
    name = check.string(node, path)
    if name is None:
        return None
    if not IDENTIFIER.fullmatch(name):
        check.error(node.pos, path, f'"{name}" is not a valid tenant name: use lowercase letters, digits and `_`, '
                    "starting with a letter (it names Postgres roles and IAM users)")
        return None
    if splits_archive_names(name):
        check.error(node.pos, path, f'"{name}" {ARCHIVE_SEPARATOR_RULE}')
        return None
    if _is_reserved(name) or _is_reserved(naming.login_role(settings, name)):
        check.error(node.pos, path, f'"{name}" is reserved (postgres, template0/1, rdsadmin, public, rds_*, pg_* '
                    "and tenantctl's own names cannot name a tenant)")
        return None
    owner = naming.owner_role(settings, name)
    if len(owner.encode()) > PG_NAME_MAX:
        check.error(node.pos, path, f"too long: its owner role `{owner}` would be {len(owner.encode())} bytes "
                    f"(Postgres allows {PG_NAME_MAX})")
        return None
    role = naming.iam_role(settings, name)
    if len(role) > IAM_ROLE_MAX:
        check.error(node.pos, path, f"too long: its IAM role `{role}` would be {len(role)} characters "
                    f"(IAM allows {IAM_ROLE_MAX})")
        return None
    return name


def _databases(check: _Checker, node: Node | None, path: str, settings: Settings,
               tenant: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if node is None or not check.kind(node, "object", path, "an object of database name = true/false"):
        return (), ()
    assert node.key_pos is not None
    enabled: list[str] = []
    disabled: list[str] = []
    for logical, flag in node.value.items():
        key_path = f"{path}.{logical}"
        pos = node.key_pos[logical]
        if not IDENTIFIER.fullmatch(logical):
            check.error(pos, key_path, f'"{logical}" is not a valid database name: use lowercase letters, '
                        "digits and `_`, starting with a letter")
            continue
        if splits_archive_names(logical):
            check.error(pos, key_path, f'"{logical}" {ARCHIVE_SEPARATOR_RULE}')
            continue
        if tenant is not None:
            physical = naming.database(settings, tenant, logical)
            if len(physical.encode()) > PG_NAME_MAX:
                check.error(pos, key_path, f"physical database name `{physical}` is {len(physical.encode())} bytes; "
                            f"Postgres allows {PG_NAME_MAX}")
                continue
        value = check.boolean(flag, key_path)
        if value is True:
            enabled.append(logical)
        elif value is False:
            disabled.append(logical)
    if not node.value:
        check.error(node.pos, path, "the tenant has no database: list at least one, e.g. `{ app = true }`")
    elif not enabled and disabled:
        check.error(node.pos, path, "the tenant has no database enabled (every database is set to false)")
    return tuple(sorted(enabled)), tuple(sorted(disabled))


def _allowed_ips(check: _Checker, node: Node | None, path: str, *, iam_auth: bool,
                 settings: Settings) -> tuple[str, ...]:
    if node is None or not check.kind(node, "list", path, "a list of CIDRs"):
        return ()
    if not node.value:
        check.error(node.pos, path, "needs at least one CIDR: the IAM trust policy and the proxy allow "
                    "nothing otherwise")
    result: list[str] = []
    for index, item in enumerate(node.value):
        item_path = f"{path}[{index}]"
        text = check.string(item, item_path)
        if text is None:
            continue
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                check.error(item.pos, item_path, f'"{text}" is not a CIDR such as 203.0.113.7/32')
                continue
            check.error(item.pos, item_path, f'"{text}" has host bits set; did you mean "{loose}"?')
            continue
        if iam_auth and not settings.allow_private_source_ips and not network.is_global:
            check.error(item.pos, item_path, f'"{network}" is a private or reserved range: aws:SourceIp never '
                        "matches it, so IAM AssumeRole would always be denied (set "
                        "settings.allow_private_source_ips = true to allow it anyway)")
            continue
        normalised = str(network)
        if normalised in result:
            check.error(item.pos, item_path, f'"{normalised}" is listed twice')
            continue
        result.append(normalised)
    return tuple(result)


def _tags(check: _Checker, node: Node, path: str) -> tuple[tuple[str, str], ...]:
    if not check.kind(node, "object", path, "an object of string tags"):
        return ()
    tags: list[tuple[str, str]] = []
    for key, value in node.value.items():
        text = check.string(value, f"{path}.{key}")
        if text is None:
            continue
        if not (key.isprintable() and text.isprintable()):
            check.error(value.pos, f"{path}.{key}", "tags hold printable text only (no newline, tab or "
                        "control character)")
            continue
        if len(key) > 128 or len(text) > 256:
            check.error(value.pos, f"{path}.{key}", "AWS tags allow keys up to 128 and values up to 256 characters")
            continue
        tags.append((key, text))
    return tuple(sorted(tags))


def _place_and_check_clusters(check: _Checker, entries: list[_Entry], clusters: dict[str, Cluster],
                              clusters_node: Node | None) -> list[_Entry]:
    names = sorted(clusters)
    shared = [name for name in names if not clusters[name].dedicated]
    placed: list[_Entry] = []
    dedicated_owner: dict[str, _Entry] = {}
    for entry in entries:
        tenant = entry.tenant
        pos, path = entry.field("cluster")
        if tenant.cluster_pinned:
            if tenant.cluster not in clusters:
                check.error(pos, path, f"unknown cluster `{tenant.cluster}`{_did_you_mean(tenant.cluster, names)}; "
                            f"clusters: {', '.join(names) or 'none'}")
                continue
            if clusters[tenant.cluster].dedicated:
                if tenant.cluster in dedicated_owner:
                    other = dedicated_owner[tenant.cluster].tenant
                    check.error(pos, path, f"cluster `{tenant.cluster}` is dedicated to tenant `{other.name}` "
                                f"({other.location}); a dedicated cluster holds exactly one tenant")
                    continue
                dedicated_owner[tenant.cluster] = entry
            placed.append(entry)
            continue
        cluster = placement.place(tenant.name, shared)
        if cluster is None:
            check.error(entry.node.pos, entry.path, f"tenant `{tenant.name}` names no cluster and there is no "
                        "shared (non-dedicated) cluster to place it on")
            continue
        placed.append(replace(entry, tenant=replace(tenant, cluster=cluster)))
    for name, spec in clusters.items():
        count = sum(1 for e in placed if e.tenant.cluster == name)
        if spec.max_tenants is not None and count > spec.max_tenants:
            assert clusters_node is not None
            node = clusters_node.value[name].value["max_tenants"]
            check.error(node.pos, f"clusters.{name}.max_tenants", f"{count} tenants are placed on this cluster, "
                        f"more than its max_tenants ({spec.max_tenants}); add a cluster or pin tenants to "
                        "another one with `cluster = ...`")
    return placed


def _check_uniqueness(check: _Checker, entries: list[_Entry], settings: Settings) -> None:
    seen_tenants: dict[str, Tenant] = {}
    roles: dict[str, str] = {}
    databases: dict[str, str] = {}
    for entry in entries:
        tenant = entry.tenant
        pos, path = entry.field("name")
        if tenant.name in seen_tenants:
            check.error(pos, path, f"duplicate tenant name `{tenant.name}` (first defined at "
                        f"{seen_tenants[tenant.name].location})")
            continue
        seen_tenants[tenant.name] = tenant
        for role in (naming.login_role(settings, tenant.name), naming.owner_role(settings, tenant.name)):
            if role in roles:
                check.error(pos, path, f"tenant `{tenant.name}` needs role `{role}`, which tenant "
                            f"`{roles[role]}` already uses")
            roles.setdefault(role, tenant.name)
        databases_node = entry.node.value["databases"]
        for logical in (*tenant.databases, *tenant.disabled_databases):
            physical = naming.database(settings, tenant.name, logical)
            db_pos, db_path = databases_node.key_pos[logical], f"{entry.path}.databases.{logical}"
            if _is_reserved(physical):
                check.error(db_pos, db_path, f"physical database name `{physical}` is reserved")
            if physical in databases and databases[physical] != tenant.name:
                check.error(db_pos, db_path, f"physical database name `{physical}` is also produced by tenant "
                            f"`{databases[physical]}`")
            databases.setdefault(physical, tenant.name)
