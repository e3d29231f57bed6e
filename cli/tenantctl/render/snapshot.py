"""What ``stacks/`` held before a plan rendered into it, so a refused plan can put it back.

Only the files rendering writes are kept (``*.tf`` and ``.terraform.lock.hcl``); Terraform's own
working files live under ``.tenantctl/`` and are never touched here.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tenantctl.fsutil import PUBLIC, atomic_write_bytes

StacksSnapshot = dict[str, bytes]  # path relative to the stacks directory -> content


def _rendered_files(stacks_dir: Path) -> list[str]:
    found = []
    for directory, _dirs, files in os.walk(stacks_dir):
        for name in files:
            if name.endswith(".tf") or name == ".terraform.lock.hcl":
                found.append(os.path.relpath(os.path.join(directory, name), stacks_dir))
    return found


def snapshot_stacks(stacks_dir: Path) -> StacksSnapshot:
    return {rel: (stacks_dir / rel).read_bytes() for rel in _rendered_files(stacks_dir)}


def remove_stack(stacks_dir: Path, stack: str) -> list[str]:
    """Delete the rendered files of one stack (e.g. ``tenants/client07`` after offboarding) and its directory
    when nothing else is left in it."""
    directory = stacks_dir / stack
    removed = _rendered_files(directory)
    for rel in removed:
        (directory / rel).unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()
    return sorted(f"{stack}/{rel}" for rel in removed)


def restore_stacks(stacks_dir: Path, before: StacksSnapshot) -> list[str]:
    """Make ``stacks_dir`` hold exactly ``before`` again; returns the paths it changed."""
    changed = []
    for rel in _rendered_files(stacks_dir):
        if rel not in before:
            (stacks_dir / rel).unlink()
            changed.append(rel)
            with contextlib.suppress(OSError):  # only directories the plan created are empty now
                os.removedirs((stacks_dir / rel).parent)
    for rel, data in before.items():
        path = stacks_dir / rel
        try:
            same = path.read_bytes() == data
        except FileNotFoundError:
            same = False
        if not same:
            atomic_write_bytes(path, data, mode=PUBLIC)
            changed.append(rel)
    stacks_dir.mkdir(parents=True, exist_ok=True)
    return sorted(changed)
