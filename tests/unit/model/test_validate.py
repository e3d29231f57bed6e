"""Every validation rule, each with a failing input and its exact message."""

from __future__ import annotations

import pytest

from tenantctl.errors import ValidationFailed
from tenantctl.model import model_from_text
from tenantctl.model.types import Model


def tenant(name: str = "client01", databases: str = "{ db1 = true }", ips: str = '["109.241.200.168/32"]',
           extra: str = "rds_iam_auth = true") -> str:
    return f'  {{\n    name = "{name}"\n    databases = {databases}\n    allowed_ips = {ips}\n    {extra}\n  }},\n'


def clients(*tenants: str, head: str = "") -> str:
    return head + "clients = [\n" + "".join(tenants) + "]\n"


def problems(text: str, filename: str = "clients.tfvars") -> list[str]:
    with pytest.raises(ValidationFailed) as raised:
        model_from_text(text, filename)
    return [str(d) for d in raised.value.diagnostics]


def test_valid_file_builds_a_sorted_model() -> None:
    model = model_from_text(clients(tenant("zeta"), tenant("alpha", extra="tier = \"premium\"")))
    assert isinstance(model, Model)
    assert [t.name for t in model.tenants] == ["alpha", "zeta"]
    alpha = model.tenant("alpha")
    assert (alpha.tier, alpha.rds_iam_auth, alpha.databases) == ("premium", False, ("db1",))
    assert [c.name for c in model.clusters] == ["shared-01"]
    assert all(t.cluster == "shared-01" for t in model.tenants)


def test_invalid_tenant_name() -> None:
    assert problems(clients(tenant("Client-1"))) == [
        'clients.tfvars:3:12: clients[0].name: "Client-1" is not a valid tenant name: use lowercase letters, '
        "digits and `_`, starting with a letter (it names Postgres roles and IAM users)"
    ]


@pytest.mark.parametrize("name", ["postgres", "template0", "template1", "rdsadmin", "public", "rds_x", "pg_x"])
def test_reserved_tenant_names(name: str) -> None:
    assert problems(clients(tenant(name))) == [
        f'clients.tfvars:3:12: clients[0].name: "{name}" is reserved (postgres, template0/1, rdsadmin, public, '
        "rds_*, pg_* and tenantctl's own names cannot name a tenant)"
    ]


def test_physical_database_name_too_long() -> None:
    name = "t" * 40
    assert problems(clients(tenant(name, databases="{ " + "d" * 30 + " = true }"))) == [
        f"clients.tfvars:4:19: clients[0].databases.{'d' * 30}: physical database name `{name}_{'d' * 30}` is "
        "71 bytes; Postgres allows 63"
    ]


def test_tenant_name_too_long_for_owner_role() -> None:
    name = "t" * 60
    assert problems(clients(tenant(name))) == [
        f"clients.tfvars:3:12: clients[0].name: too long: its owner role `{name}_owner` would be 66 bytes "
        "(Postgres allows 63)"
    ]


def test_duplicate_tenant_names() -> None:
    assert problems(clients(tenant("client01"), tenant("client01"))) == [
        "clients.tfvars:9:12: clients[1].name: duplicate tenant name `client01` (first defined at "
        "clients.tfvars:2:3)"
    ]


def test_duplicate_physical_database_names() -> None:
    text = clients(tenant("a_b", databases="{ c = true }"), tenant("a", databases="{ b_c = true }"))
    assert problems(text) == [
        "clients.tfvars:10:19: clients[1].databases.b_c: physical database name `a_b_c` is also produced by "
        "tenant `a_b`"
    ]


def test_role_name_collision() -> None:
    assert problems(clients(tenant("shop"), tenant("shop_owner"))) == [
        "clients.tfvars:9:12: clients[1].name: tenant `shop_owner` needs role `shop_owner`, which tenant `shop` "
        "already uses"
    ]


def test_cidr_syntax() -> None:
    assert problems(clients(tenant(ips='["300.1.1.1/32"]'))) == [
        'clients.tfvars:5:20: clients[0].allowed_ips[0]: "300.1.1.1/32" is not a CIDR such as 203.0.113.7/32'
    ]


def test_cidr_host_bits_set() -> None:
    assert problems(clients(tenant(ips='["109.241.200.168/24"]'))) == [
        'clients.tfvars:5:20: clients[0].allowed_ips[0]: "109.241.200.168/24" has host bits set; did you mean '
        '"109.241.200.0/24"?'
    ]


def test_private_cidr_for_iam_auth_tenant() -> None:
    assert problems(clients(tenant(ips='["10.1.0.0/16"]'))) == [
        'clients.tfvars:5:20: clients[0].allowed_ips[0]: "10.1.0.0/16" is a private or reserved range: '
        "aws:SourceIp never matches it, so IAM AssumeRole would always be denied (set "
        "settings.allow_private_source_ips = true to allow it anyway)"
    ]


