"""Check rendered Terraform against a provider schema, statically (no provider binary needed).

The aws-target stacks need hashicorp/aws >= 4.61, which cannot be installed everywhere tenantctl is
developed; this checks every ``resource``, ``provider`` and ``backend "s3"`` block of a rendered stack
against the schema read from the provider's source (``tests/data/schemas/aws_provider_schema.json``:
v6.58.0, with what differs at v4.61.0), for either end of the supported range: argument names, required
arguments, nested blocks written as blocks and attributes as attributes, literal enum values, arguments
removed or deprecated. The Postgres provider's blocks are checked the same way against its schema.

The HCL reader here is structural and small: it knows strings, heredocs, comments and brackets, and
records, for each block, its attributes (literal values: strings, numbers, bools, objects and lists of
them; anything else is an expression) and nested blocks. It reads what tenantctl renders (``terraform
fmt`` clean); it is not a general HCL parser. Values a resource takes from ``each.value.<field>`` with
``for_each = local.<map>`` are checked for every entry of that map (the cluster stack writes each
cluster's capacities there), so value checks (enums, numeric ranges) see what Terraform will see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

META_ARGUMENTS = frozenset({"count", "for_each", "provider", "depends_on"})
META_BLOCKS = frozenset({"lifecycle", "provisioner", "connection", "dynamic"})
VERSIONS = ("4.61.0", "6.58.0")


@dataclass(frozen=True)
class Expr:
    """A value that is not a literal (a reference, a function call, a template with ``${}``)."""

    text: str


Value = str | int | float | bool | dict[str, "Value"] | list["Value"] | Expr | None


@dataclass
class Block:
    kind: str  # resource, provider, backend, terraform, <nested block name>, ...
    labels: tuple[str, ...]
    line: int
    attributes: dict[str, tuple[int, Value]] = field(default_factory=dict)  # name -> (line, value)
    blocks: list[Block] = field(default_factory=list)

    @property
    def address(self) -> str:
        return ".".join((self.kind, *self.labels))


@dataclass(frozen=True)
class SchemaProblem:
    file: str
    line: int
    where: str
    message: str
    version: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.where}: {self.message} (provider {self.version})"


_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # a string
    r"|<<-?(\w+)\n.*?\n\s*\1\n"  # a heredoc
    r"|#[^\n]*|//[^\n]*|/\*.*?\*/"  # comments
    r'|[{}\[\]()=\n]|[^\s{}\[\]()="#/]+|/', re.S)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def parse(text: str) -> list[Block]:
    """Top-level blocks of one file."""
    tokens = [(m.group(0), text.count("\n", 0, m.start()) + 1) for m in _TOKEN.finditer(text)
              if not m.group(0).startswith(("#", "//", "/*"))]
    root = Block("", (), 0)
    _parse_body(tokens, 0, root, top=True)
    return root.blocks


def _parse_body(tokens: list[tuple[str, int]], index: int, block: Block, *, top: bool = False) -> int:
    while index < len(tokens):
        token, line = tokens[index]
        if token == "\n":
            index += 1
            continue
        if token == "}":
            return index + 1
        if not _IDENT.match(token):
            index += 1
            continue
        following = tokens[index + 1][0] if index + 1 < len(tokens) else ""
        if following == "=":
            end, value = _value(tokens, index + 2)
            block.attributes[token] = (line, value)
            index = end
            continue
        labels: list[str] = []
        cursor = index + 1
        while cursor < len(tokens) and tokens[cursor][0] not in ("{", "\n", "="):
            labels.append(tokens[cursor][0].strip('"'))
            cursor += 1
        if cursor < len(tokens) and tokens[cursor][0] == "{":
            child = Block(token, tuple(labels), line)
            block.blocks.append(child)
            index = _parse_body(tokens, cursor + 1, child)
        else:
            index = cursor
    return index


def _value(tokens: list[tuple[str, int]], index: int) -> tuple[int, Value]:
    """One value starting at ``index``: where it ends, and the value (an ``Expr`` unless it is literal)."""
    while index < len(tokens) and tokens[index][0] == "\n":
        index += 1
    start = index
    token = tokens[index][0] if index < len(tokens) else ""
    if token in ("{", "["):
        end, parsed = (_object if token == "{" else _list)(tokens, index + 1)
        if _ends_here(tokens, end):
            return end, parsed
    elif _ends_here(tokens, index + 1):
        literal = _literal(token)
        if literal is not None:
            return index + 1, literal
    end = _skip_expression(tokens, start)
    return end, Expr(" ".join(t for t, _ in tokens[start:end] if t != "\n"))


def _literal(token: str) -> Value:
    if token.startswith('"') and token.endswith('"') and len(token) >= 2 and "${" not in token:
        return token[1:-1]
    if token in ("true", "false"):
        return token == "true"
    if token == "null":
        return None
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if re.fullmatch(r"-?\d+\.\d*(?:[eE][-+]?\d+)?", token):
        return float(token)
    return Expr(token)


def _ends_here(tokens: list[tuple[str, int]], index: int) -> bool:
    """Whether a value that stopped at ``index`` is the whole expression (not ``{...}.x`` or ``a + b``)."""
    return index >= len(tokens) or tokens[index][0] in ("\n", "}", "]", ",", ")")


def _object(tokens: list[tuple[str, int]], index: int) -> tuple[int, Value]:
    entries: dict[str, Value] = {}
    while index < len(tokens):
        token = tokens[index][0]
        if token in ("\n", ","):
            index += 1
            continue
        if token == "}":
            return index + 1, entries
        if index + 1 < len(tokens) and tokens[index + 1][0] in ("=", ":"):
            end, value = _value(tokens, index + 2)
            entries[token.strip('"')] = value
            index = end
            continue
        return _skip_expression(tokens, index, depth=1), Expr("{...}")  # a for expression or the like
    return index, entries


def _list(tokens: list[tuple[str, int]], index: int) -> tuple[int, Value]:
    items: list[Value] = []
    while index < len(tokens):
        token = tokens[index][0]
        if token in ("\n", ","):
            index += 1
            continue
        if token == "]":
            return index + 1, items
        if token.endswith(",") and token != ",":  # a bare word swallowed its comma: 1, true,
            items.append(_literal(token[:-1]))
            index += 1
            continue
        index, item = _value(tokens, index)
        items.append(item)
    return index, items


def _skip_expression(tokens: list[tuple[str, int]], index: int, depth: int = 0) -> int:
    """Past the end of an expression (the newline or closing bracket at its own depth)."""
    target = depth
    while index < len(tokens):
        token = tokens[index][0]
        if token in ("{", "[", "("):
            depth += 1
        elif token in ("}", "]", ")"):
            if depth == 0:
                return index
            depth -= 1
            if depth < target:
                return index + 1
        elif token == "\n" and depth == 0:
            return index
        index += 1
    return index


# --- schemas -------------------------------------------------------------------------------------

def normalize_postgres_schema(document: dict[str, Any]) -> dict[str, Any]:
    """The cyrilgdn provider's schema (attributes at the top level, nested blocks under ``block``) in the
    shape of the AWS one: ``{"provider": ..., "resources": {type: {"arguments", "blocks"}}}``."""
    def convert(entries: dict[str, Any]) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        blocks: dict[str, Any] = {}
        for name, entry in entries.items():
            if name.startswith("_") or not isinstance(entry, dict):
                continue
            if isinstance(entry.get("block"), dict):
                blocks[name] = {**entry, **convert(entry["block"])}
            else:
                validate = {"allowed_values": entry["allowed_values"]} if "allowed_values" in entry else None
                arguments[name] = {**entry, "kind": "argument", **({"validate": validate} if validate else {})}
        return {"arguments": arguments, "blocks": blocks}

    return {"provider": convert(document["provider"]),
            "resources": {name: convert(entries) for name, entries in document["resources"].items()}}


# --- checks --------------------------------------------------------------------------------------

def check_files(files: dict[str, str], aws_schema: dict[str, Any], version: str,
                postgres_schema: dict[str, Any] | None = None,
                backend_config: dict[str, str] | None = None) -> list[SchemaProblem]:
    """Problems in ``files`` (name -> HCL). ``backend_config``: the ``-backend-config`` values init passes to
    a partial ``backend "s3"`` block, checked with it (required arguments may come from there)."""
    problems: list[SchemaProblem] = []
    parsed = {name: parse(text) for name, text in sorted(files.items())}
    locals_by_stack: dict[str, dict[str, Value]] = {}
    for name, blocks in parsed.items():
        stack = locals_by_stack.setdefault(_stack_of(name), {})
        for block in blocks:
            if block.kind == "locals":
                stack.update({key: value for key, (_, value) in block.attributes.items()})
    for name, blocks in parsed.items():
        for block in blocks:
            if backend_config is not None and block.kind == "terraform":
                for child in block.blocks:
                    if child.kind == "backend":
                        child.attributes.update({k: (child.line, _backend_value(v)) for k, v in backend_config.items()})
            each = _for_each_entries(block, locals_by_stack[_stack_of(name)])
            problems += _check_top(name, block, aws_schema, version, postgres_schema, each)
    return problems


def _stack_of(file: str) -> str:
    return file.rsplit("/", 1)[0] if "/" in file else ""


def _backend_value(text: str) -> Value:
    """``-backend-config=key=value`` values are strings; Terraform reads booleans and numbers from them."""
    literal = _literal(text) if text in ("true", "false") or re.fullmatch(r"-?\d+(\.\d+)?", text) else None
    return text if literal is None or isinstance(literal, Expr) else literal


def _for_each_entries(block: Block, locals_: dict[str, Value]) -> list[dict[str, Value]] | None:
    """The ``each.value`` objects of a ``for_each = local.<map>`` resource, when that map is literal."""
    for_each = block.attributes.get("for_each")
    if for_each is None or not isinstance(for_each[1], Expr):
        return None
    found = re.fullmatch(r"local\.(\w+)", for_each[1].text)
    entries = locals_.get(found.group(1)) if found else None
    if not isinstance(entries, dict):
        return None
    return [entry for entry in entries.values() if isinstance(entry, dict)]


def _check_top(file: str, block: Block, aws: dict[str, Any], version: str,
               postgres: dict[str, Any] | None, each: list[dict[str, Value]] | None = None) -> list[SchemaProblem]:
    if block.kind == "resource" and block.labels:
        resource_type = block.labels[0]
        if resource_type.startswith("aws_"):
            schema = aws["resources"].get(resource_type)
            if schema is None:
                return [SchemaProblem(file, block.line, block.address, "resource type not in the schema", version)]
            return _check_block(file, block, schema, version, block.address, resource=True, each=each)
        if resource_type.startswith("postgresql_") and postgres is not None:
            schema = postgres["resources"].get(resource_type)
            if schema is None:
                return [SchemaProblem(file, block.line, block.address, "resource type not in the schema",
                                      "postgresql")]
            return _check_block(file, block, schema, None, block.address, resource=True, each=each)
        return []
    if block.kind == "provider" and block.labels == ("aws",):
        return _check_block(file, block, aws["provider"], version, "provider.aws", provider=True)
    if block.kind == "provider" and block.labels == ("postgresql",) and postgres is not None:
        return _check_block(file, block, postgres["provider"], None, "provider.postgresql")
    if block.kind == "terraform":
        found = []
        for child in block.blocks:
            if child.kind == "backend" and child.labels == ("s3",):
                found += _check_block(file, child, aws["backend_s3"], None, 'terraform.backend "s3"')
        return found
    return []


def _argument(schema: dict[str, Any], name: str, version: str | None) -> dict[str, Any] | None:
    entry = (schema.get("arguments") or {}).get(name)
    changes = (schema.get("_meta", {}).get("changed_since_v4_61_0") or schema.get("changed_since_v4_61_0") or {})
    if entry is not None and version == "4.61.0":
        if entry.get("present_in_v4_61_0") is False:
            return None
        if name in changes and "v4.61.0" in changes[name]:
            entry = {**entry, "required": False, "deprecated": None, **changes[name]["v4.61.0"]}
    if entry is None and version == "4.61.0":
        removed = (schema.get("removed_since_v4_61_0") or {}).get(name)
        if removed is not None:
            entry = {**removed, "kind": "argument", "deprecated": removed.get("deprecated")}
    return entry


def _versioned(parent: dict[str, Any], name: str, nested: dict[str, Any], version: str | None) -> dict[str, Any]:
    """A nested block's schema carrying its parent's ``<block>.<argument>`` differences at v4.61.0."""
    changes = (parent.get("_meta", {}).get("changed_since_v4_61_0") or parent.get("changed_since_v4_61_0") or {})
    prefix = f"{name}."
    own = {key[len(prefix):]: value for key, value in changes.items() if key.startswith(prefix)}
    if version != "4.61.0" or not own:
        return nested
    return {**nested, "changed_since_v4_61_0": own}


def _nested(schema: dict[str, Any], name: str, version: str | None) -> dict[str, Any] | None:
    entry = (schema.get("blocks") or {}).get(name)
    if entry is not None and version == "4.61.0" and entry.get("present_in_v4_61_0") is False:
        return None
    return entry


def _candidates(value: Value, each: list[dict[str, Value]] | None) -> list[Value]:
    """The literal values an attribute takes: itself, or ``each.value.<field>`` of every for_each entry."""
    if not isinstance(value, Expr):
        return [value]
    found = re.fullmatch(r"each\.value\.(\w+)", value.text)
    if found is None or each is None:
        return []
    return [entry[found.group(1)] for entry in each if found.group(1) in entry]


def _value_problems(name: str, value: Value, validate: dict[str, Any]) -> list[str]:
    """What a literal ``value`` breaks of the validation rules the schema records (enums, ranges, lengths)."""
    if isinstance(value, Expr) or value is None:
        return []
    found: list[str] = []
    allowed = validate.get("allowed_values")
    if allowed is None:
        for option in validate.get("any_of") or []:
            allowed = allowed or (option.get("allowed_values") if isinstance(option, dict) else None)
    if isinstance(value, str) and allowed is not None and value not in allowed:
        found.append(f"{name} = {value!r} is not one of {allowed}")
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    for rule in ("float_range", "int_range"):
        bounds = validate.get(rule)
        if number is not None and isinstance(bounds, list) and not bounds[0] <= number <= bounds[1]:
            found.append(f"{name} = {number:g} is outside {bounds[0]:g}..{bounds[1]:g}")
    if number is not None and isinstance(validate.get("int_max"), int | float) and number > validate["int_max"]:
        found.append(f"{name} = {number:g} is above {validate['int_max']:g}")
    length = validate.get("string_length")
    if isinstance(value, str) and isinstance(length, list) and not length[0] <= len(value) <= length[1]:
        found.append(f"{name} has {len(value)} characters, not {length[0]}..{length[1]}")
    for rule in validate.get("all_of") or []:
        if isinstance(rule, dict):
            found += _value_problems(name, value, rule)
    return found


def _check_block(file: str, block: Block, schema: dict[str, Any], version: str | None, where: str, *,
                 resource: bool = False, provider: bool = False,
                 each: list[dict[str, Value]] | None = None) -> list[SchemaProblem]:
    label = version or "schema"
    problems: list[SchemaProblem] = []
    for name, (line, value) in sorted(block.attributes.items()):
        if resource and name in META_ARGUMENTS:
            continue
        argument = _argument(schema, name, version)
        if argument is None:
            if _nested(schema, name, version) is not None:
                problems.append(SchemaProblem(file, line, where, f"{name} is a nested block: write `{name} {{ ... }}`, "
                                              "not `= `", label))
            else:
                problems.append(SchemaProblem(file, line, where, f"unknown argument {name}", label))
            continue
        if str(argument.get("kind", "argument")).startswith("attribute (computed"):
            problems.append(SchemaProblem(file, line, where, f"{name} is computed only: it cannot be set", label))
        if argument.get("deprecated"):
            problems.append(SchemaProblem(file, line, where, f"{name} is deprecated: {argument['deprecated']}",
                                          label))
        raw_validate = argument.get("validate")
        validate: dict[str, Any] = raw_validate if isinstance(raw_validate, dict) else {}
        for message in sorted({m for candidate in _candidates(value, each)
                               for m in _value_problems(name, candidate, validate)}):
            problems.append(SchemaProblem(file, line, where, message, label))
    for child in block.blocks:
        if child.kind in META_BLOCKS and resource:
            continue
        nested = _nested(schema, child.kind, version)
        if nested is None:
            argument = _argument(schema, child.kind, version)
            message = (f"{child.kind} is an attribute: write `{child.kind} = {{ ... }}`, not a block"
                       if argument is not None else f"unknown block {child.kind}")
            problems.append(SchemaProblem(file, child.line, where, message, label))
            continue
        if nested.get("computed_only") or (nested.get("computed") and not nested.get("optional")
                                           and not nested.get("required")):
            problems.append(SchemaProblem(file, child.line, where, f"{child.kind} is computed only", label))
            continue
        if provider and child.kind == "endpoints":
            services = set(nested.get("service_names") or [])
            problems += [SchemaProblem(file, line, f"{where}.endpoints", f"unknown service {name}", label)
                         for name, (line, _) in child.attributes.items() if services and name not in services]
            continue
        problems += _check_block(file, child, _versioned(schema, child.kind, nested, version), version,
                                 f"{where}.{child.kind}", each=each)
    names = set(block.attributes) | {child.kind for child in block.blocks}
    for name in schema.get("arguments") or {}:
        entry = _argument(schema, name, version)
        if entry is not None and entry.get("required") and name not in names:
            problems.append(SchemaProblem(file, block.line, where, f"required argument {name} is missing", label))
    for name, nested in (schema.get("blocks") or {}).items():
        if nested.get("required") and name not in names and _nested(schema, name, version) is not None:
            problems.append(SchemaProblem(file, block.line, where, f"required block {name} is missing", label))
    return problems
