from __future__ import annotations

from typing import Any

import pytest

from tenantctl.terraform.plan_json import REDACTED, normalise_actions, read_plan, redact_plan


@pytest.mark.parametrize(
    ("actions", "expected"),
    [(["create"], "create"), (["update"], "update"), (["delete"], "delete"), (["no-op"], "no-op"),
     (["read"], "read"), (["delete", "create"], "replace"), (["create", "delete"], "replace")],
)
def test_actions_are_normalised(actions: list[str], expected: str) -> None:
    assert normalise_actions(actions) == expected


def test_unknown_action_list_is_an_error() -> None:
    with pytest.raises(ValueError):
        normalise_actions(["explode"])


def change(address: str, actions: list[str], before: Any = None, after: Any = None, **extra: Any) -> dict[str, Any]:
    rtype, name = address.split(".", 1)
    return {"address": address, "mode": "managed", "type": rtype, "name": name,
            "change": {"actions": actions, "before": before, "after": after, **extra}}


def plan_document() -> dict[str, Any]:
    return {
        "terraform_version": "1.0.3",
        "variables": {"master_password": {"value": "hunter2-very-secret"}},
        "resource_changes": [
            change("aws_iam_user.tenant", ["no-op"], {"name": "a"}, {"name": "a"}),
            change("aws_iam_role.access", ["update"], {"name": "r", "assume_role_policy": "x", "tags": {}},
                   {"name": "r", "assume_role_policy": "y", "tags": {}}, after_unknown={}),
            change("aws_rds_cluster.this", ["delete", "create"],
                   {"master_password": "hunter2-very-secret", "engine": "a"},
                   {"master_password": "hunter2-very-secret", "engine": "b"},
                   before_sensitive={"master_password": True}, after_sensitive={"master_password": True}),
            change("aws_iam_policy.p", ["create"], None, {"policy": "{}"}),
        ],
        "output_changes": {"secret": {"actions": ["create"], "after": "hunter2-very-secret",
                                      "after_sensitive": True},
                           "same": {"actions": ["no-op"], "after": "x"}},
        "resource_drift": [change("aws_rds_cluster.this", ["update"], {"master_password": "hunter2-very-secret"},
                                  {"master_password": "hunter2-very-secret"},
                                  before_sensitive={"master_password": True},
                                  after_sensitive={"master_password": True})],
        "some_future_section": {"value": "hunter2-very-secret"},
        "configuration": {"provider_config": {"aws": {"expressions": {
            "access_key": {"constant_value": "hunter2-very-secret"}}}}},
        "planned_values": {"outputs": {"secret": {"sensitive": True, "value": "hunter2-very-secret"}},
                           "root_module": {"resources": [{"address": "aws_rds_cluster.this",
                                                          "values": {"master_password": "hunter2-very-secret"},
                                                          "sensitive_values": {"master_password": True}}]}},
    }


def test_read_plan_keeps_changes_only_sorted_with_changed_attribute_names() -> None:
    summary = read_plan(plan_document())
    assert [(c.address, c.action) for c in summary.changes] == [
        ("aws_iam_policy.p", "create"), ("aws_iam_role.access", "update"), ("aws_rds_cluster.this", "replace")]
    role = summary.changes[1]
    assert role.changed_attributes == ("assume_role_policy",)
    assert summary.changes[2].destroys and not role.destroys
    assert summary.output_changes == {"secret": "create", "same": "no-op"}
    assert summary.count("replace") == 1 and summary.has_changes


def test_summaries_never_carry_values() -> None:
    summary = read_plan(plan_document())
    assert "hunter2" not in repr([c.to_json() for c in summary.changes])


def test_redaction_masks_every_sensitive_value() -> None:
    text = repr(redact_plan(plan_document()))
    assert "hunter2" not in text
    assert REDACTED in text
    redacted = redact_plan(plan_document())
    cluster = redacted["resource_changes"][2]["change"]
    assert cluster["after"] == {"master_password": REDACTED, "engine": "b"}  # non-sensitive values kept
    assert redacted["output_changes"]["same"]["after"] == "x"
