"""The GitOps drift check: do the files on disk equal what the model renders to?"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tenantctl.model.types import Model
from tenantctl.render.files import CLUSTER_DIR, TENANTS_DIR, render_files

MISSING = "missing"
DIFFERENT = "different"
UNEXPECTED = "unexpected"


@dataclass(frozen=True, order=True)
class StaleFile:
    path: str  # relative to the stacks directory, "/"-separated
    reason: str  # "missing" | "different" | "unexpected"

    def __str__(self) -> str:
        return f"{self.reason}: {self.path}"

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def check_stacks(
    model: Model, out_dir: Path, *, template_dirs: Sequence[Path] | None = None
) -> list[StaleFile]:
    """Files under ``out_dir`` that differ from a fresh render, sorted by path. Empty means in sync.

    Only ``cluster/`` and ``tenants/`` are ours; dot-files and ``.terraform*`` are ignored.
    """
    return compare(render_files(model, template_dirs=template_dirs), Path(out_dir))


def compare(expected: Mapping[str, bytes], out_dir: Path) -> list[StaleFile]:
    stale: list[StaleFile] = []
    for relative, content in expected.items():
        try:
            if (out_dir / relative).read_bytes() != content:
                stale.append(StaleFile(relative, DIFFERENT))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            stale.append(StaleFile(relative, MISSING))
    stale += (StaleFile(relative, UNEXPECTED) for relative in existing_files(out_dir)
              if relative not in expected)
    return sorted(stale)


def existing_files(out_dir: Path) -> Iterator[str]:
    """Relative paths of the files under ``out_dir/cluster`` and ``out_dir/tenants``."""
    for top in (CLUSTER_DIR, TENANTS_DIR):
        root = out_dir / top
        if root.is_dir():
            yield from _walk(root, top)


def _walk(directory: Path, relative: str) -> Iterator[str]:
    # os.scandir: entry types come from the directory listing, no stat per file (10,000s of files).
    with os.scandir(directory) as entries:
        listing = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in entries if not is_ignored(e.name))
    for name, is_dir in listing:
        child = f"{relative}/{name}"
        if is_dir:
            yield from _walk(directory / name, child)
        else:
            yield child


def is_ignored(name: str) -> bool:
    """Dot-files (including ``.terraform/`` and ``.terraform.lock.hcl``) are never ours to judge."""
    return name.startswith(".")
