"""Terminal output shared by the commands: rich consoles for stdout and stderr, JSON printing."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from typing import Any

from rich.console import Console


def _stdout_width() -> int | None:
    """None (the terminal's width) on a terminal or with $COLUMNS; piped, wide enough that a table row is
    one line (grep, diff)."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return None
    return 1000


out = Console(highlight=False, soft_wrap=True, width=_stdout_width())
err = Console(stderr=True, highlight=False, soft_wrap=True)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class ReportFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


def print_json(document: Any) -> None:
    """Machine-readable output: stable key order, one document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()
