"""The plan report as a pull-request comment: empty when nothing changes, loud on any destroy."""

from __future__ import annotations

from typing import Any

from tenantctl.report.document import attention, by_tenant, has_destroy, is_empty, section_counts

ACTION_MARKERS = {"create": "+ create", "update": "~ update", "delete": "- DELETE", "replace": "-/+ REPLACE",
                  "route-remove": "- ROUTE REMOVED", "route-repoint": "~ RE-POINTED", "orphan": "! KEPT, UNROUTED"}


def render(document: dict[str, Any]) -> str:
    """Markdown for reviewers; the empty string when there is nothing to review."""
    if is_empty(document):
        return ""
    totals = document["totals"]
    lines: list[str] = []
    if has_destroy(document):
        lines += [
            "> [!CAUTION]",
            "> **:rotating_light: DESTRUCTIVE CHANGES: this plan deletes or replaces resources.** "
            "Review every `DELETE` / `REPLACE` below.",
            "",
        ]
    loud = attention(document)
    if loud:
        lines += ["> [!WARNING]",
                  "> **Tenant access changes or data left unrouted:** review every line below.", ">"]
        lines += [f"> - **{item['tenant'] or '(cluster)'}**: `{item['object']}`: {item.get('detail') or ''}"
                  for item in loud]
        lines.append("")
    lines.append(f"### tenantctl plan `{document['plan_id']}`: {document['status'].replace('_', ' ')}")
    lines.append("")
    lines.append(
        f"**{totals['create']}** to create, **{totals['update']}** to update, "
        f"**{totals['delete']}** to delete, **{totals['replace']}** to replace"
        + "".join(f", **{count}** {name} change(s)" for name, count in section_counts(document).items()) + "."
    )
    if document["violations"]:
        lines += ["", "#### :no_entry: Refused by the guard", ""]
        lines += [
            f"- `{v['action'].upper()}` `{v['stack']}{':' + v['address'] if v['address'] else ''}`: {v['reason']}"
            for v in document["violations"]
        ]
    groups = by_tenant(document)
    if groups:
        lines += ["", "| tenant | action | address |", "| --- | --- | --- |"]
        for tenant, rows in groups.items():
            for row in rows:
                action = ACTION_MARKERS.get(row["action"], row["action"])
                source = "" if row["source"] == "terraform" else f" ({row['source']})"
                detail = (f": {row['changed_attributes'][0]}"
                          if row["source"] != "terraform" and row["changed_attributes"] else "")
                lines.append(f"| {tenant} | {action} | `{row['address']}`{source}{detail} |".replace("\n", " "))
    notes = [s for s in document["stacks"] if s["status"] in ("deferred", "errored")]
    if notes:
        lines += [""]
        lines += [
            f"- `{s['stack']}` {s['status']}: {s['error'] or s['reason']}".replace("\n", " ") for s in notes
        ]
    unchanged = sum(1 for s in document["stacks"] if s["status"] in ("unchanged", "no_changes"))
    if unchanged:
        lines += ["", f"{unchanged} stack(s) without changes."]
    return "\n".join(lines) + "\n"
