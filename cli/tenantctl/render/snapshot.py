"""Putting ``stacks/`` back: after a refused plan (from the backup its render recorded) and after an
offboarding (the tenant's stack is removed).

Only the files rendering writes are touched (``*.tf`` and ``.terraform.lock.hcl``); Terraform's own
working files live under ``.tenantctl/``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tenantctl.fsutil import PUBLIC, atomic_write_bytes


def _rendered_files(stacks_dir: Path) -> list[str]:
    found = []
    for directory, _dirs, files in os.walk(stacks_dir):
        for name in files:
            if name.endswith(".tf") or name == ".terraform.lock.hcl":
                found.append(os.path.relpath(os.path.join(directory, name), stacks_dir))
    return found


def restore_backup(stacks_dir: Path, backup: dict[str, bytes | None]) -> list[str]:
    """Undo a render that recorded ``backup`` (``render_stacks(..., backup=...)``): rewrite what it changed,
    delete what it created. Costs only the files that changed, unlike a full snapshot."""
    for rel, data in backup.items():
        path = stacks_dir / rel
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            with contextlib.suppress(OSError):  # only directories the render created are empty now
                os.removedirs(path.parent)
        else:
            atomic_write_bytes(path, data, mode=PUBLIC)
    stacks_dir.mkdir(parents=True, exist_ok=True)
    return sorted(backup)


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
