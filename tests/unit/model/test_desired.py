"""Desired state derived from the model: names, limits, grants, IAM spec."""

from __future__ import annotations

from tenantctl.model import model_from_text
from tenantctl.model.desired import PUBLIC, desired_state

TEXT = """
settings = { prefix = "app_" }
clients = [
  { name = "iam", databases = { one = true, two = false }, allowed_ips = ["3.3.3.3/32"], rds_iam_auth = true,
    tier = "premium", connection_limit = 5 },
  { name = "pwd", databases = { one = true }, allowed_ips = ["3.3.3.3/32"], tags = { team = "x" } },
]
"""


def test_roles_databases_and_grants() -> None:
    desired = desired_state(model_from_text(TEXT))
    iam = desired.tenant("iam")
    assert iam.login_role.name == "app_iam" and iam.owner_role.name == "app_iam_owner"
    assert iam.login_role.member_of == ("app_iam_owner", "rds_iam")
    assert iam.login_role.connection_limit == 5 and not iam.login_role.password_auth
    assert [d.name for d in iam.databases] == ["app_iam_one"]
    assert all(d.owner == "app_iam_owner" for d in iam.databases)
    grants = {(g.role, g.object_type): g.privileges for g in iam.grants}
    assert grants[(PUBLIC, "database")] == () and grants[(PUBLIC, "schema")] == ()
    assert grants[("app_iam", "database")] == ("CONNECT", "TEMPORARY")
    pwd = desired.tenant("pwd")
    assert pwd.login_role.password_auth and pwd.login_role.member_of == ("app_pwd_owner",)
    assert pwd.login_role.connection_limit == 50  # the standard tier's
    assert dict(pwd.iam.tags)["team"] == "x" and dict(pwd.iam.tags)["tenant"] == "pwd"


def test_desired_state_is_deterministic() -> None:
    assert desired_state(model_from_text(TEXT)) == desired_state(model_from_text(TEXT))
