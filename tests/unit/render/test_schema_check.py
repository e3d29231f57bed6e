"""The aws-target stacks, checked statically against the AWS provider's schema at both ends of the
supported range (4.61.0 and 6.58.0), and the terraform engine's HCL against the Postgres provider's.

The schemas are copies in tests/data/schemas (from ../shared/reference, read from the providers' source),
so a clone without ../shared runs these tests. The checker is first shown to catch each kind of mistake.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import SEED_CLIENTS, clients_text  # type: ignore[import-not-found]

from tenantctl.aws.session import target_for
from tenantctl.errors import ValidationFailed
from tenantctl.model import model_from_text
from tenantctl.render import render_stacks
from tenantctl.render.schema_check import VERSIONS, check_files, normalize_postgres_schema, parse
from tenantctl.terraform.pipeline import TerraformEnvironment
from tenantctl.terraform.toolchain import Toolchain
from tenantctl.terraform.workspace import Workspace

SCHEMAS = Path(__file__).resolve().parents[2] / "data" / "schemas"


@pytest.fixture(scope="module")
def aws_schema() -> dict[str, Any]:
    schema = json.loads((SCHEMAS / "aws_provider_schema.json").read_text())
    schema["resources"]["aws_rds_cluster_parameter_group"] = json.loads(
        (SCHEMAS / "aws_rds_cluster_parameter_group.json").read_text())
    return schema


@pytest.fixture(scope="module")
def postgres_schema() -> dict[str, Any]:
    return normalize_postgres_schema(json.loads((SCHEMAS / "postgresql_provider_schema.json").read_text()))


def rendered(model: Any, out: Path) -> dict[str, str]:
    render_stacks(model, out)
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*.tf"))}


STAND_IN = 'aws_endpoint_url = "http://localhost:4566"'
VARIANTS: dict[str, dict[str, str]] = {
    "native engine, local state": {},
    "terraform engine": {"engine": "terraform"},
    "s3 backend": {"backend": "s3"},
    "terraform engine, s3 backend": {"engine": "terraform", "backend": "s3"},
    "password tenants only": {"clients": SEED_CLIENTS.replace("rds_iam_auth = true", "rds_iam_auth = false")},
    "s3 backend, AWS stand-in": {"backend": "s3", "extra_settings": STAND_IN},
}
# Backend arguments Terraform 1.11 deprecates (warnings, not errors) that tenantctl still passes, and why:
# dynamodb_table is the user's choice of lock (use_lockfile needs Terraform >= 1.10); the stand-in's
# endpoint/force_path_style names are the only ones the pinned Terraform 1.0.3 knows.
DEPRECATED_BACKEND = {
    "s3 backend": {"dynamodb_table"},
    "terraform engine, s3 backend": {"dynamodb_table"},
    "s3 backend, AWS stand-in": {"dynamodb_table", "endpoint", "dynamodb_endpoint", "iam_endpoint", "sts_endpoint",
                                 "force_path_style"},
}


def init_backend_config(model: Any, tmp_path: Path) -> dict[str, str] | None:
    """What `terraform init` adds to the partial backend "s3" block (the pipeline's own -backend-config)."""
    if model.settings.backend.kind != "s3":
        return None
    environment = TerraformEnvironment(Toolchain(Path("terraform"), Path("rc"), None, target="aws"),
                                       target_for(model.settings), model.settings.backend)
    return environment.backend_config(Workspace.at(tmp_path / "project"), "cluster")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_aws_target_block_matches_the_provider_schema(
    variant: str, version: str, make_model: Callable[..., Any], aws_schema: dict[str, Any],
    postgres_schema: dict[str, Any], tmp_path: Path,
) -> None:
    model = make_model(target="aws", **VARIANTS[variant])
    files = rendered(model, tmp_path / "stacks")
    assert any("aws_rds_cluster" in text for text in files.values())
    if VARIANTS[variant].get("engine") == "terraform":
        assert any("postgresql_role" in text for text in files.values())
    backend = init_backend_config(model, tmp_path)
    problems = [p for p in check_files(files, aws_schema, version, postgres_schema, backend)]
    deprecated = {p.message.split(" is deprecated")[0] for p in problems
                  if p.where.startswith("terraform.backend") and " is deprecated" in p.message}
    assert deprecated == DEPRECATED_BACKEND.get(variant, set()), deprecated
    others = [str(p) for p in problems if not (p.where.startswith("terraform.backend") and "deprecated" in p.message)]
    assert others == [], "\n".join(others)


CLUSTER = '''
resource "aws_rds_cluster" "this" {
  cluster_identifier                  = "c"
  engine                              = "aurora-postgresql"
  iam_database_authentication_enabled = true
  manage_master_user_password         = true
  serverlessv2_scaling_configuration {
    min_capacity = 0.5
    max_capacity = 4
  }
  lifecycle {
    prevent_destroy = true
  }
}
'''


def problems_of(text: str, schema: dict[str, Any], version: str = "6.58.0") -> list[str]:
    return [p.message for p in check_files({"main.tf": text}, schema, version)]


def test_a_correct_block_passes(aws_schema: dict[str, Any]) -> None:
    assert problems_of(CLUSTER, aws_schema) == []
    assert problems_of(CLUSTER, aws_schema, "4.61.0") == []


@pytest.mark.parametrize(("edit", "expected", "version"), [
    (('engine ', 'enginee '), "unknown argument enginee", "6.58.0"),
    (('  engine                              = "aurora-postgresql"\n', ""), "required argument engine is missing",
     "6.58.0"),
    (('"aurora-postgresql"', '"aurora-postgres"'), "is not one of", "6.58.0"),
    (("serverlessv2_scaling_configuration {", "serverlessv2_scaling_configuration = {"), "is a nested block",
     "6.58.0"),
    (("  lifecycle {", "  tags {\n  }\n  lifecycle {"), "tags is an attribute", "4.61.0"),
    (("  lifecycle {", "  master_user_secret {\n  }\n  lifecycle {"), "computed only", "6.58.0"),
    (("cluster_identifier ", "cluster_scalability_type = \"standard\"\n  cluster_identifier "),
     "unknown argument cluster_scalability_type", "4.61.0"),
])
def test_each_kind_of_mistake_is_reported(edit: tuple[str, str], expected: str, version: str,
                                          aws_schema: dict[str, Any]) -> None:
    broken = CLUSTER.replace(*edit)
    assert broken != CLUSTER
    found = problems_of(broken, aws_schema, version)
    assert any(expected in message for message in found), found


def test_engine_is_required_from_5_0_only(aws_schema: dict[str, Any]) -> None:
    without = CLUSTER.replace('  engine                              = "aurora-postgresql"\n', "")
    assert problems_of(without, aws_schema, "4.61.0") == []
    assert "required argument engine is missing" in problems_of(without, aws_schema, "6.58.0")


def test_the_provider_and_backend_blocks_are_checked(aws_schema: dict[str, Any]) -> None:
    provider = 'provider "aws" {\n  region              = "eu-west-1"\n  s3_force_path_style = true\n}\n'
    assert any("unknown argument s3_force_path_style" in m for m in problems_of(provider, aws_schema, "6.58.0"))
    assert any("deprecated" in m for m in problems_of(provider, aws_schema, "4.61.0"))
    assert problems_of(provider.replace("s3_force_path_style", "s3_use_path_style"), aws_schema) == []
    backend = 'terraform {\n  backend "s3" {\n    bucket = "b"\n    key = "k"\n    dynamodb_table = "t"\n  }\n}\n'
    assert any("dynamodb_table is deprecated" in m for m in problems_of(backend, aws_schema))
    assert problems_of(backend.replace('dynamodb_table = "t"', "use_lockfile = true"), aws_schema) == []


def test_postgres_provider_blocks_are_checked(postgres_schema: dict[str, Any], aws_schema: dict[str, Any]) -> None:
    grant = ('resource "postgresql_grant" "g" {\n  database    = "d"\n  role        = "r"\n'
             '  object_type = "tables"\n  privileges  = ["SELECT"]\n}\n')
    found = [p.message for p in check_files({"pg.tf": grant}, aws_schema, "6.58.0", postgres_schema)]
    assert any("'tables' is not one of" in m for m in found), found


def test_the_copies_match_the_shared_reference_when_it_is_there() -> None:
    shared = Path(__file__).resolve().parents[3].parent / "shared" / "reference"
    if not shared.is_dir():
        pytest.skip("../shared is absent: the copies in tests/data/schemas are all there is")
    for name in ("aws_provider_schema.json", "postgresql_provider_schema.json"):
        assert (SCHEMAS / name).read_bytes() == (shared / name).read_bytes(), f"{name} differs from ../shared"


def test_values_behind_for_each_are_checked_for_every_entry(aws_schema: dict[str, Any]) -> None:
    """The cluster stack's capacities live in local.clusters; the block reads each.value.<field>."""
    stack = '''
locals {
  clusters = {
    a = {
      min_capacity = 0.5
      max_capacity = 8
    }
    b = {
      min_capacity = 2
      max_capacity = 200
    }
  }
}

resource "aws_rds_cluster" "this" {
  for_each = local.clusters

  engine = "aurora-postgresql"
  serverlessv2_scaling_configuration {
    min_capacity = each.value.min_capacity
    max_capacity = each.value.max_capacity
  }
}
'''
    assert problems_of(stack, aws_schema, "6.58.0") == []
    # v4.61.0 caps Serverless v2 at 128 ACU (its own range, recorded as a difference of the nested argument).
    assert problems_of(stack, aws_schema, "4.61.0") == ["max_capacity = 200 is outside 0.5..128"]
    low = stack.replace("max_capacity = 8", "max_capacity = 0.5")
    assert "max_capacity = 0.5 is outside 1..256" in problems_of(low, aws_schema, "6.58.0")


@pytest.mark.parametrize(("acu", "version", "expected"), [
    ("min_acu = 0.5, max_acu = 0.5", "6.58.0", "max_capacity = 0.5 is outside 1..256"),
    ("min_acu = 1, max_acu = 256", "4.61.0", "max_capacity = 256 is outside 0.5..128"),
])
def test_capacities_the_clients_file_accepts_are_valid_at_both_ends_of_the_provider_range(
    acu: str, version: str, expected: str, aws_schema: dict[str, Any], tmp_path: Path,
) -> None:
    """Either the clients file refuses the capacity (naming the cluster), or the stack is valid: never a
    cluster stack that one end of hashicorp/aws >= 4.61.0 rejects at plan time."""
    text = clients_text(target="aws").replace("min_acu = 0.5, max_acu = 8", acu)
    assert acu in text
    try:
        model = model_from_text(text)
    except ValidationFailed as error:
        where = [f"{d.path}: {d.message}" for d in error.diagnostics]
        assert any("shared-01" in line and "max_acu" in line for line in where), where
        return
    problems = [p.message for p in check_files(rendered(model, tmp_path), aws_schema, version)]
    assert expected not in problems, problems


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("acu", ["min_acu = 0.5, max_acu = 1", "min_acu = 128, max_acu = 128"])
def test_the_capacity_bounds_the_clients_file_accepts_are_valid_at_both_ends(
    acu: str, version: str, aws_schema: dict[str, Any], tmp_path: Path,
) -> None:
    model = model_from_text(clients_text(target="aws").replace("min_acu = 0.5, max_acu = 8", acu))
    assert [p.message for p in check_files(rendered(model, tmp_path), aws_schema, version)] == []


def _is_block(item: dict[str, Any]) -> bool:
    """python-hcl2 marks blocks with __is_block__; an empty labelled one is just {'"label"': {}}."""
    return bool(item.get("__is_block__")) or (len(item) == 1 and next(iter(item)).startswith('"'))


def _from_hcl2(body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[tuple[str, ...], Any]]]:
    """(attributes, nested blocks) of a python-hcl2 block body; literals unquoted, expressions as None."""
    def value(v: Any) -> Any:
        if isinstance(v, str):
            quoted = len(v) >= 2 and v[0] == v[-1] == '"' and "${" not in v
            return v[1:-1] if quoted else None  # python-hcl2 keeps literal strings' quotes: the rest is expressions
        if isinstance(v, dict):
            return {str(value(k)) if k.startswith('"') else k: value(x) for k, x in v.items() if not k.startswith("__")}
        if isinstance(v, list):
            return [value(x) for x in v]
        return v

    attributes: dict[str, Any] = {}
    blocks: list[tuple[tuple[str, ...], Any]] = []
    for name, item in body.items():
        if name.startswith("__"):
            continue
        if isinstance(item, list) and item and all(isinstance(x, dict) and _is_block(x) for x in item):
            for x in item:
                labels: list[str] = []
                while "__is_block__" not in x and len(x) == 1:
                    (label, x), = x.items()
                    labels.append(label.strip('"'))
                blocks.append(((name, *labels), _from_hcl2(x)))
        else:
            attributes[name] = value(item)
    return attributes, sorted(blocks, key=repr)


