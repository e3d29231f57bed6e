"""The routing map document: types, canonical JSON, checksum and validation on read.

The exact schema is documented in ``SCHEMA.md`` next to this module. Reading is written for maps of
100,000+ tenants: ``msgspec`` decodes and type-checks the document in C straight into the record
types below, and the few checks left to Python (cluster references, CIDRs) are plain loops. When the
fast decoder refuses a document, the slower validator over plain JSON values (``_explain``) names the
offending tenant and field, which msgspec's error paths do not.
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
from typing import Annotated, Any, Literal, get_args

import msgspec

from tenantctl.errors import InputError

FORMAT = "tenantctl.routing/v1"
_IDENTIFIER_MAX = 63  # PostgreSQL's NAMEDATALEN - 1
_HOST_RE = re.compile(r"^[A-Za-z0-9._:\-\[\]]{1,253}$")

TlsMode = Literal["disable", "require", "verify-full"]
TLS_MODES: tuple[str, ...] = get_args(TlsMode)
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=_IDENTIFIER_MAX)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class RoutingMapError(InputError):
    """A routing map is malformed, fails validation or its checksum does not match."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: invalid routing map: {message}")
        self.source = source
        self.detail = message


Fail = Callable[[str], RoutingMapError]


class ClusterTls(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mode: TlsMode  # disable | require | verify-full
    ca_file: NonEmpty | None = None  # CA bundle for verify-full (a path on the proxy's host)


NO_TLS = ClusterTls("disable")


class ClusterRoute(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    port: Port
    tls: ClusterTls = NO_TLS
    reader_host: str | None = None  # the reader endpoint (same port and TLS), for later read routing
    # An IP address to dial instead of resolving ``host`` (libpq's hostaddr): a tunnel's end, or the local
    # target's server; TLS is still verified against ``host``.
    hostaddr: str | None = None


class TenantRoute(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    tenant: NonEmpty
    cluster: str
    databases: dict[NonEmpty, Identifier]  # logical -> physical; only logical names route
    allowed_cidrs: tuple[str, ...]  # empty: nobody may connect
    max_connections: Positive


class _Document(msgspec.Struct, forbid_unknown_fields=True):
    """The document as the fast decoder sees it; ``parse_map`` checks the rest."""

    format: str
    serial: Positive
    generated_at: str
    checksum: str
    clusters: dict[str, ClusterRoute]
    tenants: dict[Identifier, TenantRoute]  # keyed by login role


_DECODER = msgspec.json.Decoder(_Document)


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
        if cluster.reader_host is not None:
            cluster_docs[name]["reader_host"] = cluster.reader_host
        if cluster.hostaddr is not None:
            cluster_docs[name]["hostaddr"] = cluster.hostaddr
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

    def fail(message: str) -> RoutingMapError:
        return RoutingMapError(source, message)

    raw = data.encode("utf-8") if isinstance(data, str) else data
    # The cyclic GC would scan the growing heap again and again while ~10^5 dicts are created;
    # nothing here creates cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            document = _DECODER.decode(raw)
        except msgspec.ValidationError as error:
            raise _explain(raw, fail, error) from None
        except msgspec.DecodeError as error:
            raise fail(f"not valid JSON: {error}") from None
        return _checked(document, raw, fail)
    finally:
        if gc_was_enabled:
            gc.enable()


def _checked(document: _Document, raw: bytes, fail: Fail) -> RoutingMap:
    """The checks the decoder's types cannot express, in document order."""
    if document.format != FORMAT:
        raise fail(f"format: expected {FORMAT!r}, got {document.format!r}")
    if not _is_rfc3339(document.generated_at):
        raise fail("generated_at: must be an RFC 3339 timestamp")
    checksum = document.checksum
    if not checksum.startswith("sha256:"):
        raise fail("checksum: must be 'sha256:<hex>'")
    if not _raw_checksum_matches(raw, checksum):
        rest = {key: value for key, value in json.loads(raw).items() if key != "checksum"}
        actual = compute_checksum(rest)
        if actual != checksum:
            raise fail(f"checksum mismatch (document says {checksum}, content hashes to {actual}); "
                       "the file was edited or truncated")
    clusters = document.clusters
    for name, cluster in clusters.items():
        if not _HOST_RE.match(cluster.host):
            raise fail(f"clusters.{name}.host: must be a host name or IP address")
        if cluster.reader_host is not None and not _HOST_RE.match(cluster.reader_host):
            raise fail(f"clusters.{name}.reader_host: must be a host name or IP address")
        if cluster.hostaddr is not None and not _is_ip(cluster.hostaddr):
            raise fail(f"clusters.{name}.hostaddr: must be an IP address")
    known_cidrs = _KNOWN_GOOD_CIDRS
    for user, route in document.tenants.items():
        if route.cluster not in clusters:
            raise fail(f"tenants.{user}.cluster: {route.cluster!r} is not in clusters")
        for cidr in route.allowed_cidrs:
            if cidr not in known_cidrs:
                _check_cidr(cidr, f"tenants.{user}.allowed_cidrs", fail)
                if len(known_cidrs) < _KNOWN_GOOD_CIDRS_MAX:
                    known_cidrs.add(cidr)
    return RoutingMap(document.serial, document.generated_at, clusters, document.tenants, checksum)


def _raw_checksum_matches(raw: bytes, checksum: str) -> bool:
    """Fast path for files written by ``serialize``: hash the bytes after the checksum member."""
    prefix = b'{"checksum":' + json.dumps(checksum).encode("ascii") + b","
    if not raw.startswith(prefix):
        return False
    end = len(raw) - 1 if raw.endswith(b"\n") else len(raw)
    digest = hashlib.sha256(b"{")
    digest.update(memoryview(raw)[len(prefix):end])  # no copy of a ~20 MB map
    return "sha256:" + digest.hexdigest() == checksum


# CIDR strings already proven valid: a reload of a 100k-tenant map re-checks only new ones.
_KNOWN_GOOD_CIDRS: set[str] = set()
_KNOWN_GOOD_CIDRS_MAX = 1_000_000


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


def _check_cidr(cidr: str, where: str, fail: Fail) -> None:
    if _is_ipv4_cidr(cidr):
        return
    try:
        ipaddress.ip_network(cidr, strict=True)
    except ValueError as error:
        raise fail(f"{where}: {cidr!r} is not a valid CIDR ({error})") from None


def _is_rfc3339(value: str) -> bool:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value and parsed.tzinfo is not None


# --- explaining a refused document ---------------------------------------------------------------
# msgspec reports where a type check failed with dict keys elided (``$.tenants[...].cluster``). A
# refused document is read again as plain JSON values and walked here, so the error names the tenant.

def _explain(raw: bytes, fail: Fail, error: msgspec.ValidationError) -> RoutingMapError:
    document = json.loads(raw)
    problem = _document_problem(document, fail)
    return problem if problem is not None else fail(str(error).replace("`$", "`document"))


def _document_problem(document: Any, fail: Fail) -> RoutingMapError | None:
    if not isinstance(document, dict):
        return fail("the document must be a JSON object")
    expected = {"format", "serial", "generated_at", "checksum", "clusters", "tenants"}
    if set(document) != expected:
        missing = sorted(expected - set(document))
        unknown = sorted(set(document) - expected)
        return fail("; ".join(filter(None, [
            f"missing member(s) {', '.join(missing)}" if missing else "",
            f"unknown member(s) {', '.join(unknown)}" if unknown else "",
        ])))
    if document["format"] != FORMAT:
        return fail(f"format: expected {FORMAT!r}, got {document['format']!r}")
    serial = document["serial"]
    if type(serial) is not int or serial < 1:
        return fail("serial: must be a positive integer")
    if not isinstance(document["generated_at"], str):
        return fail("generated_at: must be an RFC 3339 timestamp")
    if not isinstance(document["checksum"], str):
        return fail("checksum: must be 'sha256:<hex>'")
    return _clusters_problem(document["clusters"], fail) or _tenants_problem(document["tenants"], fail)


_CLUSTER_KEYS = frozenset(ClusterRoute.__struct_fields__)


def _clusters_problem(raw: Any, fail: Fail) -> RoutingMapError | None:
    if not isinstance(raw, dict):
        return fail("clusters: must be an object")
    for name, entry in raw.items():
        where = f"clusters.{name}"
        if not isinstance(entry, dict) or not {"host", "port"} <= set(entry) <= _CLUSTER_KEYS:
            return fail(f"{where}: must be an object with host, port and optional tls, reader_host and hostaddr")
        if not isinstance(entry["host"], str):
            return fail(f"{where}.host: must be a host name or IP address")
        if "reader_host" in entry and not isinstance(entry["reader_host"], str):
            return fail(f"{where}.reader_host: must be a host name or IP address")
        if "hostaddr" in entry and not isinstance(entry["hostaddr"], str):
            return fail(f"{where}.hostaddr: must be an IP address")
        port = entry["port"]
        if type(port) is not int or not 0 < port < 65536:
            return fail(f"{where}.port: must be an integer between 1 and 65535")
        if "tls" in entry:
            tls = entry["tls"]
            if not isinstance(tls, dict) or set(tls) - {"mode", "ca_file"} or "mode" not in tls:
                return fail(f"{where}.tls: must be an object with mode and optional ca_file")
            if tls["mode"] not in TLS_MODES:
                return fail(f"{where}.tls.mode: must be one of {', '.join(TLS_MODES)}")
            ca_file = tls.get("ca_file")
            if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
                return fail(f"{where}.tls.ca_file: must be a non-empty path")
    return None


_TENANT_KEYS = frozenset(TenantRoute.__struct_fields__)


def _tenants_problem(raw: Any, fail: Fail) -> RoutingMapError | None:
    if not isinstance(raw, dict):
        return fail("tenants: must be an object")
    for user, entry in raw.items():
        if not 0 < len(user) <= _IDENTIFIER_MAX:
            return fail(f"tenants: key {user[:80]!r} is not a valid role name (1-63 characters)")
        if not isinstance(entry, dict) or entry.keys() != _TENANT_KEYS:
            return fail(f"tenants.{user}: must have exactly {', '.join(sorted(_TENANT_KEYS))}")
        if not isinstance(entry["tenant"], str) or not entry["tenant"]:
            return fail(f"tenants.{user}.tenant: must be a non-empty string")
        if not isinstance(entry["cluster"], str):
            return fail(f"tenants.{user}.cluster: must be a cluster name")
        databases = entry["databases"]
        if not isinstance(databases, dict):
            return fail(f"tenants.{user}.databases: must be an object of logical -> physical names")
        for logical, physical in databases.items():
            if not isinstance(physical, str) or not 0 < len(physical) <= _IDENTIFIER_MAX or not logical:
                return fail(f"tenants.{user}.databases.{logical}: must map to a database name (1-63 chars)")
        cidrs = entry["allowed_cidrs"]
        if not isinstance(cidrs, list):
            return fail(f"tenants.{user}.allowed_cidrs: must be a list of CIDRs")
        for cidr in cidrs:
            if not isinstance(cidr, str):
                return fail(f"tenants.{user}.allowed_cidrs: {cidr!r} is not a CIDR string")
        max_connections = entry["max_connections"]
        if type(max_connections) is not int or max_connections < 1:
            return fail(f"tenants.{user}.max_connections: must be a positive integer")
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
