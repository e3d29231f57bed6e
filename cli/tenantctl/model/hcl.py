"""A fast reader for Terraform variable files (``.tfvars`` HCL and ``.tfvars.json``).

Variable files hold only literal values: strings, numbers, bools, null, lists and objects. This
reader handles exactly that subset (plus comments and heredocs) and keeps the byte offset of every
value and every object key, so later errors can name file, line and column. It is a recursive
descent over the text with a handful of compiled regular expressions: no token list, no AST
library, and about 30x faster than python-hcl2 on large clients files (see bench/validate_bench.py).

Deliberate leniency: object items may be separated by newlines, commas or nothing. Deliberate
strictness: template interpolation (``${...}``, ``%{...}``), function calls, references and
expressions are rejected, as Terraform rejects them in variable files.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from typing import Any

from tenantctl.errors import Location

_BLANKS = re.compile(r"[ \t\r\n]*")
_STRING_STOP = re.compile(r'["\\\n]')  # what ends a run of plain string characters
_PLAIN_STRING_BODY = re.compile(r'[^"\\\n]*')
_COMMENT_STARTS = frozenset({"#", "/"})
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_]*)[ \t]*\r?\n")
_UNCLOSED_COMMENT = re.compile(r"/\*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE = re.compile(r'\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))', re.S)
_INTERPOLATION = re.compile(r"(?<![$%])[$%]\{")
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # all but tab, LF, CR
MAX_DEPTH = 64  # nesting of lists and objects; a clients file needs 4


class Node:
    """A parsed value with its offset. Objects also keep each key's offset."""

    __slots__ = ("end", "key_pos", "kind", "pos", "value")

    def __init__(self, kind: str, value: Any, pos: int, key_pos: dict[str, int] | None = None) -> None:
        self.kind = kind  # "string" | "number" | "bool" | "null" | "list" | "object"
        self.value = value  # str | int | float | bool | None | list[Node] | dict[str, Node]
        self.pos = pos  # offset of the value's first character
        self.end = pos  # offset just past its last character (set by the parser)
        self.key_pos = key_pos

    def plain(self) -> Any:
        """The value as plain Python data (for tests and JSON output)."""
        if self.kind == "list":
            return [item.plain() for item in self.value]
        if self.kind == "object":
            return {key: item.plain() for key, item in self.value.items()}
        return self.value

    def __repr__(self) -> str:
        return f"Node({self.kind}, {self.plain()!r}, pos={self.pos})"


@dataclass
class SourceFile:
    """The text of one input file and a fast offset -> line/column lookup."""

    name: str
    text: str

    def __post_init__(self) -> None:
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]

    def location(self, pos: int) -> Location:
        line = bisect.bisect_right(self._line_starts, pos)
        return Location(self.name, line, pos - self._line_starts[line - 1] + 1)


class HclSyntaxError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


