"""What the rendered stacks contain, for each target and Postgres engine."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tenantctl.errors import InputError
from tenantctl.model.desired import desired_tenant
from tenantctl.model.types import Model
from tenantctl.render import TemplateError, render_files
from tenantctl.render.hcl import canonical_layout

Blocks = Callable[[str], list[tuple[str, tuple[str, ...], dict[str, Any]]]]


def text(files: dict[str, bytes], path: str) -> str:
    return files[path].decode("utf-8")


def resources(parse: Blocks, source: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(labels[0], labels[1]): body for kind, labels, body in parse(source) if kind == "resource"}


def test_same_model_renders_identical_bytes(make_model: Callable[..., Model]) -> None:
    first = render_files(make_model(engine="terraform"))
    second = render_files(make_model(engine="terraform"))
    assert first == second
    for content in first.values():
        assert b"\r" not in content and content.endswith(b"\n") and not content.endswith(b"\n\n")


def test_file_set_per_engine(make_model: Callable[..., Model]) -> None:
    native = render_files(make_model(engine="native"))
    assert sorted(native) == [
        "cluster/main.tf", "cluster/outputs.tf", "cluster/terraform.tf", "cluster/variables.tf",
        *(f"tenants/{t}/{f}" for t in ("client01", "client02", "client03")
          for f in ("iam.tf", "outputs.tf", "terraform.tf", "variables.tf")),
    ]
    with_postgres = render_files(make_model(engine="terraform"))
    tenants = ("client01", "client02", "client03")
    assert set(with_postgres) - set(native) == {f"tenants/{t}/postgres.tf" for t in tenants}


def test_cluster_stack_protects_every_cluster(model: Model, parse_blocks: Blocks) -> None:
    files = render_files(model)
    main = text(files, "cluster/main.tf")
    cluster = resources(parse_blocks, main)[("aws_rds_cluster", "this")]
    assert cluster["for_each"] == "${local.clusters}"
    assert cluster["engine"] == "aurora-postgresql"
    assert cluster["deletion_protection"] is True
    assert cluster["skip_final_snapshot"] is False
    assert cluster["iam_database_authentication_enabled"] is True
    assert cluster["storage_encrypted"] is True
    lifecycle = cluster["lifecycle"]
    assert isinstance(lifecycle, list) and lifecycle[0]["prevent_destroy"] is True
    assert "ignore_changes" not in lifecycle[0] or lifecycle[0]["ignore_changes"] == ["scaling_configuration"]
    assert cluster["master_password"] == "${var.master_password}"  # local target: sensitive variable
    locals_body = next(body for kind, _, body in parse_blocks(main) if kind == "locals")
    clusters = locals_body["clusters"]
    assert isinstance(clusters, dict)
    assert set(clusters) == {"shared-01", "vip"}
    assert clusters["vip"] == {
        "identifier": "vip", "engine_version": "15.4", "min_capacity": 2, "max_capacity": 16,
        "final_snapshot_identifier": "vip-final",
        "tags": {"cluster": "vip", "managed-by": "tenantctl", "tenancy": "dedicated"},
    }
    variables = {labels[0]: body for kind, labels, body in parse_blocks(text(files, "cluster/variables.tf"))}
    assert variables["master_password"]["sensitive"] is True
    assert "default" not in variables["master_password"]


def test_local_target_has_no_serverless_v2_and_pins_the_offline_provider(model: Model, parse_blocks: Blocks) -> None:
    files = render_files(model)
    assert "serverlessv2_scaling_configuration" not in text(files, "cluster/main.tf")
    assert "aws_rds_cluster_instance" not in text(files, "cluster/main.tf")
    terraform = next(body for kind, _, body in parse_blocks(text(files, "cluster/terraform.tf")) if kind == "terraform")
    assert terraform["required_version"] == ">= 1.0"
    assert terraform["required_providers"] == [{"aws": {"source": "hashicorp/aws", "version": ">= 3.39.0"}}]
    assert terraform["backend"] == [{"local": {}}]


def test_aws_target_uses_serverless_v2_and_a_managed_master_password(
    make_model: Callable[..., Model], parse_blocks: Blocks
) -> None:
    files = render_files(make_model(target="aws"))
    found = resources(parse_blocks, text(files, "cluster/main.tf"))
    cluster = found[("aws_rds_cluster", "this")]
    assert cluster["manage_master_user_password"] is True
    assert "master_password" not in cluster
    assert cluster["serverlessv2_scaling_configuration"] == [
        {"min_capacity": "${each.value.min_capacity}", "max_capacity": "${each.value.max_capacity}"}
    ]
    instance = found[("aws_rds_cluster_instance", "writer")]
    assert instance["instance_class"] == "db.serverless"
    assert instance["lifecycle"] == [{"prevent_destroy": True}]
    assert "cluster/variables.tf" not in files  # nothing secret to supply on the aws target
    provider = next(body for kind, labels, body in parse_blocks(text(files, "cluster/terraform.tf"))
                    if kind == "provider")
    assert provider == {"region": "eu-west-1", "allowed_account_ids": ["123456789012"]}
    assert '">= 4.61.0"' in text(files, "cluster/terraform.tf")


def test_cluster_output_is_one_map_of_connection_facts(model: Model, parse_blocks: Blocks) -> None:
    outputs = [(labels, body) for kind, labels, body in parse_blocks(text(render_files(model), "cluster/outputs.tf"))]
    assert [labels for labels, _ in outputs] == [("clusters",)]
    value = str(outputs[0][1]["value"])
    for attribute in ("endpoint", "reader_endpoint", "port", "cluster_resource_id", "arn"):
        assert f"{attribute} = cluster.{attribute}" in value


def test_local_provider_points_every_service_at_the_endpoint_without_literal_credentials(
    model: Model, parse_blocks: Blocks
) -> None:
    files = render_files(model)
    for path in ("cluster/terraform.tf", "tenants/client01/terraform.tf"):
        provider = next(body for kind, labels, body in parse_blocks(text(files, path))
                        if kind == "provider" and labels == ("aws",))
        assert provider["endpoints"] == [
            {s: "${var.aws_endpoint}" for s in ("dynamodb", "iam", "rds", "s3", "secretsmanager", "sts")}
        ]
        assert provider["s3_force_path_style"] is True
        assert provider["skip_requesting_account_id"] is True
        assert "access_key" not in provider and "secret_key" not in provider


def test_s3_backend_is_a_partial_configuration(make_model: Callable[..., Model], parse_blocks: Blocks) -> None:
    files = render_files(make_model(backend="s3"))
    for path in ("cluster/terraform.tf", "tenants/client02/terraform.tf"):
        terraform = next(body for kind, _, body in parse_blocks(text(files, path)) if kind == "terraform")
        assert terraform["backend"] == [{"s3": {}}]
        assert "tf-state" not in text(files, path) and "tf-locks" not in text(files, path)


def test_tenant_trust_policy_allows_assume_role_only_from_allowed_ips(model: Model) -> None:
    iam = text(render_files(model), "tenants/client02/iam.tf")
    assert '"aws:SourceIp" = ["109.241.200.1/32", "8.8.8.0/24"]' in iam
    assert 'Action = "sts:AssumeRole"' in iam
    assert re.search(r"IpAddress = \{\s+\"aws:SourceIp\"", iam)
    assert "AWS = aws_iam_user.tenant.arn" in iam


def test_rds_connect_policy_names_exactly_the_tenant_login_role(model: Model, parse_blocks: Blocks) -> None:
    files = render_files(model)
    iam = text(files, "tenants/client01/iam.tf")
    assert ('Resource = "arn:aws:rds-db:eu-west-1:123456789012:dbuser:${var.cluster_resource_id}/client01"'
            in iam)
    found = resources(parse_blocks, iam)
    assert found[("aws_iam_role_policy_attachment", "rds_connect")] == {
        "role": "${aws_iam_role.access.name}", "policy_arn": "${aws_iam_policy.rds_connect.arn}"
    }
    # Password-auth tenants get no rds-db:connect at all.
    assert "rds-db:connect" not in text(files, "tenants/client02/iam.tf")


def test_every_tenant_resource_carries_cost_allocation_tags(model: Model, parse_blocks: Blocks) -> None:
    found = resources(parse_blocks, text(render_files(model), "tenants/client02/iam.tf"))
    expected = {"tenant": "client02", "tier": "premium", "cluster": "shared-01", "managed-by": "tenantctl",
                "team": "payments", "cost:center": "4711"}
    for address in (("aws_iam_user", "tenant"), ("aws_iam_role", "access")):
        assert found[address]["tags"] == expected


def test_tenant_variables_receive_the_cluster_outputs(model: Model, parse_blocks: Blocks) -> None:
    blocks = parse_blocks(text(render_files(model), "tenants/client01/variables.tf"))
    names = {labels[0] for kind, labels, _ in blocks if kind == "variable"}
    assert names == {"aws_endpoint", "cluster_endpoint", "cluster_reader_endpoint", "cluster_port",
                     "cluster_resource_id", "cluster_arn"}


def test_prefix_reaches_every_name(make_model: Callable[..., Model]) -> None:
    files = render_files(make_model(engine="terraform", extra_settings='prefix = "acme_"'))
    iam = text(files, "tenants/client01/iam.tf")
    assert 'name = "acme_client01"' in iam
    assert "dbuser:${var.cluster_resource_id}/acme_client01" in iam
    assert '"acme_client01_db1"' in text(files, "tenants/client01/postgres.tf")


def test_values_are_escaped_not_interpolated(model: Model) -> None:
    tenant = replace(model.tenants[1], tags=(("note", 'say "hi" ${var.x}'),))
    files = render_files(replace(model, tenants=(model.tenants[0], tenant, model.tenants[2])))
    assert 'note         = "say \\"hi\\" $${var.x}"' in text(files, "tenants/client02/iam.tf")


def test_unsafe_tenant_directory_name_is_refused(model: Model) -> None:
    tenant = replace(model.tenants[0], name="../escape")
    with pytest.raises(InputError, match="directory"):
        render_files(replace(model, tenants=(tenant,)))


def test_postgres_stack_matches_the_desired_state(make_model: Callable[..., Model], parse_blocks: Blocks) -> None:
    model = make_model(engine="terraform")
    for tenant in model.tenants:
        state = desired_tenant(model, tenant)
        found = resources(parse_blocks, text(render_files(model), f"tenants/{tenant.name}/postgres.tf"))
        owner, login = found[("postgresql_role", "owner")], found[("postgresql_role", "login")]
        assert owner == {"name": state.owner_role.name, "login": False, "connection_limit": -1}
        assert login["name"] == state.login_role.name and login["login"] is True
        assert login["connection_limit"] == state.login_role.connection_limit
        assert login["statement_timeout"] == state.login_role.statement_timeout_ms
        assert login["idle_in_transaction_session_timeout"] == state.login_role.idle_in_transaction_timeout_ms
        roles = ["${postgresql_role.owner.name}" if r == state.owner_role.name else r
                 for r in state.login_role.member_of]
        assert sorted(login["roles"]) == sorted(roles)
        assert ("password" in login) == state.login_role.password_auth
        if state.login_role.password_auth:
            assert login["password"] == "${var.login_password}"

        grants = [body for (kind, _), body in found.items() if kind == "postgresql_grant"]
        role_names = {"${postgresql_role.login.name}": state.login_role.name,
                      "${postgresql_role.owner.name}": state.owner_role.name}
        databases = {f'${{postgresql_database.this["{db.logical}"].name}}': db.name for db in state.databases}
        rendered: list[tuple[Any, ...]] = sorted(
            (databases[str(g["database"])], role_names.get(str(g["role"]), str(g["role"])), str(g["object_type"]),
             tuple(g["privileges"]), g.get("schema"))
            for g in grants
        )
        assert rendered == sorted((g.database, g.role, g.object_type, g.privileges, g.schema) for g in state.grants)
        defaults = [body for (kind, _), body in found.items() if kind == "postgresql_default_privileges"]
        rendered_defaults: list[tuple[Any, ...]] = sorted(
            (databases[str(d["database"])], role_names[str(d["owner"])], str(d["schema"]), str(d["object_type"]),
             role_names[str(d["role"])], tuple(d["privileges"]))
            for d in defaults
        )
        assert rendered_defaults == sorted(
            (d.database, d.owner, d.schema, d.object_type, d.role, d.privileges) for d in state.default_privileges
        )
        assert not any(kind == "postgresql_grant_role" for kind, _ in found)  # roles= is authoritative


def test_grants_run_one_after_another(make_model: Callable[..., Model], parse_blocks: Blocks) -> None:
    found = resources(parse_blocks, text(render_files(make_model(engine="terraform")), "tenants/client01/postgres.tf"))
    chained = [(kind, label) for kind, label in found if kind in ("postgresql_grant", "postgresql_default_privileges")]
    for previous, current in itertools.pairwise(chained):
        assert found[current]["depends_on"] == [f"${{{previous[0]}.{previous[1]}}}"]
    assert "depends_on" not in found[chained[0]]


def test_databases_are_protected_and_removal_keeps_the_resource_block(
    make_model: Callable[..., Model], parse_blocks: Blocks
) -> None:
    model = make_model(engine="terraform")
    postgres = text(render_files(model), "tenants/client01/postgres.tf")
    database = resources(parse_blocks, postgres)[("postgresql_database", "this")]
    assert database["lifecycle"] == [{"prevent_destroy": True}]
    assert database["owner"] == "${postgresql_role.owner.name}"  # never the (rds_iam) login role
    tenant = replace(model.tenants[0], databases=())
    emptied = text(render_files(replace(model, tenants=(tenant,))), "tenants/client01/postgres.tf")
    assert "databases = {}" in emptied
    assert resources(parse_blocks, emptied)[("postgresql_database", "this")]["lifecycle"] == [
        {"prevent_destroy": True}
    ]


def test_postgres_provider_is_safe_for_aurora(make_model: Callable[..., Model], parse_blocks: Blocks) -> None:
    files = render_files(make_model(engine="terraform", target="aws"))
    blocks = parse_blocks(text(files, "tenants/client03/terraform.tf"))
    provider = next(body for kind, labels, body in blocks if kind == "provider" and labels == ("postgresql",))
    assert provider["superuser"] is False
    assert provider["expected_version"] == "15.4"
    assert provider["password"] == "${var.postgres_admin_password}"
    assert isinstance(provider["max_connections"], int) and provider["max_connections"] <= 4
    assert provider["sslmode"] == "require"
    terraform = next(body for kind, _, body in blocks if kind == "terraform")
    assert terraform["required_providers"] == [{
        "aws": {"source": "hashicorp/aws", "version": ">= 4.61.0"},
        "postgresql": {"source": "cyrilgdn/postgresql", "version": "1.26.0"},
    }]


class TestTemplateOverride:
    def test_explicit_directory_overrides_file_by_file(self, model: Model, tmp_path: Path) -> None:
        (tmp_path / "tenant").mkdir()
        (tmp_path / "tenant" / "outputs.tf.j2").write_text('output "who" {\n  value = {{ tenant.name | q }}\n}\n')
        (tmp_path / "tenant" / "extra.tf.j2").write_text("locals {\n  tier = {{ tenant.tier | q }}\n}\n")
        files = render_files(model, template_dirs=[tmp_path])
        assert text(files, "tenants/client02/outputs.tf") == 'output "who" {\n  value = "client02"\n}\n'
        assert text(files, "tenants/client02/extra.tf") == 'locals {\n  tier = "premium"\n}\n'
        assert files["tenants/client02/iam.tf"] == render_files(model)["tenants/client02/iam.tf"]

    def test_templates_folder_in_the_working_directory_is_picked_up(
        self, model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "templates" / "cluster").mkdir(parents=True)
        (tmp_path / "templates" / "cluster" / "outputs.tf.j2").write_text("# customised\n")
        monkeypatch.chdir(tmp_path)
        assert text(render_files(model), "cluster/outputs.tf") == "# customised\n"
        # An explicit directory replaces the ./templates default.
        assert text(render_files(model, template_dirs=[]), "cluster/outputs.tf").startswith('output "clusters"')

    def test_undefined_variable_is_an_error_naming_the_template(self, model: Model, tmp_path: Path) -> None:
        (tmp_path / "tenant").mkdir()
        (tmp_path / "tenant" / "iam.tf.j2").write_text("x = {{ tenant.nmae }}\n")
        with pytest.raises(TemplateError, match=r"tenant/iam\.tf\.j2.*nmae.*client01"):
            render_files(model, template_dirs=[tmp_path])

    def test_syntax_error_names_file_and_line(self, model: Model, tmp_path: Path) -> None:
        (tmp_path / "cluster").mkdir()
        (tmp_path / "cluster" / "main.tf.j2").write_text("ok\n{% if %}\n")
        with pytest.raises(TemplateError, match=r"cluster/main\.tf\.j2:2"):
            render_files(model, template_dirs=[tmp_path])

    def test_missing_directory_is_an_input_error(self, model: Model, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="template directory not found"):
            render_files(model, template_dirs=[tmp_path / "nope"])


@pytest.mark.parametrize("target", ["local", "aws"])
@pytest.mark.parametrize("engine", ["native", "terraform"])
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_packaged_templates_render_in_canonical_layout(
    make_model: Callable[..., Model], target: str, engine: str, backend: str
) -> None:
    """Packaged output skips the layout pass, so it must already be what `terraform fmt` writes."""
    model = make_model(target=target, engine=engine, backend=backend)
    no_databases = replace(model.tenants[0], databases=(), tags=(("a-very-long-tag-key", "x"),))
    timeouts_off = replace(model.tenants[1], tier="premium", connection_limit=3)
    for variant in (model, replace(model, tenants=(no_databases, timeouts_off, model.tenants[2]))):
        for path, content in render_files(variant).items():
            source = content.decode()
            assert canonical_layout(source) == source, f"{path} is not in canonical layout"


def test_override_templates_are_normalised(model: Model, tmp_path: Path) -> None:
    (tmp_path / "tenant").mkdir()
    (tmp_path / "tenant" / "extra.tf.j2").write_text('locals {\n\n  a = 1   \n  long = "x"\n}\n\n\n')
    assert text(render_files(model, template_dirs=[tmp_path]), "tenants/client01/extra.tf") == (
        'locals {\n  a    = 1\n  long = "x"\n}\n'
    )
