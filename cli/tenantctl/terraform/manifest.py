"""Two small JSON records: what was applied (``applied.json``) and what a plan contains.

``AppliedManifest``: per stack, the content hash of its last successful apply (files + inputs), the
plan id it came from and, for the cluster stack, its ``clusters`` output. ``plan`` compares hashes
against it to skip unchanged stacks without running Terraform.

``PlanManifest`` (``plans/<id>/manifest.json``): the inputs of one plan (clients file hash, versions,
every planned stack's content hash and cluster inputs) and its status; ``apply`` checks it to
refuse stale or refused plans.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tenantctl.fsutil import atomic_write_text

APPLIED_VERSION = 1
PLAN_MANIFEST_VERSION = 1


@dataclass
class AppliedStack:
    content_hash: str
    plan_id: str
    applied_at: float
    outputs: dict[str, Any] | None = None  # cluster stack: the "clusters" output


class AppliedManifest:
    """Thread-safe, atomically written record of applied stacks."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.stacks: dict[str, AppliedStack] = {}
        try:
            document = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        for stack, entry in (document.get("stacks") or {}).items():
            self.stacks[stack] = AppliedStack(**entry)

    def get(self, stack: str) -> AppliedStack | None:
        with self._lock:
            return self.stacks.get(stack)

    def record(self, stack: str, content_hash: str, plan_id: str, outputs: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.stacks[stack] = AppliedStack(content_hash, plan_id, time.time(), outputs)
            self._save()

    def forget(self, stack: str) -> None:
        with self._lock:
            self.stacks.pop(stack, None)
            self._save()

    def cluster_outputs(self) -> dict[str, Any] | None:
        from tenantctl.terraform.workspace import CLUSTER_STACK

        entry = self.get(CLUSTER_STACK)
        return entry.outputs if entry is not None else None

    def _save(self) -> None:
        document = {
            "version": APPLIED_VERSION,
            "stacks": {name: asdict(entry) for name, entry in sorted(self.stacks.items())},
        }
        atomic_write_text(self.path, json.dumps(document, indent=2, sort_keys=True) + "\n")


@dataclass
class PlannedStack:
    stack: str
    status: str  # see pipeline.StackStatus
    content_hash: str
    applied_hash: str | None  # the applied manifest's hash when planned (detects applies in between)
    plan_file: str | None = None  # relative to the plan dir
    plan_json: str | None = None
    inputs: dict[str, Any] | None = None  # tenant stacks: the cluster values they were planned with
    has_changes: bool = False
    error: str | None = None


@dataclass
class PlanManifest:
    plan_id: str
    created_at: float
    status: str  # no_changes | changes | refused | errored | applying | applied | apply_failed
    clients_file: str
    clients_sha256: str
    tenantctl_version: str
    terraform_version: str
    terraform_binary: str
    target: str
    backend: str
    all_stacks: bool
    stacks: list[PlannedStack] = field(default_factory=list)
    applied_at: float | None = None

    def stack(self, name: str) -> PlannedStack | None:
        return next((s for s in self.stacks if s.stack == name), None)

    def save(self, plan_dir: Path) -> None:
        document = {"version": PLAN_MANIFEST_VERSION, **asdict(self)}
        atomic_write_text(plan_dir / "manifest.json", json.dumps(document, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, plan_dir: Path) -> PlanManifest:
        document = json.loads((plan_dir / "manifest.json").read_text())
        document.pop("version", None)
        stacks = [PlannedStack(**entry) for entry in document.pop("stacks", [])]
        return cls(**document, stacks=stacks)