def test_private_cidr_allowed_explicitly_or_without_iam_auth() -> None:
    head = "settings = { allow_private_source_ips = true }\n"
    assert model_from_text(clients(tenant(ips='["10.1.0.0/16"]'), head=head)).tenants[0].allowed_ips == (
        "10.1.0.0/16",)
    no_iam = tenant(ips='["10.1.0.0/16"]', extra="rds_iam_auth = false")
    assert model_from_text(clients(no_iam)).tenants[0].allowed_ips == ("10.1.0.0/16",)


def test_empty_allowed_ips() -> None:
    assert problems(clients(tenant(ips="[]"))) == [
        "clients.tfvars:5:19: clients[0].allowed_ips: needs at least one CIDR: the IAM trust policy and the proxy "
        "allow nothing otherwise"
    ]


def test_unknown_cluster_reference() -> None:
    head = 'clusters = {\n  shared-01 = {}\n  shared-02 = {}\n}\n'
    assert problems(clients(tenant(extra='cluster = "shared-03"'), head=head)) == [
        "clients.tfvars:10:15: clients[0].cluster: unknown cluster `shared-03` (did you mean `shared-02`?); "
        "clusters: shared-01, shared-02"
    ]


def test_cluster_capacity() -> None:
    head = "clusters = {\n  shared-01 = { max_tenants = 1 }\n}\n"
    assert problems(clients(tenant("a"), tenant("b"), head=head)) == [
        "clients.tfvars:2:31: clusters.shared-01.max_tenants: 2 tenants are placed on this cluster, more than its "
        "max_tenants (1); add a cluster or pin tenants to another one with `cluster = ...`"
    ]


def test_tenant_with_no_database() -> None:
    assert problems(clients(tenant(databases="{}"))) == [
        "clients.tfvars:4:17: clients[0].databases: the tenant has no database: list at least one, e.g. "
        "`{ app = true }`"
    ]


def test_tenant_with_every_database_disabled() -> None:
    assert problems(clients(tenant(databases="{ db1 = false }"))) == [
        "clients.tfvars:4:17: clients[0].databases: the tenant has no database enabled (every database is set to "
        "false)"
    ]


def test_dedicated_cluster_shared_by_two_tenants() -> None:
    head = "clusters = {\n  shared-01 = {}\n  vip = { dedicated = true }\n}\n"
    text = clients(tenant("a", extra='cluster = "vip"'), tenant("b", extra='cluster = "vip"'), head=head)
    assert problems(text) == [
        "clients.tfvars:16:15: clients[1].cluster: cluster `vip` is dedicated to tenant `a` (clients.tfvars:6:3); "
        "a dedicated cluster holds exactly one tenant"
    ]


def test_dedicated_cluster_is_never_chosen_by_placement() -> None:
    head = "clusters = {\n  shared-01 = {}\n  vip = { dedicated = true }\n}\n"
    model = model_from_text(clients(*(tenant(f"t{i}") for i in range(30)), head=head))
    assert {t.cluster for t in model.tenants} == {"shared-01"}


def test_unknown_keys_with_did_you_mean() -> None:
    head = 'settings = { regoin = "eu-west-1" }\nclusterz = {}\n'
    assert problems(clients(tenant(extra="rds_iam_ath = true"), head=head)) == [
        "clients.tfvars:1:14: settings.regoin: unknown key (did you mean `region`?); allowed: region, account_id, "
        "prefix, postgres_engine, target, allow_private_source_ips, default_tier, backend, postgres, "
        "aws_endpoint_url, archive",
        "clients.tfvars:2:1: clusterz: unknown key (did you mean `clusters`?); allowed: clients, clusters, "
        "settings, tiers",
        "clients.tfvars:8:5: clients[0].rds_iam_ath: unknown key (did you mean `rds_iam_auth`?); allowed: name, "
        "databases, allowed_ips, rds_iam_auth, tier, cluster, connection_limit, tags",
    ]


def test_wrong_types_and_enums() -> None:
    head = 'settings = { target = "gcp", postgres_engine = "native" }\n'
    text = clients(tenant(extra='rds_iam_auth = "yes"\n    tier = "gold"\n    connection_limit = 0'), head=head)
    assert problems(text) == [
        "clients.tfvars:1:23: settings.target: must be one of local, aws, not `gcp`",
        'clients.tfvars:7:20: clients[0].rds_iam_auth: must be true or false, not the string "yes"',
        "clients.tfvars:8:12: clients[0].tier: unknown tier `gold`; tiers: basic, premium, standard",
        "clients.tfvars:9:24: clients[0].connection_limit: must be between 1 and 10000, not 0",
    ]


def test_missing_required_keys_and_clients() -> None:
    assert problems('clients = [\n  { name = "a" },\n]\n') == [
        "clients.tfvars:2:3: clients[0]: missing required key `allowed_ips`",
        "clients.tfvars:2:3: clients[0]: missing required key `databases`",
    ]
    assert problems("settings = {}\n") == [
        "clients.tfvars:1:1: clients: missing: the file must define `clients = [ ... ]`"
    ]


