"""The routing map document: types, canonical JSON, checksum and validation on read.

The exact schema is documented in ``SCHEMA.md`` next to this module. Parsing is written for maps of
100,000+ tenants: plain loops, ``NamedTuple`` records and no per-entry regular expressions, so a
large map loads in a fraction of a second.
"""

from __future__ import annotations

import gc
import hashlib
import ipaddress
import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from tenantctl.errors import InputError

FORMAT = "tenantctl.routing/v1"
TLS_MODES = ("disable", "require", "verify-full")
_IDENTIFIER_MAX = 63  # PostgreSQL's NAMEDATALEN - 1
_HOST_RE = re.compile(r"^[A-Za-z0-9._:\-\[\]]{1,253}$")


class RoutingMapError(InputError):
    """A routing map is malformed, fails validation or its checksum does not match."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: invalid routing map: {message}")
        self.source = source
        self.detail = message


Fail = Callable[[str], RoutingMapError]


class ClusterTls(NamedTuple):
    mode: str = "disable"  # disable | require | verify-full
    ca_file: str | None = None  # CA bundle for verify-full (a path on the proxy's host)


class ClusterRoute(NamedTuple):
    host: str
    port: int
    tls: ClusterTls = ClusterTls()


class TenantRoute(NamedTuple):
    tenant: str
    cluster: str
    databases: dict[str, str]  # logical -> physical; only logical names route
    allowed_cidrs: tuple[str, ...]  # empty: nobody may connect
    max_connections: int


@dataclass(frozen=True)
class RoutingMap:
    serial: int
    generated_at: str  # RFC 3339, UTC
    clusters: dict[str, ClusterRoute]
    tenants: dict[str, TenantRoute]  # keyed by the Postgres login role (the startup ``user``)
    checksum: str = ""  # "sha256:<hex>"; filled by ``seal``/``parse_map``

    def same_content(self, other: RoutingMap) -> bool:
        """True when clusters and tenants are equal (serial and generation time ignored)."""
        return self.clusters == other.clusters and self.tenants == other.tenants


def content_document(clusters: dict[str, ClusterRoute], tenants: dict[str, TenantRoute]) -> dict[str, Any]:
    """The ``clusters`` and ``tenants`` members as plain JSON values."""
    cluster_docs: dict[str, Any] = {}
    for name, cluster in clusters.items():
        tls: dict[str, Any] = {"mode": cluster.tls.mode}
        if cluster.tls.ca_file is not None:
            tls["ca_file"] = cluster.tls.ca_file
        cluster_docs[name] = {"host": cluster.host, "port": cluster.port, "tls": tls}
    tenant_docs = {
        user: {
            "tenant": route.tenant,
            "cluster": route.cluster,
            "databases": dict(route.databases),
            "allowed_cidrs": list(route.allowed_cidrs),
            "max_connections": route.max_connections,
        }
        for user, route in tenants.items()
    }
    return {"clusters": cluster_docs, "tenants": tenant_docs}


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def compute_checksum(document_without_checksum: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(document_without_checksum)).hexdigest()


def to_document(routing_map: RoutingMap) -> dict[str, Any]:
    """The full JSON document, checksum included (recomputed, so it always matches the content)."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "serial": routing_map.serial,
        "generated_at": routing_map.generated_at,
        **content_document(routing_map.clusters, routing_map.tenants),
    }
    body["checksum"] = compute_checksum(body)
    return body


def serialize(routing_map: RoutingMap) -> bytes:
    """Bytes written to disk / S3: the canonical JSON of the whole document plus a newline.

    ``checksum`` sorts first, so the file is ``{"checksum":"sha256:...",`` followed by the canonical
    JSON of the rest: a reader verifies it by hashing the bytes, without re-serialising (fast path).
    """
    return canonical_json(to_document(routing_map)) + b"\n"


def seal(routing_map: RoutingMap) -> RoutingMap:
    """Return the map with its checksum filled in."""
    checksum = to_document(routing_map)["checksum"]
    return RoutingMap(routing_map.serial, routing_map.generated_at, routing_map.clusters,
                      routing_map.tenants, checksum)


