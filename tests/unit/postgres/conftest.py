"""Helpers for the pure tests of the native engine: models from HCL text, observed catalogs by hand."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tenantctl.model import model_from_text
from tenantctl.model.desired import DesiredState, desired_state


def clients(tenants: list[tuple[str, list[str], bool]], *, prefix: str = "") -> str:
    head = 'settings = { allow_private_source_ips = true' + (f', prefix = "{prefix}"' if prefix else "") + " }\n"
    head += "clusters = { main = {} }\n"
    rows = "".join(
        f'  {{ name = "{name}", databases = {{ {", ".join(f"{d} = true" for d in dbs)} }}, '
        f'allowed_ips = ["127.0.0.1/32"], rds_iam_auth = {"true" if iam else "false"} }},\n'
        for name, dbs, iam in tenants)
    return head + "clients = [\n" + rows + "]\n"


@pytest.fixture
def desired_of() -> Callable[..., DesiredState]:
    """``desired_of(("alpha", ["db1"], False), ("beta", ["app"], True))``: (name, databases, iam)."""

    def build(*tenants: tuple[str, list[str], bool], prefix: str = "") -> DesiredState:
        return desired_state(model_from_text(clients(list(tenants), prefix=prefix)))

    return build
