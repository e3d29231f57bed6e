"""Plan history over ``.tenantctl/plans/``: record applies, list, show, diff, verify and prune plans.

Every plan directory holds ``manifest.json`` (inputs and status) and ``summary.json`` (the reviewed
plan, schema ``tenantctl.plan/v1``). An apply appends an ``apply-started`` record before it changes
anything and an ``apply-finished`` record after, to the hash-chained log (``chain.py``), and keeps the
hashes of its records in the plan's ``audit.json``. Nothing here prints or exits.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenantctl.errors import InputError
from tenantctl.fsutil import atomic_write_text
from tenantctl.history.actor import current_actor
from tenantctl.history.chain import LOG_FILE, AppliedLog, Problem

SUMMARY = "summary.json"
MANIFEST = "manifest.json"
AUDIT = "audit.json"
LATEST = "LATEST"
# What `prune` removes from an applied plan: the Terraform plan files (large, and they embed values
# Terraform may consider sensitive). What a reviewer read and what was applied stays.
PRUNABLE_SUFFIXES = (".tfplan", ".plan.json")
APPLIED_STATUSES = frozenset({"applying", "applied", "apply_failed"})


def utc_iso(timestamp: float | None = None) -> str:
    moment = datetime.now(UTC) if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# recording applies


def record_apply(plans_dir: Path, plan_id: str, event: str, **details: Any) -> dict[str, Any]:
    """Append an ``apply-started`` / ``apply-finished`` record for ``plan_id`` and anchor it in its dir."""
    plan_dir = plans_dir / plan_id
    manifest = _read_json(plan_dir / MANIFEST) or {}
    fields = {
        "event": event, "plan_id": plan_id, "at": utc_iso(), "actor": current_actor(),
        "clients_file": manifest.get("clients_file"), "clients_sha256": manifest.get("clients_sha256"),
        "tenantctl_version": manifest.get("tenantctl_version"),
        "terraform_version": manifest.get("terraform_version"),
        "target": manifest.get("target"), "backend": manifest.get("backend"),
        "summary_sha256": sha256_file(plan_dir / SUMMARY), **details,
    }
    record = AppliedLog(plans_dir / LOG_FILE).append(fields)
    audit = _read_json(plan_dir / AUDIT) or {"records": []}
    audit["records"].append({"seq": record["seq"], "event": event, "hash": record["hash"]})
    atomic_write_text(plan_dir / AUDIT, json.dumps(audit, indent=2, sort_keys=True) + "\n")
    return record


# ---------------------------------------------------------------------------------------------
# reading


@dataclass
class PlanEntry:
    plan_id: str
    created_at: str | None
    status: str
    target: str | None
    clients_sha256: str | None
    totals: dict[str, int]
    section_changes: dict[str, int]
    attention: int  # items that cut access or leave data unrouted
    applied: dict[str, Any] | None  # the apply-finished record (or apply-started when unfinished)
    pruned: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id, "created_at": self.created_at, "status": self.status, "target": self.target,
            "clients_sha256": self.clients_sha256, "totals": self.totals, "section_changes": self.section_changes,
            "attention": self.attention, "pruned": self.pruned,
            "applied": _applied_view(self.applied) if self.applied else None,
        }


def _applied_view(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in ("event", "at", "actor", "status", "seq", "hash", "error")}


def plan_ids(plans_dir: Path) -> list[str]:
    """Plan ids, oldest first (ids start with their UTC creation time)."""
    if not plans_dir.is_dir():
        return []
    return sorted(p.name for p in plans_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file())


def resolve_plan_id(plans_dir: Path, reference: str) -> str:
    """``latest``, a full id, or a unique prefix of one."""
    ids = plan_ids(plans_dir)
    if reference == "latest":
        latest = (plans_dir / LATEST).read_text().strip() if (plans_dir / LATEST).is_file() else ""
        if latest in ids:
            return latest
        raise InputError(f"there is no plan in {plans_dir}", hint="run `tenantctl plan` first")
    if reference in ids:
        return reference
    matches = [plan_id for plan_id in ids if plan_id.startswith(reference)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError(f"plan id {reference!r} is ambiguous: {', '.join(matches[:5])}"
                         + (" ..." if len(matches) > 5 else ""))
    raise InputError(f"no plan {reference!r} in {plans_dir}", hint="`tenantctl plans list` shows the plans")


def records_by_plan(plans_dir: Path) -> dict[str, list[dict[str, Any]]]:
    records, _problems = AppliedLog(plans_dir / LOG_FILE).read()
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(str(record.get("plan_id")), []).append(record)
    return grouped


def list_plans(plans_dir: Path) -> list[PlanEntry]:
    grouped = records_by_plan(plans_dir)
    return [_entry(plans_dir / plan_id, grouped.get(plan_id, [])) for plan_id in plan_ids(plans_dir)]


def _entry(plan_dir: Path, records: list[dict[str, Any]]) -> PlanEntry:
    from tenantctl.report.document import attention, section_counts

    manifest = _read_json(plan_dir / MANIFEST) or {}
    summary = _read_json(plan_dir / SUMMARY) or {}
    finished = [r for r in records if r.get("event") == "apply-finished"]
    applied = finished[-1] if finished else (records[-1] if records else None)
    created = manifest.get("created_at")
    return PlanEntry(
        plan_id=plan_dir.name, created_at=utc_iso(created) if isinstance(created, (int, float)) else None,
        status=str(manifest.get("status", "?")), target=manifest.get("target"),
        clients_sha256=manifest.get("clients_sha256"),
        totals=dict(summary.get("totals") or {}), section_changes=section_counts(summary) if summary else {},
        attention=len(attention(summary)) if summary else 0, applied=applied,
        pruned=not any(plan_dir.glob("*.tfplan")) and any(
            s.get("plan_file") for s in manifest.get("stacks") or []),
    )


@dataclass
class PlanRecord:
    """One plan as an auditor sees it: the reviewed document, its inputs and its apply records."""

    entry: PlanEntry
    document: dict[str, Any]
    manifest: dict[str, Any]
    records: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {**self.entry.to_json(), "inputs": self.document.get("inputs") or {},
                "records": self.records, "plan": self.document}


def show_plan(plans_dir: Path, reference: str) -> PlanRecord:
    plan_id = resolve_plan_id(plans_dir, reference)
    plan_dir = plans_dir / plan_id
    document = _read_json(plan_dir / SUMMARY)
    if document is None:
        raise InputError(f"plan {plan_id} has no {SUMMARY} (an interrupted plan?)")
    records = records_by_plan(plans_dir).get(plan_id, [])
    return PlanRecord(_entry(plan_dir, records), document, _read_json(plan_dir / MANIFEST) or {}, records)


# ---------------------------------------------------------------------------------------------
# diff


INPUT_FIELDS = ("clients_sha256", "tenantctl_version", "terraform_version", "target", "backend", "all_stacks")


def diff_documents(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What ``new`` proposes that ``old`` did not, and the reverse, per tenant; and changed inputs."""
    from tenantctl.report.document import by_tenant

    old_rows = {tenant: {_row_key(row) for row in rows} for tenant, rows in by_tenant(old).items()}
    new_rows = {tenant: {_row_key(row) for row in rows} for tenant, rows in by_tenant(new).items()}
    tenants: dict[str, dict[str, list[dict[str, str]]]] = {}
    for tenant in sorted(set(old_rows) | set(new_rows), key=lambda t: (not t.startswith("("), t)):
        before, after = old_rows.get(tenant, set()), new_rows.get(tenant, set())
        added, removed = sorted(after - before), sorted(before - after)
        if added or removed:
            tenants[tenant] = {"added": [_row_json(key) for key in added],
                               "removed": [_row_json(key) for key in removed]}
    old_inputs, new_inputs = old.get("inputs") or {}, new.get("inputs") or {}
    inputs = {name: {"old": old_inputs.get(name), "new": new_inputs.get(name)}
              for name in INPUT_FIELDS if old_inputs.get(name) != new_inputs.get(name)}
    if old.get("status") != new.get("status"):
        inputs["status"] = {"old": old.get("status"), "new": new.get("status")}
    return {"old": old.get("plan_id"), "new": new.get("plan_id"), "identical": not tenants and not inputs,
            "inputs": inputs, "tenants": tenants}