def _from_checker(block: Any) -> tuple[dict[str, Any], list[tuple[tuple[str, ...], Any]]]:
    from tenantctl.render.schema_check import Expr

    def value(v: Any) -> Any:
        if isinstance(v, Expr):
            return None
        if isinstance(v, dict):
            return {k: value(x) for k, x in v.items()}
        if isinstance(v, list):
            return [value(x) for x in v]
        return v

    attributes = {name: value(v) for name, (_, v) in block.attributes.items()}
    return attributes, sorted((((child.kind, *child.labels), _from_checker(child)) for child in block.blocks),
                              key=repr)


@pytest.mark.parametrize("target", ["aws", "local"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_checkers_reader_sees_what_python_hcl2_sees(
    target: str, variant: str, make_model: Callable[..., Any], tmp_path: Path,
) -> None:
    """The checker's small HCL reader against a full HCL parser on every rendered file: same blocks, same
    attribute names, same literal values. (A reader that dropped an attribute would make the check vacuous.)"""
    import hcl2

    files = rendered(make_model(target=target, **VARIANTS[variant]), tmp_path)
    compared = 0
    for name, text in files.items():
        theirs = []
        for block_type, entries in hcl2.loads(text).items():
            if block_type.startswith("__"):  # python-hcl2's comments and positions
                continue
            for entry in entries:
                labels: list[str] = []
                body = entry
                while len(body) == 1 and next(iter(body)).startswith('"'):  # labels keep their quotes
                    (label, body), = body.items()
                    labels.append(label.strip('"'))
                theirs.append(((block_type, *labels), _from_hcl2(body)))
        ours = [((block.kind, *block.labels), _from_checker(block)) for block in parse(text)]
        assert sorted(ours, key=repr) == sorted(theirs, key=repr), name
        compared += len(ours)
    assert compared > 20


def test_every_cluster_attribute_the_outputs_read_exists_at_both_ends(
    make_model: Callable[..., Any], aws_schema: dict[str, Any], tmp_path: Path,
) -> None:
    """The resolver reads admin_secret_arn from `cluster.master_user_secret[0].secret_arn` (no password in the
    state on aws): every `cluster.X` / `cluster.X[0].Y` the outputs read is in aws_rds_cluster's schema, and
    from 4.61.0 on."""
    import re

    source = rendered(make_model(target="aws"), tmp_path)["cluster/outputs.tf"]
    references = re.findall(r"= cluster\.(\w+)(?:\[0\]\.(\w+))?", source)
    assert ("master_user_secret", "secret_arn") in references and len(references) >= 6
    cluster = aws_schema["resources"]["aws_rds_cluster"]
    for attribute, nested in references:
        if nested:
            block = cluster["blocks"][attribute]
            assert block["computed"] and nested in block["arguments"], (attribute, nested)
            assert block["arguments"][nested]["present_in_v4_61_0"] and not block["arguments"][nested]["sensitive"]
        else:
            assert attribute in cluster["arguments"], attribute
