"""One desired state, two engines: the native plan and the Terraform rendering describe the same objects."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tenantctl.model import model_from_text
from tenantctl.model.desired import desired_state
from tenantctl.postgres.catalog import ObservedCluster, ObservedRole
from tenantctl.postgres.planner import compute_plan
from tenantctl.render import render_files

hcl2 = pytest.importorskip("hcl2")

CLIENTS = """
settings = { postgres_engine = "terraform", allow_private_source_ips = true, prefix = "acme_" }
clusters = { main = {} }
clients = [
  { name = "alpha", databases = { db1 = true, db2 = true, old = false }, allowed_ips = ["127.0.0.1/32"],
    rds_iam_auth = true },
  { name = "beta", databases = { app = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false,
    tier = "premium" },
  { name = "gamma", databases = { reports = true }, allowed_ips = ["127.0.0.1/32"], rds_iam_auth = false,
    tier = "basic" },
]
"""

Objects = dict[str, Any]


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    return value


def from_rendering(files: dict[str, bytes]) -> Objects:
    roles: dict[str, dict[str, Any]] = {}
    databases: dict[str, str] = {}
    grants: dict[tuple[str, str, str, str | None], tuple[str, ...]] = {}
    defaults: dict[tuple[str, str, str, str, str], tuple[str, ...]] = {}
    for path, content in sorted(files.items()):
        if not path.endswith("/postgres.tf"):
            continue
        document = hcl2.loads(content.decode())
        logical = {k: _unquote(v) for block in document.get("locals", []) for k, v in block["databases"].items()
                   if not k.startswith("__")}
        resources = [(_unquote(kind), _unquote(label), body) for block in document["resource"]
                     for kind, labelled in block.items() for label, body in labelled.items()]
        names = {f"postgresql_role.{label}.name": _unquote(body["name"])
                 for kind, label, body in resources if kind == "postgresql_role"}

        def resolve(value: Any, names: dict[str, str] = names, logical: dict[str, str] = logical) -> Any:
            value = _unquote(value)
            if isinstance(value, list):
                return [resolve(v) for v in value]
            match = re.fullmatch(r"\$\{(.+)\}", value) if isinstance(value, str) else None
            if not match:
                return value
            reference = match.group(1)
            database = re.fullmatch(r'postgresql_database\.this\["(.+)"\]\.name', reference)
            return logical[database.group(1)] if database else names[reference]

        for kind, _label, body in resources:
            if kind == "postgresql_role":
                roles[resolve(body["name"])] = {
                    "login": body["login"], "connection_limit": body["connection_limit"],
                    "statement_timeout": body.get("statement_timeout"),
                    "idle_in_transaction_session_timeout": body.get("idle_in_transaction_session_timeout"),
                    "member_of": sorted(resolve(body.get("roles", [])))}
            elif kind == "postgresql_database":
                for physical in logical.values():
                    databases[physical] = resolve(body["owner"])
            elif kind == "postgresql_grant":
                key = (resolve(body["database"]), resolve(body["role"]), _unquote(body["object_type"]),
                       resolve(body.get("schema")))
                grants[key] = tuple(sorted(resolve(body["privileges"])))
            elif kind == "postgresql_default_privileges":
                default_key = (resolve(body["database"]), resolve(body["owner"]), resolve(body["role"]),
                               resolve(body["schema"]), _unquote(body["object_type"]))
                defaults[default_key] = tuple(sorted(resolve(body["privileges"])))
    return {"roles": roles, "databases": databases, "grants": grants, "default_privileges": defaults}


def from_native_plan(plan: Any) -> Objects:
    roles: dict[str, dict[str, Any]] = {}
    databases: dict[str, str] = {}
    grants: dict[tuple[str, str, str, str | None], tuple[str, ...]] = {}
    defaults: dict[tuple[str, str, str, str, str], tuple[str, ...]] = {}
    for action in plan.actions:
        params = action.params
        if action.kind == "create_role":
            roles[action.subject] = {"login": params["login"], "connection_limit": params["connection_limit"],
                                     "statement_timeout": None, "idle_in_transaction_session_timeout": None,
                                     "member_of": []}
    for action in plan.actions:
        params = action.params
        if action.kind == "set_role_setting":
            roles[action.subject][params["parameter"]] = int(params["value"])
        elif action.kind == "grant_membership":
            roles[action.subject]["member_of"] = sorted([*roles[action.subject]["member_of"], params["group"]])
        elif action.kind == "create_database":
            databases[action.subject] = params["owner"]
        elif action.kind == "set_database_privileges":
            grants[(action.subject, params["grantee"], "database", None)] = tuple(sorted(params["privileges"]))
        elif action.kind == "reconcile_schemas":
            for grant in params["schema_grants"]:
                grants[(action.subject, grant["role"], "schema", grant["schema"])] = tuple(sorted(grant["privileges"]))
            for d in params["default_privileges"]:
                key = (action.subject, str(d["owner"]), str(d["role"]), str(d["schema"]), str(d["object_type"]))
                defaults[key] = tuple(sorted(d["privileges"]))
    return {"roles": roles, "databases": databases, "grants": grants, "default_privileges": defaults}


def test_native_plan_and_terraform_rendering_describe_the_same_objects() -> None:
    model = model_from_text(CLIENTS)
    desired = desired_state(model)
    empty = ObservedCluster("main", roles={"rds_iam": ObservedRole("rds_iam", False, True, -1, (), {}, (), False,
                                                                    None)}, databases={})
    native = from_native_plan(compute_plan(desired, "main", empty, secret_names=frozenset()))
    rendered = from_rendering(render_files(model))
    assert native["databases"] == rendered["databases"]
    assert native["roles"] == rendered["roles"]
    assert native["grants"] == rendered["grants"]
    assert native["default_privileges"] == rendered["default_privileges"]
    assert set(native["databases"]) == {"acme_alpha_db1", "acme_alpha_db2", "acme_beta_app", "acme_gamma_reports"}
    assert len(native["grants"]) == 16
