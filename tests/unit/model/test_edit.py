"""Adding and removing a tenant edits only its block: every other byte of the file stays as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenantctl.errors import InputError
from tenantctl.model import model_from_text
from tenantctl.model.edit import TenantBlock, add_tenant, remove_tenant

EXAMPLE = (Path(__file__).resolve().parents[3] / "clients.tfvars.example").read_text()
NEW = TenantBlock("client09", ("db1", "db2"), ("3.3.3.3/32",), True, "basic", "shared-01")


def test_add_appends_a_formatted_block_and_keeps_every_other_byte() -> None:
    edited = add_tenant(EXAMPLE, "clients.tfvars", NEW)
    block = (
        "  {\n"
        '    name         = "client09"\n'
        "    databases    = { db1 = true, db2 = true }\n"
        '    allowed_ips  = ["3.3.3.3/32"]\n'
        "    rds_iam_auth = true\n"
        '    tier         = "basic"\n'
        '    cluster      = "shared-01"\n'
        "  },\n"
    )
    closing = EXAMPLE.rindex("]")
    assert edited == EXAMPLE[:closing] + block + EXAMPLE[closing:]
    assert "client09" in {t.name for t in model_from_text(edited).tenants}


def test_remove_restores_the_original_bytes() -> None:
    assert remove_tenant(add_tenant(EXAMPLE, "clients.tfvars", NEW), "clients.tfvars", "client09") == EXAMPLE


def test_remove_a_middle_tenant_keeps_the_others_and_comments() -> None:
    edited = remove_tenant(EXAMPLE, "clients.tfvars", "client02")
    model = model_from_text(edited)
    assert [t.name for t in model.tenants] == ["acme", "client01"]
    assert edited.startswith(EXAMPLE[: EXAMPLE.index('  {\n    name         = "client02"')])
    assert "# tenantctl clients file" in edited


def test_add_after_an_element_without_trailing_comma() -> None:
    text = 'clients = [\n  { name = "a", databases = { x = true }, allowed_ips = ["3.3.3.3/32"] }\n]\n'
    edited = add_tenant(text, "clients.tfvars", NEW)
    assert edited.startswith(text[: text.index("}\n]") + 1] + ",\n")
    assert [t.name for t in model_from_text(edited.replace('cluster      = "shared-01"', "")).tenants] == [
        "a", "client09"]


def test_add_to_empty_list() -> None:
    edited = add_tenant("clients = []\n", "clients.tfvars", NEW)
    assert model_from_text(edited.replace('cluster      = "shared-01"', "")).tenants[0].name == "client09"


def test_json_add_and_remove() -> None:
    original = json.dumps({"clients": [{"name": "a", "databases": {"x": True}, "allowed_ips": ["3.3.3.3/32"]}]},
                          indent=2) + "\n"
    edited = add_tenant(original, "clients.tfvars.json", NEW)
    assert [c["name"] for c in json.loads(edited)["clients"]] == ["a", "client09"]
    assert remove_tenant(edited, "clients.tfvars.json", "client09") == original
    only_new = remove_tenant(edited, "clients.tfvars.json", "a")
    assert [c["name"] for c in json.loads(only_new)["clients"]] == ["client09"]


def test_duplicate_and_unknown_names_are_errors() -> None:
    with pytest.raises(InputError, match=r"tenant `client01` is already in clients\.tfvars"):
        add_tenant(EXAMPLE, "clients.tfvars", TenantBlock("client01", ("db1",), ("3.3.3.3/32",), False))
    with pytest.raises(InputError, match=r"tenant `nobody` is not in clients\.tfvars"):
        remove_tenant(EXAMPLE, "clients.tfvars", "nobody")


def test_unparseable_file_is_refused() -> None:
    with pytest.raises(InputError, match="cannot edit a file that does not parse"):
        add_tenant("clients = [", "clients.tfvars", NEW)