def parse_map(data: bytes | str, source: str = "<routing map>") -> RoutingMap:
    """Parse and fully validate a routing map; raises ``RoutingMapError`` naming the field."""
    # The cyclic GC would scan the growing heap again and again while ~10^6 acyclic containers
    # are created (it doubles the load time of a 100k-tenant map); nothing here creates cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise RoutingMapError(source, f"not valid JSON: {error}") from None
        raw = data.encode("utf-8") if isinstance(data, str) else data
        return from_document(document, source, raw=raw)
    finally:
        if gc_was_enabled:
            gc.enable()


def _raw_checksum_matches(raw: bytes, checksum: str) -> bool:
    """Fast path for files written by ``serialize``: hash the bytes after the checksum member."""
    prefix = b'{"checksum":' + json.dumps(checksum).encode("ascii") + b","
    if not raw.startswith(prefix):
        return False
    body = b"{" + raw[len(prefix):].rstrip(b"\n")
    return "sha256:" + hashlib.sha256(body).hexdigest() == checksum


def from_document(document: Any, source: str = "<routing map>", *, raw: bytes | None = None) -> RoutingMap:
    def fail(message: str) -> RoutingMapError:
        return RoutingMapError(source, message)

    if not isinstance(document, dict):
        raise fail("the document must be a JSON object")
    expected = {"format", "serial", "generated_at", "checksum", "clusters", "tenants"}
    if set(document) != expected:
        missing = sorted(expected - set(document))
        unknown = sorted(set(document) - expected)
        raise fail("; ".join(filter(None, [
            f"missing member(s) {', '.join(missing)}" if missing else "",
            f"unknown member(s) {', '.join(unknown)}" if unknown else "",
        ])))
    if document["format"] != FORMAT:
        raise fail(f"format: expected {FORMAT!r}, got {document['format']!r}")
    serial = document["serial"]
    if type(serial) is not int or serial < 1:
        raise fail("serial: must be a positive integer")
    generated_at = document["generated_at"]
    if not isinstance(generated_at, str) or not _is_rfc3339(generated_at):
        raise fail("generated_at: must be an RFC 3339 timestamp")
    checksum = document["checksum"]
    if not isinstance(checksum, str) or not checksum.startswith("sha256:"):
        raise fail("checksum: must be 'sha256:<hex>'")
    if raw is None or not _raw_checksum_matches(raw, checksum):
        rest = {key: value for key, value in document.items() if key != "checksum"}
        actual = compute_checksum(rest)
    else:
        actual = checksum
    if actual != checksum:
        raise fail(f"checksum mismatch (document says {checksum}, content hashes to {actual}); "
                   "the file was edited or truncated")
    clusters = _parse_clusters(document["clusters"], fail)
    tenants = _parse_tenants(document["tenants"], clusters, fail)
    return RoutingMap(serial, generated_at, clusters, tenants, checksum)


def _is_ipv4_cidr(cidr: str) -> bool:
    """Strict IPv4 CIDR check in C-speed steps (``ipaddress`` costs ~8 us each: 0.8 s per 100k)."""
    address, slash, prefix = cidr.partition("/")
    if not slash or not prefix.isdigit() or len(prefix) > 2 or address.count(".") != 3:
        return False
    bits = int(prefix)
    try:
        packed = socket.inet_pton(socket.AF_INET, address)
    except OSError:
        return False
    if bits > 32 or socket.inet_ntoa(packed) != address:  # inet_ntoa rejects "010.1.1.1"-style forms
        return False
    return int.from_bytes(packed, "big") & ((1 << (32 - bits)) - 1) == 0


def _is_rfc3339(value: str) -> bool:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value and parsed.tzinfo is not None


def _parse_clusters(raw: Any, fail: Fail) -> dict[str, ClusterRoute]:
    if not isinstance(raw, dict):
        raise fail("clusters: must be an object")
    clusters: dict[str, ClusterRoute] = {}
    for name, entry in raw.items():
        where = f"clusters.{name}"
        if not isinstance(entry, dict) or not {"host", "port"} <= set(entry) <= {"host", "port", "tls"}:
            raise fail(f"{where}: must be an object with host, port and optional tls")
        host, port = entry["host"], entry["port"]
        if not isinstance(host, str) or not _HOST_RE.match(host):
            raise fail(f"{where}.host: must be a host name or IP address")
        if type(port) is not int or not 0 < port < 65536:
            raise fail(f"{where}.port: must be an integer between 1 and 65535")
        tls = ClusterTls()
        if "tls" in entry:
            raw_tls = entry["tls"]
            if not isinstance(raw_tls, dict) or set(raw_tls) - {"mode", "ca_file"} or "mode" not in raw_tls:
                raise fail(f"{where}.tls: must be an object with mode and optional ca_file")
            mode, ca_file = raw_tls["mode"], raw_tls.get("ca_file")
            if mode not in TLS_MODES:
                raise fail(f"{where}.tls.mode: must be one of {', '.join(TLS_MODES)}")
            if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
                raise fail(f"{where}.tls.ca_file: must be a non-empty path")
            tls = ClusterTls(mode, ca_file)
        clusters[name] = ClusterRoute(host, port, tls)
    return clusters


