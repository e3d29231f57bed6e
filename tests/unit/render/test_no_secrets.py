"""Rendered stacks never hold a secret: only references to sensitive variables without defaults."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tenantctl.model.types import Model
from tenantctl.render import render_files

Blocks = Callable[[str], list[tuple[str, tuple[str, ...], dict[str, Any]]]]

SECRET_ATTRIBUTE = re.compile(
    r"^\s*\"?(\w*(password|secret|token)\w*|access_key|secret_key)\"?\s*=\s*(?P<value>.+)$", re.IGNORECASE
)
# `x.secret_arn`, `aws_secretsmanager_secret.admin[each.key].id`: a reference to a resource attribute
SECRET_NAMING_REFERENCE = re.compile(r"[a-z_][\w.]*(\[[\w.\"]+\])?(\.\w+(\[\d+\])?)*\.(secret_arn|arn|id)")
SECRET_MEMBER = re.compile(r"(\w*(password|secret|token)\w*)\s*=\s*([^,}\s]+)", re.IGNORECASE)
SECRET_LOOKING_LITERALS = [
    re.compile(r"SCRAM-SHA-256\$"),  # a password verifier
    re.compile(r"\bmd5[0-9a-f]{32}\b"),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"[A-Za-z0-9/+]{40}"),  # AWS secret access key shape
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"postgres(ql)?://[^\s\"/]*:[^\s\"@]*@"),  # credentials inside a URL
]


@pytest.mark.parametrize("target", ["local", "aws"])
@pytest.mark.parametrize("engine", ["native", "terraform"])
def test_no_secret_literals_in_rendered_files(
    make_model: Callable[..., Model], parse_blocks: Blocks, target: str, engine: str
) -> None:
    files = render_files(make_model(target=target, engine=engine))
    references = 0
    for path, content in files.items():
        source = content.decode()
        for line in source.splitlines():
            match = SECRET_ATTRIBUTE.match(line)
            if match:
                value = match.group("value").strip()
                if match.group(1).endswith(("_arn", "_id")) and SECRET_NAMING_REFERENCE.fullmatch(value):
                    continue  # an ARN or id names a secret (the resolver reads it); it holds no secret
                if value.startswith("jsonencode("):  # a secret document: every secret member is a variable
                    members = SECRET_MEMBER.findall(value)
                    assert members and all(v.startswith("var.") for _, _, v in members), f"{path}: {line.strip()}"
                    references += len(members)
                    continue
                assert value.startswith("var.") or value == "true", f"{path}: secret-like literal: {line.strip()}"
                references += value.startswith("var.")
            assert not re.search(r'=\s*"test"', line), f"{path}: placeholder credential: {line.strip()}"
        for pattern in SECRET_LOOKING_LITERALS:
            assert not pattern.search(source), f"{path}: matches {pattern.pattern}"
        for kind, labels, body in parse_blocks(source):
            if kind == "variable" and re.search("password|secret|token", labels[0]):
                assert body.get("sensitive") is True, f"{path}: variable {labels[0]} is not sensitive"
                assert "default" not in body, f"{path}: variable {labels[0]} has a default"
            if kind == "output":
                exposed = re.sub(r"\w*secret_arn\s*=\s*[^,}]+", "", str(body))  # secrets' names, not their values
                assert not re.search("password|secret|token", exposed), f"{path}: output exposes {labels}"
    # The secrets that do exist reach the stacks as references (so the check above was exercised).
    if target == "local" or engine == "terraform":
        assert references > 0
