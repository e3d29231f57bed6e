"""Reading ``terraform show -json PLANFILE``: resource changes as actions on addresses, and redaction.

Only addresses, types, actions and the *names* of changed attributes leave this module; values never
do. ``redact_plan`` masks every value Terraform marks sensitive (and all variable values and
provider configuration constants) before a plan JSON is stored as an artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REDACTED = "(sensitive)"

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
REPLACE = "replace"
READ = "read"
NO_OP = "no-op"
CHANGE_ACTIONS = (CREATE, UPDATE, DELETE, REPLACE)


@dataclass(frozen=True)
class ResourceChange:
    address: str
    type: str
    name: str
    module: str  # "" for the root module
    mode: str  # "managed" | "data"
    action: str  # create | update | delete | replace | read | no-op
    changed_attributes: tuple[str, ...]  # top-level attribute names whose value changes (never values)

    @property
    def destroys(self) -> bool:
        return self.action in (DELETE, REPLACE)

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address, "type": self.type, "action": self.action,
            "changed_attributes": list(self.changed_attributes),
        }


@dataclass(frozen=True)
class PlanSummary:
    terraform_version: str
    changes: tuple[ResourceChange, ...]  # only create/update/delete/replace, sorted by address
    output_changes: dict[str, str]  # output name -> action
    errored: bool
    drift: tuple[ResourceChange, ...] = ()  # what refresh found changed outside Terraform (resource_drift)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)


def normalise_actions(actions: list[str] | tuple[str, ...]) -> str:
    """Terraform's action list as one word: ``["delete","create"]`` (either order) is a replace."""
    as_set = set(actions)
    if as_set == {DELETE, CREATE}:
        return REPLACE
    if len(actions) == 1 and actions[0] in (CREATE, UPDATE, DELETE, READ, NO_OP):
        return actions[0]
    raise ValueError(f"unknown Terraform action list {actions!r}")


def read_plan(document: dict[str, Any]) -> PlanSummary:
    outputs = {
        name: normalise_actions(tuple((value or {}).get("actions") or (NO_OP,)))
        for name, value in (document.get("output_changes") or {}).items()
    }
    return PlanSummary(
        terraform_version=str(document.get("terraform_version", "")),
        changes=_read_changes(document.get("resource_changes")),
        output_changes=outputs,
        errored=bool(document.get("errored", False)),
        drift=_read_changes(document.get("resource_drift")),
    )


def _read_changes(entries: list[dict[str, Any]] | None) -> tuple[ResourceChange, ...]:
    changes: list[ResourceChange] = []
    for entry in entries or []:
        change = entry.get("change") or {}
        action = normalise_actions(tuple(change.get("actions") or (NO_OP,)))
        if action not in CHANGE_ACTIONS:
            continue
        changes.append(ResourceChange(
            address=str(entry.get("address", "")),
            type=str(entry.get("type", "")),
            name=str(entry.get("name", "")),
            module=str(entry.get("module_address", "")),
            mode=str(entry.get("mode", "managed")),
            action=action,
            changed_attributes=_changed_attributes(change) if action in (UPDATE, REPLACE) else (),
        ))
    return tuple(sorted(changes, key=lambda c: c.address))


def planned_output(document: dict[str, Any], name: str) -> tuple[Any, Any]:
    """(after value, after_unknown mask) of an output in a plan; (None, True) when absent."""
    change = (document.get("output_changes") or {}).get(name)
    if change is None:
        return None, True
    return change.get("after"), change.get("after_unknown", False)


def _changed_attributes(change: dict[str, Any]) -> tuple[str, ...]:
    before = change.get("before") or {}
    after = change.get("after") or {}
    unknown = change.get("after_unknown") or {}
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ()
    names = set(before) | set(after)
    changed = {
        name for name in names
        if before.get(name) != after.get(name) or (isinstance(unknown, dict) and unknown.get(name) is True)
    }
    return tuple(sorted(changed))


def redact_plan(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a plan JSON safe to store and share: sensitive values masked."""
    redacted = dict(document)
    if "variables" in redacted:
        redacted["variables"] = {name: {"value": REDACTED} for name in document.get("variables") or {}}
    for section in ("planned_values", "prior_state"):
        if section in document:
            redacted[section] = _redact_state_section(document[section])
    for section in ("resource_changes", "resource_drift"):
        if section in document:
            redacted[section] = [_redact_change(rc) for rc in document.get(section) or []]
    if "output_changes" in document:
        redacted["output_changes"] = {
            name: _redact_change_body(change) for name, change in document["output_changes"].items()
        }
    if "configuration" in document:
        redacted["configuration"] = _strip_constants(document["configuration"])
    # Sections this code does not know (newer Terraform) may carry values: leave them out.
    return {key: value for key, value in redacted.items() if key in KNOWN_PLAN_KEYS}


KNOWN_PLAN_KEYS = frozenset({
    "format_version", "terraform_version", "variables", "planned_values", "prior_state", "resource_changes",
    "resource_drift", "output_changes", "configuration", "relevant_attributes", "timestamp", "errored",
    "applyable", "complete",
})


def _redact_state_section(section: Any) -> Any:
    if not isinstance(section, dict):
        return section
    result = dict(section)
    if "outputs" in section:
        result["outputs"] = {
            name: {**output, "value": REDACTED} if output.get("sensitive") else output
            for name, output in section["outputs"].items()
        }
    if "values" in section and isinstance(section["values"], dict):
        result["values"] = _redact_state_section(section["values"])
    if "root_module" in section:
        result["root_module"] = _redact_module(section["root_module"])
    return result


def _redact_module(module: dict[str, Any]) -> dict[str, Any]:
    result = dict(module)
    result["resources"] = [
        {**resource, "values": _mask(resource.get("values"), resource.get("sensitive_values", {}))}
        for resource in module.get("resources") or []
    ]
    if "child_modules" in module:
        result["child_modules"] = [_redact_module(child) for child in module["child_modules"]]
    return result


def _redact_change(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "change": _redact_change_body(entry.get("change") or {})}


def _redact_change_body(change: dict[str, Any]) -> dict[str, Any]:
    result = dict(change)
    result["before"] = _mask(change.get("before"), change.get("before_sensitive", False))
    result["after"] = _mask(change.get("after"), change.get("after_sensitive", False))
    return result


def _mask(value: Any, sensitive: Any) -> Any:
    """Mask ``value`` where Terraform's parallel ``sensitive`` structure says true."""
    if sensitive is True:
        return REDACTED if value is not None else None
    if isinstance(value, dict) and isinstance(sensitive, dict):
        return {key: _mask(item, sensitive.get(key, False)) for key, item in value.items()}
    if isinstance(value, list) and isinstance(sensitive, list):
        return [_mask(item, sensitive[i] if i < len(sensitive) else False) for i, item in enumerate(value)]
    return value


def _strip_constants(node: Any) -> Any:
    """Configuration keeps expressions (references) but not literal values, which may be secrets."""
    if isinstance(node, dict):
        return {
            key: (REDACTED if key == "constant_value" else _strip_constants(value))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_strip_constants(item) for item in node]
    return node