def diff_plans(plans_dir: Path, old_reference: str, new_reference: str) -> dict[str, Any]:
    old = show_plan(plans_dir, old_reference)
    new = show_plan(plans_dir, new_reference)
    return diff_documents(old.document, new.document)


def _row_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    detail = ", ".join(str(a) for a in row.get("changed_attributes") or [])
    return (str(row["source"]), str(row["action"]), str(row["address"]), detail)


def _row_json(key: tuple[str, str, str, str]) -> dict[str, str]:
    return dict(zip(("source", "action", "address", "detail"), key, strict=True))


# ---------------------------------------------------------------------------------------------
# verify


@dataclass
class VerifyReport:
    records: int
    plans: int
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "plans": self.plans,
                "problems": [p.to_json() for p in self.problems], "warnings": self.warnings}


def verify(plans_dir: Path) -> VerifyReport:
    """Check the log's chain, and every applied plan against it (anchors, summaries, statuses)."""
    records, problems = AppliedLog(plans_dir / LOG_FILE).read()
    report = VerifyReport(records=len(records), plans=0, problems=list(problems))
    by_hash = {str(r.get("hash")): r for r in records}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(str(record.get("plan_id")), []).append(record)
    for plan_id in plan_ids(plans_dir):
        report.plans += 1
        plan_dir = plans_dir / plan_id
        manifest = _read_json(plan_dir / MANIFEST) or {}
        audit = _read_json(plan_dir / AUDIT) or {"records": []}
        for anchor in audit.get("records") or []:
            if anchor.get("hash") not in by_hash:
                report.problems.append(Problem(0, f"plan {plan_id}: its {anchor.get('event')} record "
                                                  f"{anchor.get('seq')} is missing from the log (removed)"))
        own = grouped.get(plan_id, [])
        if manifest.get("status") in APPLIED_STATUSES and not own:
            report.problems.append(Problem(0, f"plan {plan_id} is {manifest.get('status')} but the log has no "
                                              "record of its apply (removed)"))
        summary_hash = sha256_file(plan_dir / SUMMARY)
        for record in own:
            if record.get("summary_sha256") != summary_hash:
                report.problems.append(Problem(0, f"plan {plan_id}: {SUMMARY} differs from what was applied "
                                                  f"(record {record.get('seq')}): the reviewed plan was edited "
                                                  "or removed"))
        events = [r.get("event") for r in own]
        if "apply-started" in events and "apply-finished" not in events:
            report.warnings.append(f"plan {plan_id}: an apply started at "
                                   f"{next(r.get('at') for r in own)} never finished (interrupted)")
    for plan_id in sorted(set(grouped) - set(plan_ids(plans_dir))):
        report.problems.append(Problem(0, f"the log records applies of plan {plan_id}, whose directory is gone"))
    return report