_TENANT_KEYS = frozenset({"tenant", "cluster", "databases", "allowed_cidrs", "max_connections"})
# CIDR strings already proven valid: a reload of a 100k-tenant map re-checks only new ones.
_KNOWN_GOOD_CIDRS: set[str] = set()
_KNOWN_GOOD_CIDRS_MAX = 1_000_000


def _parse_tenants(raw: Any, clusters: dict[str, ClusterRoute], fail: Fail) -> dict[str, TenantRoute]:
    if not isinstance(raw, dict):
        raise fail("tenants: must be an object")
    known_cidrs = _KNOWN_GOOD_CIDRS
    tenant_keys = _TENANT_KEYS
    make_route = TenantRoute
    cluster_names = {name: name for name in clusters}
    tenants: dict[str, TenantRoute] = {}
    for user, entry in raw.items():
        # One cheap combined test per tenant; the slow path below names the offending field.
        if (
            type(entry) is not dict
            or entry.keys() != tenant_keys
            or not 0 < len(user) <= _IDENTIFIER_MAX
            or type(entry["tenant"]) is not str
            or entry["cluster"] not in clusters
            or type(entry["databases"]) is not dict
            or type(entry["allowed_cidrs"]) is not list
            or type(entry["max_connections"]) is not int
            or entry["max_connections"] < 1
            or not entry["tenant"]
        ):
            raise _tenant_problem(user, entry, clusters, fail)
        databases = entry["databases"]
        for logical, physical in databases.items():
            if type(physical) is not str or not 0 < len(physical) <= _IDENTIFIER_MAX or not logical:
                raise fail(f"tenants.{user}.databases.{logical}: must map to a database name (1-63 chars)")
        cidrs = entry["allowed_cidrs"]
        for cidr in cidrs:
            if cidr not in known_cidrs:
                _check_cidr(cidr, f"tenants.{user}.allowed_cidrs", fail)
                if len(known_cidrs) < _KNOWN_GOOD_CIDRS_MAX:
                    known_cidrs.add(cidr)
        # Share string objects where the values repeat (tenant == login role, cluster names):
        # about 10 MB less per 100,000 tenants.
        tenant = entry["tenant"]
        tenants[user] = make_route(user if tenant == user else tenant, cluster_names[entry["cluster"]], databases,
                                   tuple(cidrs), entry["max_connections"])
    return tenants


def _tenant_problem(user: str, entry: Any, clusters: dict[str, ClusterRoute], fail: Fail) -> RoutingMapError:
    if not 0 < len(user) <= _IDENTIFIER_MAX:
        return fail(f"tenants: key {user[:80]!r} is not a valid role name (1-63 characters)")
    if not isinstance(entry, dict) or entry.keys() != _TENANT_KEYS:
        return fail(f"tenants.{user}: must have exactly {', '.join(sorted(_TENANT_KEYS))}")
    if not isinstance(entry["tenant"], str) or not entry["tenant"]:
        return fail(f"tenants.{user}.tenant: must be a non-empty string")
    if entry["cluster"] not in clusters:
        return fail(f"tenants.{user}.cluster: {entry['cluster']!r} is not in clusters")
    if not isinstance(entry["databases"], dict):
        return fail(f"tenants.{user}.databases: must be an object of logical -> physical names")
    if not isinstance(entry["allowed_cidrs"], list):
        return fail(f"tenants.{user}.allowed_cidrs: must be a list of CIDRs")
    return fail(f"tenants.{user}.max_connections: must be a positive integer")


def _check_cidr(cidr: Any, where: str, fail: Fail) -> str:
    if not isinstance(cidr, str):
        raise fail(f"{where}: {cidr!r} is not a CIDR string")
    if _is_ipv4_cidr(cidr):
        return cidr
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError as error:
        raise fail(f"{where}: {cidr!r} is not a valid CIDR ({error})") from None
    return cidr
