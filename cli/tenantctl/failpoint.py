"""Named crash points for crash-recovery tests: ``TENANTCTL_FAILPOINT=<name>[,<name>...]``.

At an armed point the process writes one line to stderr and SIGKILLs itself: no ``finally`` blocks,
no atexit handlers, no flushing, exactly what the OOM killer or a power cut does. The end-to-end test
uses this where no progress line marks the exact moment (tests/e2e/test_lifecycle.py), then reruns the
command and checks that it converges. The variable is read once at import; unset (always, outside
tests) ``failpoint()`` is a membership test on an empty frozenset.

Child processes that run in their own session (Terraform) are not killed with it; see
``terraform/runner.py`` for why they finish their operation.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "TENANTCTL_FAILPOINT"

POINTS = {
    "terraform-applied": "a stack's `terraform apply` finished (state written); applied.json not yet updated",
    "postgres-database-created": "the native engine created a database (connections disabled); its privileges, "
                                 "opening and schema grants not yet applied",
    "routes-before-write": "Terraform and Postgres applied; the routing map not yet written",
    "move-prepared": "a move created the tenant's objects and schema on the target; not yet recorded",
    "move-copied": "a move's initial copy finished; not yet recorded",
    "move-fenced": "a move's cut-over paused the tenant and disabled its login on the source; map not switched",
    "move-switched": "a move's cut-over wrote the switched routing map; not yet recorded, proxy not resumed",
    "move-finishing": "a move removed its replication objects; source databases not yet archived, file not pinned",
}

_ARMED = frozenset(name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip())


def failpoint(name: str) -> None:
    """SIGKILL this process here if ``TENANTCTL_FAILPOINT`` names ``name`` (one of ``POINTS``)."""
    if name in _ARMED:
        sys.stderr.write(f"tenantctl: failpoint {name}: SIGKILL\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
