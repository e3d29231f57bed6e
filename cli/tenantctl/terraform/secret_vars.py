"""Sensitive Terraform variables the runner supplies through the environment (``TF_VAR_*``).

The local target's clusters need a master password (``variable "master_password"``, sensitive). It
is taken from ``TF_VAR_master_password`` when set, else generated once per project and kept in
``.tenantctl/local/master-password`` (mode 0600) so every plan sees the same value. It never appears
in rendered files, plan summaries or logs (Terraform marks it sensitive in plan JSON, which
``plan_json.redact_plan`` masks).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tenantctl.fsutil import atomic_write_text

MASTER_PASSWORD_VAR = "TF_VAR_master_password"


def master_password_file(state_dir: Path) -> Path:
    return Path(state_dir) / "local" / "master-password"


def local_secret_env(state_dir: Path) -> dict[str, str]:
    """``TF_VAR_*`` secrets for the local target's stacks."""
    explicit = os.environ.get(MASTER_PASSWORD_VAR)
    if explicit:
        return {MASTER_PASSWORD_VAR: explicit}
    path = master_password_file(state_dir)
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        password = ""
    if not password:
        password = secrets.token_urlsafe(24)
        atomic_write_text(path, password + "\n", mode=0o600)
    return {MASTER_PASSWORD_VAR: password}
