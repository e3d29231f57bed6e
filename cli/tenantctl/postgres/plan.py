"""The plan of the native engine: ordered actions, orphans, and the fingerprint of what was observed.

Pure data with a stable JSON form, so a reviewed plan can be saved, shown and applied later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PLAN_FORMAT = 1


class Phase:
    """Actions run in this order; a crash between any two leaves a state the next run completes."""

    CREATE_ROLES = 10
    ALTER_ROLES = 20
    MEMBERSHIPS = 30
    PASSWORDS = 40
    CREATE_DATABASES = 50  # not transactional; created with ALLOW_CONNECTIONS false
    DATABASE_PRIVILEGES = 60
    OPEN_DATABASES = 70  # only after PUBLIC lost CONNECT
    SCHEMAS = 80  # inside each database: schema grants, default privileges, then the state marker


@dataclass(frozen=True)
class Action:
    kind: str
    phase: int
    tenant: str
    subject: str  # the role or database acted on
    description: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    database: str | None = None  # where it runs; None: the maintenance database
    transactional: bool = True

    def sort_key(self) -> tuple[int, str, str, str, str]:
        return (self.phase, self.tenant, self.subject, self.kind, json.dumps(self.params, sort_keys=True))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "phase": self.phase, "tenant": self.tenant, "subject": self.subject,
                "description": self.description, "params": self.params, "database": self.database,
                "transactional": self.transactional}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Action:
        return cls(kind=str(document["kind"]), phase=int(document["phase"]), tenant=str(document["tenant"]),
                   subject=str(document["subject"]), description=str(document["description"]),
                   params=dict(document.get("params") or {}), database=document.get("database"),
                   transactional=bool(document.get("transactional", True)))


@dataclass(frozen=True)
class Orphan:
    """An object tenantctl manages that no tenant in the clients file claims. Never dropped here."""

    kind: str  # "role" | "database"
    name: str
    tenant: str | None
    reason: str
    archived: str | None = None  # the offboarding or move run whose archive this database is

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "tenant": self.tenant, "reason": self.reason,
                "archived": self.archived}


@dataclass(frozen=True)
class PgPlan:
    cluster: str
    actions: tuple[Action, ...]
    orphans: tuple[Orphan, ...]
    fingerprint: str  # of the observed catalog state the actions were computed from
    deep: bool  # whether every database's schema state was read
    inspected_databases: tuple[str, ...]
    catalog_queries: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def by_tenant(self) -> dict[str, tuple[Action, ...]]:
        grouped: dict[str, list[Action]] = {}
        for action in self.actions:
            grouped.setdefault(action.tenant, []).append(action)
        return {tenant: tuple(actions) for tenant, actions in sorted(grouped.items())}

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for action in self.actions:
            counts[action.kind] = counts.get(action.kind, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT, "engine": "native", "cluster": self.cluster,
            "fingerprint": self.fingerprint, "deep": self.deep,
            "inspected_databases": list(self.inspected_databases), "catalog_queries": self.catalog_queries,
            "summary": self.summary(),
            "actions": [action.to_json() for action in self.actions],
            "orphans": [orphan.to_json() for orphan in self.orphans],
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> PgPlan:
        if document.get("format") != PLAN_FORMAT or document.get("engine") != "native":
            raise ValueError("not a tenantctl native Postgres plan (format 1)")
        return cls(
            cluster=str(document["cluster"]),
            actions=tuple(Action.from_json(a) for a in document["actions"]),
            orphans=tuple(Orphan(o["kind"], o["name"], o.get("tenant"), o["reason"], o.get("archived"))
                          for o in document.get("orphans", [])),
            fingerprint=str(document["fingerprint"]), deep=bool(document.get("deep", False)),
            inspected_databases=tuple(document.get("inspected_databases", [])),
            catalog_queries=int(document.get("catalog_queries", 0)),
        )


def stable_hash(document: Any, length: int = 64) -> str:
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), default=list).encode()
    return hashlib.sha256(encoded).hexdigest()[:length]


def ordered(actions: Iterable[Action]) -> tuple[Action, ...]:
    return tuple(sorted(actions, key=Action.sort_key))
