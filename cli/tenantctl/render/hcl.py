"""HCL literals and layout: quoting values safely and producing ``terraform fmt``-clean text.

Templates emit values through the filters defined here (never raw), so a name containing a quote,
a backslash or a template sequence (``${``, ``%{``) can never change the meaning of a rendered file.
``canonical_layout`` then applies the two layout rules of ``terraform fmt`` that templates cannot
easily get right by hand: equals signs aligned across consecutive single-line attributes, and no
stray blank lines or trailing spaces.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# An attribute line: indentation, a bare or quoted key, then "=" that is not part of "==" or "=>".
_ATTRIBUTE = re.compile(r'^( *)([A-Za-z_][A-Za-z0-9_-]*|"(?:[^"\\]|\\.)*") *=(?![=>]) *(.*)$')
_OPENS_BLOCK = ("{", "[", "(")
_NEEDS_ESCAPE = re.compile(r'[\\"\n\r\t]|\$\{|%\{')


def escape(text: str) -> str:
    """Escape ``text`` for use inside a double-quoted HCL string (without the quotes)."""
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        .replace("${", "$${")
        .replace("%{", "%%{")
    )


@functools.lru_cache(maxsize=8192)
def string(text: str) -> str:
    """A double-quoted HCL string literal."""
    return f'"{escape(text)}"'


def number(value: float) -> str:
    """An HCL number literal: integers without a decimal point, others in shortest exact form."""
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def literal(value: object) -> str:
    """Any scalar or flat list as a single-line HCL literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, str):
        return string(value)
    if isinstance(value, list | tuple):
        return string_list(value)
    raise TypeError(f"no HCL literal for {type(value).__name__}")


def string_list(values: Iterable[object]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"


def key(name: str) -> str:
    """An object key: bare when it is a plain identifier, quoted otherwise (``"managed-by"``)."""
    return name if _IDENTIFIER.match(name) else string(name)


def object_lines(mapping: Mapping[str, object], indent: int) -> str:
    """The body lines of a multi-line object literal: keys sorted, ``=`` aligned as fmt does."""
    pad = " " * indent
    keys = {k: key(k) for k in mapping}
    width = max((len(k) for k in keys.values()), default=0)
    return "\n".join(f"{pad}{keys[k].ljust(width)} = {literal(mapping[k])}" for k in sorted(mapping))


def label(name: str) -> str:
    """A resource label derived from a name: characters outside ``[A-Za-z0-9_-]`` become ``_``.

    Labels must start with a letter or underscore, so a leading digit or hyphen gets a ``_`` prefix.
    Callers check the derived labels for collisions.
    """
    cleaned = _LABEL_UNSAFE.sub("_", name)
    if not cleaned or not (cleaned[0].isalpha() or cleaned[0] == "_"):
        cleaned = "_" + cleaned
    return cleaned


def canonical_layout(text: str) -> str:
    """Normalise rendered HCL to what ``terraform fmt`` would write.

    - trailing whitespace removed, ``\\n`` line endings, exactly one final newline;
    - at most one blank line in a row, none right after ``{`` or right before ``}``;
    - ``=`` aligned across each run of consecutive single-line attributes at the same indentation
      (a line that opens a multi-line value, a block header, a closing bracket or a blank line ends
      the run — the same grouping rule as hclwrite's formatter).
    """
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    kept: list[str] = []
    for line in lines:
        if not line:
            if not kept or not kept[-1] or kept[-1].endswith("{"):
                continue
        elif line.lstrip().startswith("}") and kept and not kept[-1]:
            kept.pop()
        kept.append(line)
    while kept and not kept[-1]:
        kept.pop()

    out: list[str] = []
    run: list[tuple[str, str, str]] = []  # (indent, key, value) of the current alignment run

    def flush() -> None:
        if run:
            width = max(len(k) for _, k, _ in run)
            out.extend(f"{ind}{k.ljust(width)} = {v}" for ind, k, v in run)
            run.clear()

    for line in kept:
        match = _ATTRIBUTE.match(line) if "=" in line else None
        if match is None or match.group(3).endswith(_OPENS_BLOCK) or not match.group(3):
            flush()
            if match is not None:
                line = f"{match.group(1)}{match.group(2)} = {match.group(3)}"
            out.append(line)
            continue
        indent, name, value = match.groups()
        if run and run[-1][0] != indent:
            flush()
        run.append((indent, name, value))
    flush()
    return "\n".join(out) + "\n"
