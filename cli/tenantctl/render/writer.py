"""Writing rendered stacks: only files whose bytes change, atomically; orphans reported, not deleted."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tenantctl.errors import TenantctlError
from tenantctl.fsutil import PUBLIC, atomic_write_bytes
from tenantctl.model.types import Model
from tenantctl.render.drift import existing_files, is_ignored
from tenantctl.render.environment import load_templates, template_search_path
from tenantctl.render.files import CLUSTER_DIR, TENANTS_DIR, render_with

# Each atomic write ends in fsync; a few threads overlap those waits (the work itself is tiny).
WRITE_THREADS = 16
TERRAFORM_SUFFIXES = (".tf", ".tf.json")
DERIVED_FILES = (".terraform.lock.hcl",)  # written by `terraform init` next to the .tf files; regenerable


@dataclass(frozen=True)
class RenderResult:
    """What ``render_stacks`` did. Paths are relative to ``out_dir``, "/"-separated, sorted."""

    out_dir: Path
    written: tuple[str, ...]  # created or changed files
    unchanged: tuple[str, ...]  # files already holding exactly the rendered bytes (not rewritten)
    orphaned: tuple[str, ...]  # tenant dirs no longer in the model, and stray .tf files in live stacks
    removed: tuple[str, ...] = ()  # what prune=True deleted
    overridden_templates: tuple[str, ...] = field(default=())  # templates taken from an override dir

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)

    @property
    def orphaned_tenants(self) -> tuple[str, ...]:
        """Names of the tenant directories in ``orphaned`` (``tenants/<name>``), without stray files."""
        prefix = f"{TENANTS_DIR}/"
        return tuple(p[len(prefix):] for p in self.orphaned if p.startswith(prefix) and p.count("/") == 1)

    def to_json(self) -> dict[str, object]:
        return {
            "out_dir": str(self.out_dir),
            "written": list(self.written),
            "unchanged": list(self.unchanged),
            "orphaned": list(self.orphaned),
            "orphaned_tenants": list(self.orphaned_tenants),
            "removed": list(self.removed),
            "overridden_templates": list(self.overridden_templates),
        }


def render_stacks(
    model: Model,
    out_dir: Path,
    *,
    template_dirs: Sequence[Path] | None = None,
    prune: bool = False,
    progress: Callable[[int, int], None] | None = None,
    backup: dict[str, bytes | None] | None = None,
) -> RenderResult:
    """Render every stack into ``out_dir``, rewriting only files whose bytes change.

    Everything is rendered in memory first, so a template or model error leaves ``out_dir``
    untouched. Stacks of tenants no longer in the model are reported as ``orphaned`` and kept
    (the terraform guard decides what happens to their resources); ``prune=True`` deletes their
    ``.tf`` files (and ``.terraform.lock.hcl``), and stray ``.tf`` files in live stacks, and nothing
    else: state files and anything unknown stay, and so does a directory that still holds them.
    ``progress(done, total)`` is called as changed files are written (for a progress bar).
    ``backup`` receives the previous bytes of every file about to be rewritten (None for a new file), so
    a caller can put ``out_dir`` back exactly (``render.snapshot.restore_backup``).
    """
    out_dir = Path(out_dir)
    templates = load_templates(template_search_path(template_dirs))
    files = render_with(templates, model)

    ordered = sorted(files)
    try:
        root = str(out_dir)
        written = tuple(rel for rel in ordered if not _holds(os.path.join(root, rel), files[rel]))
        if backup is not None:
            for rel in written:
                try:
                    backup.setdefault(rel, (out_dir / rel).read_bytes())
                except FileNotFoundError:
                    backup.setdefault(rel, None)
        with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
            def write(rel: str) -> None:
                atomic_write_bytes(out_dir / rel, files[rel], mode=PUBLIC)

            for done, _ in enumerate(pool.map(write, written), 1):
                if progress is not None:
                    progress(done, len(written))
    except OSError as error:
        raise TenantctlError(f"cannot write stacks under {out_dir}: {error}") from error
    unchanged = tuple(sorted(set(ordered) - set(written)))

    orphaned = find_orphans(out_dir, files)
    removed: tuple[str, ...] = ()
    if prune and orphaned:
        removed = _prune(out_dir, orphaned)
        orphaned = find_orphans(out_dir, files)
    return RenderResult(
        out_dir=out_dir, written=written, unchanged=unchanged, orphaned=orphaned, removed=removed,
        overridden_templates=templates.overridden(),
    )


def _holds(path: str, content: bytes) -> bool:
    """True when the file at ``path`` already contains exactly ``content``.

    Reads at most one byte more than ``content`` (enough to see a longer file); plain ``open`` on a
    string path, since this runs for every file of every tenant on each render.
    """
    try:
        with open(path, "rb") as fh:
            return fh.read(len(content) + 1) == content
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False


def find_orphans(out_dir: Path, rendered: dict[str, bytes]) -> tuple[str, ...]:
    """Tenant directories with no tenant in the model, and Terraform files no template produced."""
    live_tenant_dirs = {rel.rsplit("/", 1)[0] for rel in rendered if rel.startswith(f"{TENANTS_DIR}/")}
    orphans: set[str] = set()
    tenants_root = out_dir / TENANTS_DIR
    if tenants_root.is_dir():
        for entry in tenants_root.iterdir():
            relative = f"{TENANTS_DIR}/{entry.name}"
            if entry.is_dir() and not is_ignored(entry.name) and relative not in live_tenant_dirs:
                orphans.add(relative)
    for relative in existing_files(out_dir):
        parent = relative.rsplit("/", 1)[0]
        stack_is_live = parent == CLUSTER_DIR or parent in live_tenant_dirs
        if stack_is_live and relative not in rendered and relative.endswith(TERRAFORM_SUFFIXES):
            orphans.add(relative)
    return tuple(sorted(orphans))


def _prune(out_dir: Path, orphaned: tuple[str, ...]) -> tuple[str, ...]:
    removed: list[str] = []
    for relative in orphaned:
        path = out_dir / relative
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and (child.name.endswith(TERRAFORM_SUFFIXES) or child.name in DERIVED_FILES):
                    child.unlink()
                    removed.append(f"{relative}/{child.name}")
            if not any(path.iterdir()):
                path.rmdir()
                removed.append(relative)
        elif path.is_file():
            path.unlink()
            removed.append(relative)
    try:
        fd = os.open(out_dir / TENANTS_DIR, os.O_RDONLY)
    except OSError:
        return tuple(removed)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return tuple(removed)
