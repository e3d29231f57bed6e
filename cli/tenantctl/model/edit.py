"""Edit a clients file as text: add or remove one tenant and leave every other byte as it was.

Platform engineers keep comments and formatting in their clients file, and reviewers read its diff,
so `tenantctl onboard`/`offboard` never re-serialise the file: they splice one block in or out at
offsets the reader recorded. The caller validates the result before writing it (atomically).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tenantctl.errors import InputError
from tenantctl.model.hcl import HclSyntaxError, Node, dumps_hcl_string, is_json_path, parse_hcl, parse_json

_BLANK = re.compile(r"[ \t]*")
_SKIP_TO_COMMA = re.compile(r"(?:[ \t\r\n]+|#[^\n]*|//[^\n]*|/\*.*?\*/)*", re.S)
_REST_OF_LINE = re.compile(r"[ \t]*(?:(?:#|//)[^\n]*)?\r?\n")


@dataclass(frozen=True)
class TenantBlock:
    """The fields `tenantctl onboard` writes for a new tenant."""

    name: str
    databases: tuple[str, ...]
    allowed_ips: tuple[str, ...]
    rds_iam_auth: bool
    tier: str | None = None
    cluster: str | None = None

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "name": self.name,
            "databases": {db: True for db in self.databases},
            "allowed_ips": list(self.allowed_ips),
            "rds_iam_auth": self.rds_iam_auth,
        }
        if self.tier:
            data["tier"] = self.tier
        if self.cluster:
            data["cluster"] = self.cluster
        return data


def _parse(text: str, filename: str) -> Node:
    try:
        return parse_json(text) if is_json_path(filename) else parse_hcl(text)
    except HclSyntaxError as error:
        raise InputError(f"{filename}: cannot edit a file that does not parse: {error.message}",
                         hint=f"run `tenantctl validate {filename}`") from None


def _clients(root: Node, filename: str) -> Node:
    clients: Node | None = root.value.get("clients")
    if clients is None or clients.kind != "list":
        raise InputError(f"{filename} has no `clients = [ ... ]` list to edit")
    return clients


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _indent_of(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    match = _BLANK.match(text, start)
    assert match is not None
    return match.group() if match.end() == pos else ""


_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def hcl_key(name: str) -> str:
    """An HCL object key for ``name``: bare when it is an identifier, else a quoted string. Either way the
    result is one key and cannot close the object or start another one."""
    return name if _BARE_KEY.fullmatch(name) else dumps_hcl_string(name)


def _hcl_block(block: TenantBlock, indent: str) -> str:
    inner = indent + "  "
    fields: list[tuple[str, str]] = [
        ("name", dumps_hcl_string(block.name)),
        ("databases", "{ " + ", ".join(f"{hcl_key(db)} = true" for db in block.databases) + " }"),
        ("allowed_ips", "[" + ", ".join(dumps_hcl_string(ip) for ip in block.allowed_ips) + "]"),
        ("rds_iam_auth", "true" if block.rds_iam_auth else "false"),
    ]
    if block.tier:
        fields.append(("tier", dumps_hcl_string(block.tier)))
    if block.cluster:
        fields.append(("cluster", dumps_hcl_string(block.cluster)))
    width = max(len(key) for key, _ in fields)
    body = "".join(f"{inner}{key.ljust(width)} = {value}\n" for key, value in fields)
    return f"{indent}{{\n{body}{indent}}},\n"


def _json_block(block: TenantBlock, indent: str) -> str:
    lines = json.dumps(block.as_dict(), indent=2).split("\n")
    return "\n".join(indent + line for line in lines)


def add_tenant(text: str, filename: str, block: TenantBlock) -> str:
    """Return ``text`` with ``block`` appended to the clients list; every other byte is unchanged."""
    root = _parse(text, filename)
    clients = _clients(root, filename)
    names = {item.value["name"].value for item in clients.value
             if item.kind == "object" and "name" in item.value and item.value["name"].kind == "string"}
    if block.name in names:
        raise InputError(f"tenant `{block.name}` is already in {filename}")
    close = clients.end - 1  # offset of the closing `]`
    items: list[Node] = clients.value
    list_indent = _leading_blank(text, clients.pos)
    first_indent = _indent_of(text, items[0].pos) if items else ""
    element_indent = first_indent or list_indent + "  "
    if is_json_path(filename):
        rendered = _json_block(block, element_indent)
        if items:
            return text[: items[-1].end] + ",\n" + rendered + text[items[-1].end :]
        return text[: clients.pos + 1] + "\n" + rendered + "\n" + list_indent + text[close:]
    rendered = _hcl_block(block, element_indent)
    if items:
        after_last = _SKIP_TO_COMMA.match(text, items[-1].end)
        assert after_last is not None
        if text[after_last.end() : after_last.end() + 1] != ",":
            text = text[: items[-1].end] + "," + text[items[-1].end :]
            close += 1
    if _indent_of(text, close) or text[_line_start(text, close) : close] == "":
        at = _line_start(text, close)
        return text[:at] + rendered + text[at:]
    return text[:close] + "\n" + rendered + list_indent + text[close:]


def _leading_blank(text: str, pos: int) -> str:
    start = _line_start(text, pos)
    match = _BLANK.match(text, start)
    assert match is not None
    return match.group()


def remove_tenant(text: str, filename: str, name: str) -> str:
    """Return ``text`` without tenant ``name``'s block (and its separator); every other byte is unchanged."""
    root = _parse(text, filename)
    clients = _clients(root, filename)
    items: list[Node] = clients.value
    matches = [i for i, item in enumerate(items)
               if item.kind == "object" and "name" in item.value and item.value["name"].value == name]
    if not matches:
        raise InputError(f"tenant `{name}` is not in {filename}")
    index = matches[0]
    item = items[index]
    start, end = item.pos, item.end
    comma = _SKIP_TO_COMMA.match(text, end)
    assert comma is not None
    if text[comma.end() : comma.end() + 1] == ",":
        end = comma.end() + 1
    elif is_json_path(filename) and index > 0:
        start = items[index - 1].end  # the last element: drop the comma before it instead
    if _indent_of(text, start) or _line_start(text, start) == start:
        rest = _REST_OF_LINE.match(text, end)
        if rest is not None:
            start, end = _line_start(text, start), rest.end()
    return text[:start] + text[end:]


def set_tenant_cluster(text: str, filename: str, name: str, cluster: str) -> str:
    """Return ``text`` with tenant ``name`` pinned to ``cluster`` (its `cluster` value replaced, or added
    as the block's first field); every other byte is unchanged."""
    root = _parse(text, filename)
    items: list[Node] = _clients(root, filename).value
    item = next((i for i in items if i.kind == "object" and "name" in i.value and i.value["name"].value == name),
                None)
    if item is None:
        raise InputError(f"tenant `{name}` is not in {filename}")
    value = json.dumps(cluster) if is_json_path(filename) else dumps_hcl_string(cluster)
    existing: Node | None = item.value.get("cluster")
    if existing is not None:
        return text[: existing.pos] + value + text[existing.end :]
    if is_json_path(filename):
        return text[: item.pos + 1] + f' "cluster": {value},' + text[item.pos + 1 :]
    name_key = (item.key_pos or {}).get("name", item.value["name"].pos)
    block = text[item.pos : item.end]
    if "\n" in block:
        indent = _indent_of(text, name_key) or "    "
        return text[: item.pos + 1] + f"\n{indent}cluster = {value}" + text[item.pos + 1 :]
    return text[: item.pos + 1] + f" cluster = {value}," + text[item.pos + 1 :]
