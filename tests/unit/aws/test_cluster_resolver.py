"""The one cluster resolver's logic without sockets: outputs -> connection, per-cluster settings, IAM auth."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tenantctl.aws.clusters import OutputsClusterResolver, iam_token_signer
from tenantctl.aws.session import AwsTarget, client
from tenantctl.errors import BackendError
from tenantctl.model import model_from_text
from tenantctl.postgres.connect import ClusterNotCreatedError

OUTPUTS = {"main": {"endpoint": "main.cluster-abc.eu-west-1.rds.amazonaws.com",
                    "reader_endpoint": "main.cluster-ro-abc.eu-west-1.rds.amazonaws.com", "port": 5432,
                    "admin_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-1"}}
TENANTS = ('clients = [{ name = "t1", databases = { app = true }, allowed_ips = ["3.3.3.3/32"], '
           'rds_iam_auth = true }]\n')


def model(postgres: str = "", target: str = "aws") -> Any:
    return model_from_text(f'settings = {{ target = "{target}"\n postgres = {{ {postgres} }} }}\n'
                           f"clusters = {{ main = {{}} }}\n{TENANTS}")


class Secrets:
    def __init__(self, document: Any = None) -> None:
        self.document = {"username": "tenantctl_admin", "password": "s3cret"} if document is None else document
        self.reads: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.reads.append(SecretId)
        return {"SecretString": json.dumps(self.document)}


def test_outputs_secret_and_ca_make_a_verify_full_connection() -> None:
    secrets = Secrets()
    resolver = OutputsClusterResolver(model('ca_bundle = "/etc/rds.pem"'), OUTPUTS, secrets)
    connection = resolver.resolve("main")
    assert (connection.host, connection.port, connection.admin_user, connection.admin_password) == (
        OUTPUTS["main"]["endpoint"], 5432, "tenantctl_admin", "s3cret")
    assert (connection.sslmode, connection.sslrootcert, connection.connect_address) == (
        "verify-full", "/etc/rds.pem", None)
    assert resolver.resolve("main") is connection and len(secrets.reads) == 1  # one secret read per cluster
    assert "s3cret" not in repr(connection)


def test_a_connect_address_keeps_the_endpoint_name_for_tls() -> None:
    resolver = OutputsClusterResolver(model('ca_bundle = "/etc/rds.pem", connect = { main = "127.0.0.1:15432" }'),
                                      OUTPUTS, Secrets())
    params = resolver.resolve("main").libpq_params()
    assert params == {"host": OUTPUTS["main"]["endpoint"], "hostaddr": "127.0.0.1", "port": 15432,
                      "sslmode": "verify-full", "sslrootcert": "/etc/rds.pem"}


def test_the_local_tunnel_is_the_connect_address_and_the_peer_address() -> None:
    seen: list[tuple[str, tuple[str, ...]]] = []

    def tunnel(cluster: str, names: tuple[str, ...]) -> tuple[str, int]:
        seen.append((cluster, names))
        return "127.0.0.1", 40001

    resolver = OutputsClusterResolver(model(target="local"), OUTPUTS, Secrets(), default_ca="/p/ca.pem",
                                      tunnel=tunnel)
    connection = resolver.resolve("main")
    assert seen == [("main", (OUTPUTS["main"]["endpoint"], OUTPUTS["main"]["reader_endpoint"]))]
    assert (connection.connect_address, connection.connect_port, connection.sslrootcert) == (
        "127.0.0.1", 40001, "/p/ca.pem")
    assert connection.peer_params() == {"host": OUTPUTS["main"]["endpoint"], "hostaddr": "127.0.0.1",
                                        "port": 40001, "sslmode": "require"}


@pytest.mark.parametrize(("settings", "outputs", "secrets", "expected", "hint"), [
    ("", OUTPUTS, Secrets(), "cluster main: TLS verify-full needs a CA bundle", "global-bundle.pem"),
    ('ca_bundle = "/x.pem"', {}, Secrets(), "cluster main: no endpoint recorded", "tenantctl apply"),
    ('ca_bundle = "/x.pem"', {"main": {**OUTPUTS["main"], "admin_secret_arn": None}}, Secrets(),
     "recorded no admin secret", "manage_master_user_password"),
    ('ca_bundle = "/x.pem"', OUTPUTS, Secrets({"password": "no user"}), "is not an RDS admin secret", None),
])
def test_bad_settings_name_the_cluster_and_what_to_set(settings: str, outputs: dict[str, Any], secrets: Secrets,
                                                       expected: str, hint: str | None) -> None:
    with pytest.raises(BackendError) as refused:
        OutputsClusterResolver(model(settings), outputs, secrets).resolve("main")
    assert expected in refused.value.message and "main" in refused.value.message
    if hint:
        assert hint in (refused.value.hint or "")
    if not outputs:
        assert isinstance(refused.value, ClusterNotCreatedError)


def test_iam_authentication_signs_a_token_and_reads_no_secret() -> None:
    secrets = Secrets()
    signed: list[tuple[str, int, str]] = []

    def signer(endpoint: str, port: int, user: str) -> str:
        signed.append((endpoint, port, user))
        return "token-for-" + user

    resolver = OutputsClusterResolver(
        model('ca_bundle = "/x.pem", iam_auth = true, iam_user = "tenantctl_iam"'), OUTPUTS, secrets,
        token_signer=signer)
    connection = resolver.resolve("main")
    assert (connection.admin_user, connection.admin_password) == ("tenantctl_iam", "token-for-tenantctl_iam")
    assert signed == [(OUTPUTS["main"]["endpoint"], 5432, "tenantctl_iam")] and secrets.reads == []


def test_the_boto3_signer_makes_an_rds_connect_token_offline() -> None:
    rds = client(AwsTarget("eu-west-1", "http://127.0.0.1:1"), "rds")  # signing is local: nothing is called
    token = iam_token_signer(rds, "eu-west-1")("main.cluster-abc.eu-west-1.rds.amazonaws.com", 5432, "tenantctl_iam")
    assert token.startswith("main.cluster-abc.eu-west-1.rds.amazonaws.com:5432/?Action=connect")
    assert "DBUser=tenantctl_iam" in token and "X-Amz-Signature=" in token


def test_bad_iam_user_is_an_input_error() -> None:
    from tenantctl.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as failed:
        model('iam_auth = true, iam_user = "Robert; DROP"')
    assert [d.path for d in failed.value.diagnostics] == ["settings.postgres.iam_user"]
