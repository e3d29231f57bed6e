"""Models for the render tests, built through the real clients-file loader."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tenantctl.model import model_from_text
from tenantctl.model.types import Model

SEED_CLIENTS = """\
clients = [
  {
    name = "client01", databases = { db1 = true, db2 = false, db3 = true },
    allowed_ips = ["109.241.200.168/32"], rds_iam_auth = true
  },
  {
    name = "client02", databases = { app = true }, allowed_ips = ["109.241.200.1/32", "8.8.8.0/24"],
    rds_iam_auth = false, tier = "premium", tags = { team = "payments", "cost:center" = "4711" }
  },
  {
    name = "client03", databases = { reports = true }, allowed_ips = ["198.51.200.7/32"],
    rds_iam_auth = true, cluster = "vip"
  },
]
"""

CLUSTERS = """\
clusters = {
  "shared-01" = { min_acu = 0.5, max_acu = 8 }
  vip = { min_acu = 2, max_acu = 16, dedicated = true }
}
"""


def clients_text(
    *, target: str = "local", engine: str = "native", backend: str = "local", clients: str = SEED_CLIENTS,
    extra_settings: str = "",
) -> str:
    backend_block = ('backend = { kind = "s3", bucket = "tf-state", dynamodb_table = "tf-locks" }'
                     if backend == "s3" else "")
    return (
        f'settings = {{\n  target = "{target}"\n  postgres_engine = "{engine}"\n  {backend_block}\n'
        f"  {extra_settings}\n}}\n{CLUSTERS}{clients}"
    )


ModelFactory = Callable[..., Model]


@pytest.fixture
def make_model() -> ModelFactory:
    def make(**kwargs: str) -> Model:
        return model_from_text(clients_text(**kwargs))

    return make


@pytest.fixture
def model(make_model: ModelFactory) -> Model:
    return make_model()


def _unquote(value: object) -> object:
    """python-hcl2 keeps the quotes of string literals; drop them (references stay ``${...}``)."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {str(_unquote(k)): _unquote(v) for k, v in value.items() if not k.startswith("__")}
    return value


Block = tuple[str, tuple[str, ...], dict[str, Any]]


def hcl_blocks(text: str) -> list[Block]:
    """Top-level blocks of an HCL file as (block type, labels, body with literals unquoted)."""
    import hcl2

    blocks: list[Block] = []
    for block_type, entries in hcl2.loads(text).items():
        if block_type.startswith("__"):
            continue
        for entry in entries:
            labels: list[str] = []
            body: object = entry
            while isinstance(body, dict) and "__is_block__" not in body and len(body) == 1:
                (label, body), = body.items()
                labels.append(str(_unquote(label)))
            assert isinstance(body, dict)
            blocks.append((block_type, tuple(labels), _unquote(body)))  # type: ignore[arg-type]
    return blocks


@pytest.fixture
def parse_blocks() -> Callable[[str], list[Block]]:
    return hcl_blocks