def test_syntax_error_is_a_diagnostic_with_position() -> None:
    assert problems('clients = [\n  { name = "a" databases = ,\n]\n') == [
        "clients.tfvars:2:28: expected a value, found ','"
    ]


def test_every_problem_is_collected() -> None:
    text = clients(tenant("Bad"), tenant(ips='["1.2.3.4/8"]'), tenant("c", databases="{}"))
    assert len(problems(text)) == 3


def test_json_file_gets_the_same_rules_with_positions() -> None:
    text = '{\n  "clients": [\n    {"name": "Bad", "databases": {"db": true}, "allowed_ips": ["1.2.3.4/32"]}\n  ]\n}\n'
    assert problems(text, "clients.tfvars.json") == [
        'clients.tfvars.json:3:14: clients[0].name: "Bad" is not a valid tenant name: use lowercase letters, '
        "digits and `_`, starting with a letter (it names Postgres roles and IAM users)"
    ]


def test_custom_tiers_and_settings() -> None:
    head = ('settings = { prefix = "acme_", region = "us-east-1", account_id = "111122223333", target = "aws" }\n'
            'tiers = { gold = { connection_limit = 7 } }\n')
    model = model_from_text(clients(tenant(extra='tier = "gold"'), head=head))
    assert model.settings.prefix == "acme_" and model.settings.target == "aws"
    gold = model.tier("gold")
    assert gold.connection_limit == 7 and gold.statement_timeout_ms == model.tier("standard").statement_timeout_ms


def test_s3_backend_needs_bucket_and_table() -> None:
    head = 'settings = { backend = { kind = "s3" } }\n'
    assert problems(clients(tenant(), head=head)) == [
        "clients.tfvars:1:24: settings.backend: an s3 backend needs `bucket`",
        "clients.tfvars:1:24: settings.backend: an s3 backend needs `dynamodb_table`",
    ]


@pytest.mark.parametrize("name", ["client01_db1_", "client__01", "a__b_"])
def test_tenant_names_cannot_reach_into_the_archive_namespace(name: str) -> None:
    (problem,) = problems(clients(tenant(name)))
    assert problem.startswith(f'clients.tfvars:3:12: clients[0].name: "{name}" cannot contain `__` or end with `_`')
    assert "<database>__archived_<date>" in problem


def test_the_archive_takeover_names_are_refused() -> None:
    # tenant `client01_db1_` + database `archived_20261203` -> `client01_db1__archived_20261203`, the archive
    # of client01's db1: refused on the name, whatever the database is called.
    text = clients(tenant("client01_db1_", databases="{ archived_20261203 = true }"))
    assert any("cannot contain `__` or end with `_`" in p for p in problems(text))
    (problem,) = problems(clients(tenant("client02", databases="{ db1__archived_x = true }")))
    assert 'clients[0].databases.db1__archived_x: "db1__archived_x" cannot contain `__`' in problem
    assert problems(clients(tenant("client02"), head='settings = { prefix = "acme__" }\n'))[0].endswith(
        "settings.prefix: `acme__` is not valid: expected lowercase letters, digits and `_`, starting with a "
        "letter, no `__` (reserved for archive names) (at most 20 characters)")


def test_tags_hold_printable_text_only() -> None:
    (problem,) = problems(clients(tenant(extra='tags = { team = "a\\nb" }')))
    assert "clients[0].tags.team: tags hold printable text only" in problem


@pytest.mark.parametrize("location", ["s3://", "s3://B", "s3://ab", "https://bucket/x", "gs://bucket/x", " /x",
                                      "s3:/bucket/x"])
def test_an_archive_location_is_s3_or_a_directory(location: str) -> None:
    found = problems(clients(tenant(), head=f'settings = {{ archive = "{location}" }}\n'))
    assert len(found) == 1 and "settings.archive" in found[0] and "s3://BUCKET/PREFIX" in found[0], found


@pytest.mark.parametrize("location", ["s3://my-archive/tenantctl", "s3://my.archive", "/srv/archive", "archive",
                                      "./dumps dir"])
def test_good_archive_locations_are_kept(location: str) -> None:
    model = model_from_text(clients(tenant(), head=f'settings = {{ archive = "{location}" }}\n'))
    assert model.settings.archive == location


@pytest.mark.parametrize(("text", "path"), [
    ('postgres = { iam_auth = "yes" }', "settings.postgres.iam_auth"),
    ('postgres = { iam_user = "Admin" }', "settings.postgres.iam_user"),
    ('postgres = { connect = { main = "10.0.0.1" } }', "settings.postgres.connect.main"),
    ('postgres = { ssl_mode = "verify" }', "settings.postgres.ssl_mode"),
])
def test_bad_postgres_access_settings_name_the_field(text: str, path: str) -> None:
    found = problems(clients(tenant(), head=f"settings = {{ {text} }}\n"))
    assert len(found) == 1 and path in found[0], found
