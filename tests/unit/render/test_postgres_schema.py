"""Every rendered postgresql_* block against the cyrilgdn/postgresql 1.26.0 schema (a copy of the shared
reference in tests/data/schemas, so a clone without ../shared runs it)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tenantctl.model.types import Model
from tenantctl.render import render_files

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "data" / "schemas" / "postgresql_provider_schema.json"
META_ARGUMENTS = {"depends_on", "for_each", "count", "provider", "lifecycle"}
PYTHON_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "int": (int,), "bool": (bool,), "set": (list,),
                                             "list": (list,)}

Blocks = Callable[[str], list[tuple[str, tuple[str, ...], dict[str, Any]]]]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return loaded


def allowed_privileges(schema: dict[str, Any]) -> dict[str, set[str]]:
    """Parse 'allowedPrivileges (...): database {ALL,CREATE,...}; schema {...}' from the grant notes."""
    notes = " ".join(schema["resources"]["postgresql_grant"]["_meta"]["behavior_read_from_source"])
    section = notes.split("allowedPrivileges", 1)[1]
    found: dict[str, set[str]] = {}
    for kinds, privileges in re.findall(r"([a-z/_]+) \{([A-Z,]+)\}", section):
        for kind in kinds.split("/"):
            found[kind] = set(privileges.split(","))
    assert {"database", "schema", "table", "sequence"} <= set(found), found
    return found


def check_arguments(kind: str, body: dict[str, object], spec: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    arguments = {k: v for k, v in spec.items() if not k.startswith("_")}
    for name, value in body.items():
        if name in META_ARGUMENTS:
            continue
        if name not in arguments:
            problems.append(f"{kind}: unknown argument {name}")
            continue
        argument = arguments[name]
        if argument.get("deprecated"):
            problems.append(f"{kind}: deprecated argument {name}")
        literal = not (isinstance(value, str) and value.startswith("${"))
        if literal and not isinstance(value, PYTHON_TYPES.get(argument["type"], (object,))):
            problems.append(f"{kind}.{name}: {value!r} is not a {argument['type']}")
        if literal and "allowed_values" in argument and value not in argument["allowed_values"]:
            problems.append(f"{kind}.{name}: {value!r} not in {argument['allowed_values']}")
        for other in argument.get("conflicts_with", []):
            if other in body:
                problems.append(f"{kind}: {name} conflicts with {other}")
    for name, argument in arguments.items():
        if argument.get("required") and name not in body:
            problems.append(f"{kind}: missing required argument {name}")
    return problems


@pytest.mark.parametrize("target", ["local", "aws"])
def test_rendered_postgresql_blocks_follow_the_provider_schema(
    make_model: Callable[..., Model], parse_blocks: Blocks, schema: dict[str, Any], target: str
) -> None:
    files = render_files(make_model(engine="terraform", target=target))
    privileges_by_type = allowed_privileges(schema)
    problems: list[str] = []
    checked: dict[str, int] = {}
    for path, content in files.items():
        for kind, labels, body in parse_blocks(content.decode()):
            if kind == "provider" and labels == ("postgresql",):
                problems += check_arguments("provider", body, schema["provider"])
                checked["provider"] = checked.get("provider", 0) + 1
            elif kind == "resource" and labels[0].startswith("postgresql_"):
                resource = labels[0]
                assert resource in schema["resources"], f"{path}: unknown resource type {resource}"
                problems += check_arguments(f"{path}:{resource}.{labels[1]}", body,
                                            schema["resources"][resource])
                if "privileges" in body:
                    object_type = str(body["object_type"])
                    privileges = set(body["privileges"])  # type: ignore[call-overload]
                    extra = privileges - privileges_by_type[object_type]
                    assert not extra, f"{path}:{labels[1]}: {extra} not allowed on {object_type}"
                    assert "ALL" not in privileges, "list privileges explicitly (ALL grows with new versions)"
                checked[resource] = checked.get(resource, 0) + 1
    assert not problems, "\n".join(problems)
    # Every kind of block was actually seen (the check cannot pass vacuously).
    assert checked["provider"] == 3
    assert checked["postgresql_role"] == 6
    assert checked["postgresql_database"] == 3
    assert checked["postgresql_grant"] == 4 * 4  # 4 databases x (PUBLIC + login) x (database + schema)
    assert checked["postgresql_default_privileges"] == 4 * 2
    assert "postgresql_grant_role" not in checked


def test_provider_block_respects_the_pitfalls(
    make_model: Callable[..., Model], parse_blocks: Blocks, schema: dict[str, Any]
) -> None:
    files = render_files(make_model(engine="terraform"))
    provider = next(body for kind, labels, body in parse_blocks(files["tenants/client01/terraform.tf"].decode())
                    if kind == "provider" and labels == ("postgresql",))
    assert provider["superuser"] is False  # the default (true) breaks on RDS/Aurora
    assert provider["expected_version"] != schema["provider"]["expected_version"]["default"]
    assert provider["max_connections"] < schema["provider"]["max_connections"]["default"]