class _Parser:
    def __init__(self, text: str, *, json_mode: bool) -> None:
        self.s = text
        self.n = len(text)
        self.pos = 0
        self.depth = 0
        self.json_mode = json_mode

    def skip(self) -> None:
        """Skip blanks and comments. A loop, not one regular expression: the ``re`` engine keeps
        state per repetition of a group, which costs gigabytes on a file of millions of comments."""
        s = self.s
        while True:
            self.pos = _BLANKS.match(s, self.pos).end()  # type: ignore[union-attr]  # matches the empty string
            if s[self.pos:self.pos + 1] not in _COMMENT_STARTS:
                return
            if s.startswith("#", self.pos) or s.startswith("//", self.pos):
                end = s.find("\n", self.pos)
                self.pos = self.n if end < 0 else end
            elif s.startswith("/*", self.pos):
                end = s.find("*/", self.pos + 2)
                if end < 0:
                    raise HclSyntaxError(self.pos, "unterminated /* comment")
                self.pos = end + 2
            else:
                return

    def error(self, message: str, pos: int | None = None) -> HclSyntaxError:
        return HclSyntaxError(self.pos if pos is None else pos, message)

    def describe_here(self) -> str:
        if self.pos >= self.n:
            return "end of file"
        return repr(self.s[self.pos : self.pos + 12].split("\n", 1)[0])

    def attributes(self) -> Node:
        """Top level of an HCL variable file: ``name = value`` lines."""
        items: dict[str, Node] = {}
        keys: dict[str, int] = {}
        self.skip()
        while self.pos < self.n:
            start = self.pos
            m = _IDENT.match(self.s, self.pos)
            if not m:
                raise self.error(f"expected a variable name, found {self.describe_here()}")
            name = m.group()
            self.pos = m.end()
            self.skip()
            if self.pos < self.n and self.s[self.pos] == "{":
                raise self.error(f"blocks are not allowed in a variable file (did you mean `{name} = {{`?)")
            if self.pos >= self.n or self.s[self.pos] != "=":
                raise self.error(f"expected `=` after `{name}`, found {self.describe_here()}")
            self.pos += 1
            self.skip()
            value = self.value()
            if name in items:
                raise self.error(f"`{name}` is defined twice in this file", start)
            items[name] = value
            keys[name] = start
            self.skip()
        root = Node("object", items, 0, keys)
        root.end = self.n
        return root

    def document(self) -> Node:
        """A whole JSON document (its top level is one object)."""
        self.skip()
        value = self.value()
        self.skip()
        if self.pos < self.n:
            raise self.error(f"unexpected {self.describe_here()} after the end of the document")
        return value

    def value(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"values are nested more than {MAX_DEPTH} levels deep")
        node = self._value()
        self.depth -= 1
        node.end = self.pos
        return node

    def _value(self) -> Node:
        if self.pos >= self.n:
            raise self.error("expected a value, found end of file")
        c = self.s[self.pos]
        if c == '"':
            return self.string()
        if c == "[":
            return self.list_()
        if c == "{":
            return self.object_()
        if c == "-" or c.isdigit():
            return self.number()
        if c == "<" and not self.json_mode:
            return self.heredoc()
        m = _IDENT.match(self.s, self.pos)
        if m:
            word = m.group()
            start = self.pos
            if word in ("true", "false"):
                self.pos = m.end()
                return Node("bool", word == "true", start)
            if word == "null":
                self.pos = m.end()
                return Node("null", None, start)
            raise self.error(
                f"`{word}` is not a literal value: variable files hold only literals "
                f"(strings must be quoted)"
            )
        raise self.error(f"expected a value, found {self.describe_here()}")

    def string(self) -> Node:
        start = self.pos
        end = self._string_end(start + 1)
        raw = self.s[start + 1 : end]
        self.pos = end + 1
        if not self.json_mode:
            interp = _INTERPOLATION.search(raw)
            if interp:
                raise self.error(
                    "template interpolation is not allowed in a variable file (write `$${` for a literal `${`)",
                    start + 1 + interp.start(),
                )
            raw = raw.replace("$${", "${").replace("%%{", "%{")
        if "\\" in raw:
            raw = self.unescape(raw, start)
        return Node("string", self.checked_text(raw, start), start)

    def _string_end(self, pos: int) -> int:
        """Offset of the closing quote of the string whose body starts at ``pos`` (linear, constant memory)."""
        s = self.s
        plain = _PLAIN_STRING_BODY.match(s, pos)  # the common case: no escape; one repeat of a class, no groups
        if plain is not None and s.startswith('"', plain.end()):
            return plain.end()
        while True:
            m = _STRING_STOP.search(s, pos)
            if m is None or m.group() == "\n" or (m.group() == "\\" and s.startswith("\n", m.end())):
                raise self.error("unterminated string (strings end with `\"` on the same line)")
            if m.group() == '"':
                return m.start()
            pos = m.end() + 1  # a backslash escapes the next character

    def checked_text(self, text: str, start: int) -> str:
        bad = _FORBIDDEN_CONTROL.search(text)
        if bad:
            raise self.error(f"control character U+{ord(bad.group()):04X} in a string (write printable text only)",
                             start)
        return text

    def unescape(self, raw: str, start: int) -> str:
        def replace(m: re.Match[str]) -> str:
            if m.group(1) or m.group(2):
                return chr(int(m.group(1) or m.group(2), 16))
            ch = m.group(3)
            if ch in _ESCAPES:
                return _ESCAPES[ch]
            if self.json_mode and ch in "/bf":
                return {"/": "/", "b": "\b", "f": "\f"}[ch]
            raise self.error(f"invalid escape sequence `\\{ch}` in string", start + 1 + m.start())

        return _ESCAPE.sub(replace, raw)

    def number(self) -> Node:
        start = self.pos
        m = _NUMBER.match(self.s, self.pos)
        if not m:
            raise self.error(f"expected a number, found {self.describe_here()}")
        self.pos = m.end()
        text = m.group()
        value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
        return Node("number", value, start)

    def heredoc(self) -> Node:
        start = self.pos
        m = _HEREDOC.match(self.s, self.pos)
        if not m:
            raise self.error("expected a heredoc such as `<<EOT` followed by a newline")
        indent, marker = m.group(1) == "-", m.group(2)
        end = re.compile(rf"^[ \t]*{re.escape(marker)}[ \t]*$", re.M).search(self.s, m.end())
        if not end:
            raise self.error(f"heredoc `{marker}` is never closed", start)
        body = self.s[m.end() : end.start()]
        self.pos = end.end()
        lines = body.split("\n")
        if indent:
            widths = [len(line) - len(line.lstrip(" \t")) for line in lines if line.strip()]
            cut = min(widths, default=0)
            lines = [line[cut:] for line in lines]
        return Node("string", self.checked_text("\n".join(lines), start), start)

    def list_(self) -> Node:
        start = self.pos
        self.pos += 1
        items: list[Node] = []
        while True:
            self.skip()
            if self.pos >= self.n:
                raise self.error("list opened here is never closed with `]`", start)
            if self.s[self.pos] == "]":
                self.pos += 1
                return Node("list", items, start)
            items.append(self.value())
            self.skip()
            if self.pos < self.n and self.s[self.pos] == ",":
                self.pos += 1
            elif self.pos < self.n and self.s[self.pos] != "]":
                raise self.error(f"expected `,` or `]` in list, found {self.describe_here()}")

    def object_(self) -> Node:
        start = self.pos
        self.pos += 1
        items: dict[str, Node] = {}
        keys: dict[str, int] = {}
        while True:
            self.skip()
            if self.pos >= self.n:
                raise self.error("object opened here is never closed with `}`", start)
            c = self.s[self.pos]
            if c == "}":
                self.pos += 1
                return Node("object", items, start, keys)
            key_start = self.pos
            if c == '"':
                key = self.string().value
            else:
                m = _IDENT.match(self.s, self.pos) if not self.json_mode else None
                if not m:
                    raise self.error(f"expected a key or `}}`, found {self.describe_here()}")
                key = m.group()
                self.pos = m.end()
            self.skip()
            if self.pos >= self.n or self.s[self.pos] not in "=:":
                raise self.error(f"expected `=` after key `{key}`, found {self.describe_here()}")
            self.pos += 1
            self.skip()
            value = self.value()
            if key in items:
                raise self.error(f"key `{key}` appears twice in this object", key_start)
            items[key] = value
            keys[key] = key_start
            self.skip()
            if self.pos < self.n and self.s[self.pos] == ",":
                self.pos += 1


def parse_hcl(text: str) -> Node:
    """Parse an HCL variable file; returns an object node of its top-level attributes."""
    return _Parser(text, json_mode=False).attributes()


def parse_json(text: str) -> Node:
    """Parse a ``.tfvars.json`` file; returns its top-level object node."""
    parser = _Parser(text, json_mode=True)
    node = parser.document()
    if node.kind != "object":
        raise HclSyntaxError(node.pos, "a .tfvars.json file must hold one JSON object")
    return node


def is_json_path(name: str) -> bool:
    return name.endswith(".json")


def dumps_hcl_string(value: str) -> str:
    """Quote a string as an HCL literal (used when tenantctl edits a clients file)."""
    return json.dumps(value, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")
