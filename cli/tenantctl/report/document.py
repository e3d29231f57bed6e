"""The plan report as one JSON document: the single source for the terminal, markdown and JSON views.

Schema ``tenantctl.plan/v1`` (stable: fields are only ever added)::

    {
      "schema": "tenantctl.plan/v1",
      "plan_id": "20261123T101500Z-1a2b3c",
      "status": "no_changes" | "changes" | "refused" | "errored",
      "artifacts": "<path of .tenantctl/plans/<id>>",
      "inputs": {"clients_file", "clients_sha256", "tenantctl_version", "terraform_version",
                 "terraform_binary", "target", "backend", "all_stacks"},
      "totals": {"create": n, "update": n, "delete": n, "replace": n},
      "stacks": [{
          "stack": "cluster" | "tenants/<tenant>", "tenant": "<tenant>" | null,
          "status": "changes" | "no_changes" | "unchanged" | "deferred" | "errored" | "refused" | "orphaned",
          "reason": "...", "error": "..." | null,
          "changes": [{"address", "type", "action", "changed_attributes": [names]}],
          "output_changes": [{"name", "action"}]
      }],
      "violations": [{"stack", "address", "type", "action", "reason"}],
      "sections": [{"name", "error", "items": [{"tenant", "action", "object", "detail"}]}]
    }

Only addresses, types, actions and attribute *names* appear: no values, so nothing sensitive.
"""

from __future__ import annotations

from typing import Any

from tenantctl.terraform.pipeline import PlanResult
from tenantctl.terraform.plan_json import CHANGE_ACTIONS

SCHEMA = "tenantctl.plan/v1"


def plan_document(result: PlanResult) -> dict[str, Any]:
    manifest = result.manifest
    totals = {action: 0 for action in CHANGE_ACTIONS}
    stacks = []
    for stack in sorted(result.stacks, key=lambda s: (s.stack != "cluster", s.stack)):
        for change in stack.changes:
            totals[change.action] += 1
        stacks.append({
            "stack": stack.stack,
            "tenant": stack.tenant,
            "status": stack.status,
            "reason": stack.reason,
            "error": stack.error,
            "changes": [change.to_json() for change in stack.changes],
            "output_changes": [{"name": name, "action": action}
                               for name, action in sorted(stack.output_changes.items())],
        })
    return {
        "schema": SCHEMA,
        "plan_id": result.plan_id,
        "status": result.status,
        "artifacts": str(result.plan_dir),
        "inputs": {
            "clients_file": manifest.clients_file,
            "clients_sha256": manifest.clients_sha256,
            "tenantctl_version": manifest.tenantctl_version,
            "terraform_version": manifest.terraform_version,
            "terraform_binary": manifest.terraform_binary,
            "target": manifest.target,
            "backend": manifest.backend,
            "all_stacks": manifest.all_stacks,
        },
        "totals": totals,
        "stacks": stacks,
        "violations": [v.to_json() for v in result.violations],
        "sections": [
            {"name": s.name, "error": s.error, "items": [item.to_json() for item in s.items]}
            for s in result.sections
        ],
    }


def has_destroy(document: dict[str, Any]) -> bool:
    totals = document.get("totals") or {}
    return bool(totals.get("delete") or totals.get("replace") or document.get("violations")) or any(
        item.get("action") in ("delete", "replace", "drop")
        for section in document.get("sections") or [] for item in section.get("items") or []
    )


# Section items that cut or re-point a tenant's access, or leave data no route reaches: shown loudly.
ACCESS_ACTIONS = frozenset({"route-remove", "route-repoint"})
KEPT_ACTIONS = frozenset({"orphan"})


def attention(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Section items a reviewer must not miss, each with its section's name."""
    return [
        {"section": section["name"], **item}
        for section in document.get("sections") or [] for item in section.get("items") or []
        if item.get("action") in ACCESS_ACTIONS | KEPT_ACTIONS
    ]


def section_counts(document: dict[str, Any]) -> dict[str, int]:
    """Planned changes per section (informational items such as kept orphans are not changes)."""
    return {
        section["name"]: sum(1 for item in section.get("items") or [] if item.get("action") not in KEPT_ACTIONS)
        for section in document.get("sections") or []
    }


def is_empty(document: dict[str, Any]) -> bool:
    """Nothing to review: no changes, nothing deferred, refused or errored."""
    return document.get("status") == "no_changes"


def by_tenant(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rows (stack changes and section items) grouped by tenant ("(cluster)" for the cluster stack)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for stack in document.get("stacks") or []:
        key = "(cluster)" if stack["stack"] == "cluster" else stack["tenant"] or stack["stack"]
        for change in stack["changes"]:
            groups.setdefault(key, []).append({"source": "terraform", **change})
        for output in stack.get("output_changes") or []:
            groups.setdefault(key, []).append({
                "source": "terraform", "address": f"output.{output['name']}", "type": "output",
                "action": output["action"], "changed_attributes": [],
            })
    for section in document.get("sections") or []:
        for item in section.get("items") or []:
            key = item.get("tenant") or "(shared)"
            groups.setdefault(key, []).append({
                "source": section["name"], "address": item["object"], "type": "", "action": item["action"],
                "changed_attributes": [item["detail"]] if item.get("detail") else [],
            })
    return dict(sorted(groups.items(), key=lambda kv: (not kv[0].startswith("("), kv[0])))
