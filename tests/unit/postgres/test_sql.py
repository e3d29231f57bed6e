"""SQL generation of the applier, SCRAM verifiers and markers: safe quoting, allow-lists, formats."""

from __future__ import annotations

import base64
import re

import pytest

from tenantctl.aws.secrets import MemorySecretStore, get_or_create_password
from tenantctl.errors import InputError
from tenantctl.postgres.applier import set_verifier_statement, statements_for
from tenantctl.postgres.catalog import Marker
from tenantctl.postgres.plan import Action
from tenantctl.postgres.scram import scram_verifier, verifier_matches


def render(action: Action, store: MemorySecretStore | None = None) -> list[str]:
    return [s.as_string(None) for s in statements_for(action, store)]


def test_identifiers_are_quoted_never_formatted() -> None:
    evil = 'x"; DROP DATABASE postgres; --'
    [statement] = render(Action("grant_membership", 30, "t", evil, "", {"group": "owner"}))
    assert statement == 'GRANT "owner" TO "x""; DROP DATABASE postgres; --"'


def test_database_privileges_are_authoritative() -> None:
    revoke_only = render(Action("set_database_privileges", 60, "t", "t_app", "", {"grantee": "public",
                                                                                "privileges": []}))
    assert revoke_only == ['REVOKE ALL ON DATABASE "t_app" FROM PUBLIC']
    both = render(Action("set_database_privileges", 60, "t", "t_app", "", {"grantee": "t",
                                                                         "privileges": ["CONNECT", "TEMPORARY"]}))
    assert both == ['REVOKE ALL ON DATABASE "t_app" FROM "t"', 'GRANT CONNECT, TEMPORARY ON DATABASE "t_app" TO "t"']


def test_an_edited_plan_cannot_smuggle_sql_through_privileges_or_parameters() -> None:
    with pytest.raises(InputError):
        render(Action("set_database_privileges", 60, "t", "db", "", {"grantee": "t",
                                                                     "privileges": ["ALL; DROP TABLE x"]}))
    with pytest.raises(InputError):
        render(Action("set_role_setting", 20, "t", "t", "", {"parameter": "search_path", "value": "x"}))
    with pytest.raises(InputError):
        render(Action("drop_everything", 20, "t", "t", "", {}))


def test_password_goes_to_the_server_as_a_verifier_only() -> None:
    store = MemorySecretStore()
    [statement] = render(Action("set_password", 40, "t", "t", "", {"secret": "tenantctl/t/postgres"}), store)
    password = store.values["tenantctl/t/postgres"]
    assert password not in statement
    verifier = re.search(r"'(SCRAM-SHA-256\$[^']+)'", statement)
    assert verifier and verifier_matches(verifier.group(1), password)
    with pytest.raises(ValueError):
        set_verifier_statement("t", "plaintext")


def test_scram_verifier_format_and_matching() -> None:
    verifier = scram_verifier("pencil", salt=b"\x01" * 16)
    iterations, salt, stored, server = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier).groups()  # type: ignore[union-attr]
    assert iterations == "4096" and base64.b64decode(salt) == b"\x01" * 16
    assert len(base64.b64decode(stored)) == 32 and len(base64.b64decode(server)) == 32
    assert verifier_matches(verifier, "pencil") and not verifier_matches(verifier, "pencil2")
    assert scram_verifier("pencil") != scram_verifier("pencil")  # random salt
    assert not verifier_matches("md5abc", "pencil")


def test_stored_password_is_reused_unless_regenerated() -> None:
    store = MemorySecretStore()
    first = get_or_create_password(store, "s", "u")
    assert get_or_create_password(store, "s", "u") == first
    assert get_or_create_password(store, "s", "u", regenerate=True) != first


def test_marker_round_trip() -> None:
    assert Marker.parse(Marker("alpha", "abc").render()) == Marker("alpha", "abc")
    assert Marker.parse("tenantctl tenant=alpha") == Marker("alpha")
    assert Marker.parse("some human comment") is None and Marker.parse(None) is None
