"""Client-supplied values made safe to put in a log line (no forged lines, no terminal escapes)."""

from __future__ import annotations

MAX_LOGGED = 128


def printable(value: str | None, limit: int = MAX_LOGGED) -> str:
    """``value`` with every non-printable character escaped (``\\n``, ``\\x1b``...) and cut at ``limit``."""
    if value is None:
        return "-"
    clipped = value[:limit]
    escaped = clipped if clipped.isprintable() and "\\" not in clipped else _escape(clipped)
    return escaped + ("..." if len(value) > limit else "")


def _escape(text: str) -> str:
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)
