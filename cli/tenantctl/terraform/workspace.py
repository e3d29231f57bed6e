"""Where the pipeline keeps things, and what a stack is.

``<project>/stacks/`` holds the rendered, committed stacks. Everything Terraform produces stays
under ``<project>/.tenantctl/`` (git-ignored)::

    .tenantctl/state/<stack>.tfstate      local backend state (default backend)
    .tenantctl/work/<stack>/              working copy: the stack's .tf files, .terraform/, lock file
    .tenantctl/plans/<id>/                plan artifacts (plan files, redacted plan JSON, summaries)
    .tenantctl/plans/LATEST               id of the newest plan
    .tenantctl/applied.json               content hash and cluster outputs of every applied stack
    .tenantctl/local/moto.json            the local AWS stand-in (tenantctl local up)

A stack id is ``cluster`` or ``tenants/<tenant>``; on disk ``/`` becomes ``__`` where one name is
needed (plan files).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLUSTER_STACK = "cluster"
TENANTS_PREFIX = "tenants/"
TERRAFORM_SUFFIXES = (".tf", ".tf.json")


@dataclass(frozen=True)
class Workspace:
    root: Path  # the project directory (holds stacks/ and .tenantctl/)
    stacks_dir: Path

    @classmethod
    def at(cls, root: Path, stacks_dir: Path | None = None) -> Workspace:
        root = Path(root).resolve()
        return cls(root=root, stacks_dir=Path(stacks_dir).resolve() if stacks_dir else root / "stacks")

    @property
    def state_dir(self) -> Path:
        return self.root / ".tenantctl"

    @property
    def plans_dir(self) -> Path:
        return self.state_dir / "plans"

    @property
    def applied_manifest(self) -> Path:
        return self.state_dir / "applied.json"

    def local_state_file(self, stack: str) -> Path:
        return self.state_dir / "state" / f"{stack}.tfstate"

    def work_dir(self, stack: str) -> Path:
        return self.state_dir / "work" / stack

    def source_dir(self, stack: str) -> Path:
        return self.stacks_dir / stack

    def local_state_stacks(self) -> list[str]:
        """Stacks that have a local state file with resources in it."""
        base = self.state_dir / "state"
        found = []
        for path in sorted(base.glob("**/*.tfstate")):
            if _state_has_resources(path):
                found.append(path.relative_to(base).as_posix()[: -len(".tfstate")])
        return found


def tenant_stack(tenant: str) -> str:
    return f"{TENANTS_PREFIX}{tenant}"


def tenant_of(stack: str) -> str | None:
    return stack[len(TENANTS_PREFIX):] if stack.startswith(TENANTS_PREFIX) else None


def slug(stack: str) -> str:
    return stack.replace("/", "__")


def read_stack_files(directory: Path) -> dict[str, bytes]:
    """The Terraform files of one stack directory (not recursive), by file name."""
    if not directory.is_dir():
        return {}
    return {
        path.name: path.read_bytes()
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name.endswith(TERRAFORM_SUFFIXES)
    }


def content_hash(files: Mapping[str, bytes], inputs: Mapping[str, Any]) -> str:
    """Hash of a stack's rendered files and of everything else its plan depends on."""
    digest = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        digest.update(f"file {name} {len(data)}\n".encode())
        digest.update(data)
    digest.update(b"inputs\n")
    digest.update(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def sync_work_dir(files: Mapping[str, bytes], work_dir: Path) -> None:
    """Make ``work_dir`` hold exactly ``files`` as Terraform files (keeps .terraform/ and the lock)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    for path in work_dir.iterdir():
        if path.is_file() and path.name.endswith(TERRAFORM_SUFFIXES) and path.name not in files:
            path.unlink()
    for name, data in files.items():
        target = work_dir / name
        try:
            if target.read_bytes() == data:
                continue
        except FileNotFoundError:
            pass
        target.write_bytes(data)


def remove_work_dir(work_dir: Path) -> None:
    shutil.rmtree(work_dir, ignore_errors=True)


def _state_has_resources(path: Path) -> bool:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return True  # unreadable state: assume it matters
    return bool(document.get("resources"))