# ---------------------------------------------------------------------------------------------
# prune


@dataclass
class PruneReport:
    removed: list[str] = field(default_factory=list)  # whole plan directories
    trimmed: list[str] = field(default_factory=list)  # applied plans: plan files removed, summaries kept
    kept: list[str] = field(default_factory=list)
    freed_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"removed": self.removed, "trimmed": self.trimmed, "kept": self.kept,
                "freed_bytes": self.freed_bytes}


def prune(plans_dir: Path, keep: int, *, dry_run: bool = False) -> PruneReport:
    """Keep the ``keep`` newest plans whole; of older ones, remove never-applied plans and trim applied ones.

    An applied plan (one the log or its manifest says was applied) keeps its manifest, summaries,
    Postgres plan and audit anchors forever: `plans verify` needs them. The newest plan is always kept.
    """
    if keep < 1:
        raise InputError("--keep must be at least 1 (the newest plan is what `apply` applies)")
    ids = plan_ids(plans_dir)
    latest = (plans_dir / LATEST).read_text().strip() if (plans_dir / LATEST).is_file() else None
    applied_ids = set(records_by_plan(plans_dir))
    report = PruneReport()
    for plan_id in ids[:-keep] if len(ids) > keep else []:
        plan_dir = plans_dir / plan_id
        manifest = _read_json(plan_dir / MANIFEST) or {}
        if plan_id == latest:
            report.kept.append(plan_id)
        elif plan_id in applied_ids or manifest.get("status") in APPLIED_STATUSES:
            files = [p for p in plan_dir.iterdir() if p.is_file() and p.name.endswith(PRUNABLE_SUFFIXES)]
            if files:
                report.trimmed.append(plan_id)
                report.freed_bytes += sum(p.stat().st_size for p in files)
                if not dry_run:
                    for path in files:
                        path.unlink()
            else:
                report.kept.append(plan_id)
        else:
            report.removed.append(plan_id)
            report.freed_bytes += sum(p.stat().st_size for p in plan_dir.rglob("*") if p.is_file())
            if not dry_run:
                shutil.rmtree(plan_dir)
    report.kept += ids[-keep:]
    return report


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise InputError(f"{path} is not valid JSON: {error}") from error
