"""The plan report for a terminal: a rich table grouped by tenant, then the totals."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from tenantctl.report.document import KEPT_ACTIONS, attention, by_tenant, has_destroy, section_counts
from tenantctl.report.tables import print_table

ACTION_STYLES = {"create": "green", "update": "yellow", "delete": "bold red", "replace": "bold magenta",
                 "route-remove": "bold red", "route-repoint": "bold magenta", "orphan": "bold yellow"}


def render(document: dict[str, Any], console: Console) -> None:
    groups = by_tenant(document)
    if groups:
        lines: list[tuple[str, str, str]] = []
        for tenant, rows in groups.items():
            first = True
            for row in rows:
                style = ACTION_STYLES.get(row["action"], "")
                source = "" if row["source"] == "terraform" else f"  [{row['source']}]"
                detail = ("\n  " + row["changed_attributes"][0]
                          if row["source"] != "terraform" and row["changed_attributes"] else "")
                action = f"[{style}]{row['action']}[/]" if style else row["action"]
                lines.append((escape(tenant) if first else "", action, escape(row["address"] + source + detail)))
                first = False
        print_table(console, ("tenant", "action", "address"), lines, title=f"plan {document['plan_id']}", markup=True)
    for stack in document["stacks"]:
        if stack["status"] == "deferred":
            console.print(f"[yellow]deferred[/] {stack['stack']}: {stack['reason']}", highlight=False)
        elif stack["status"] == "errored":
            console.print(f"[bold red]error[/] {stack['stack']}: {stack['error']}", highlight=False, markup=True)
    for section in document["sections"]:
        if section["error"]:
            console.print(f"[bold red]error[/] {section['name']}: {section['error']}")
    for item in attention(document):
        label = ("[bold yellow]DATA KEPT, NOT ROUTED[/]" if item["action"] in KEPT_ACTIONS
                 else "[bold red]ACCESS CHANGES[/]")
        who = f"{item['tenant']}: " if item.get("tenant") else ""
        console.print(f"{label} {escape(who + item['object'])} ({escape(item.get('detail') or '')})",
                      highlight=False)
    if document["violations"]:
        console.print("[bold red]REFUSED by the guard:[/]")
        for v in document["violations"]:
            where = f"{v['stack']}:{v['address']}" if v["address"] else v["stack"]
            console.print(f"  [bold red]{v['action'].upper()}[/] {where}: {v['reason']}", highlight=False)
    totals = document["totals"]
    unchanged = sum(1 for s in document["stacks"] if s["status"] == "unchanged")
    planned = sum(1 for s in document["stacks"] if s["status"] in ("changes", "no_changes", "refused"))
    marker = "[bold red]DESTROY[/] " if has_destroy(document) else ""
    others = "".join(f", {count} {name} change(s)" for name, count in section_counts(document).items())
    console.print(
        f"{marker}{totals['create']} to create, {totals['update']} to update, {totals['delete']} to delete, "
        f"{totals['replace']} to replace{others}; {planned} stack(s) planned, {unchanged} unchanged since last "
        f"apply. Artifacts: {document['artifacts']}",
        highlight=False,
    )
