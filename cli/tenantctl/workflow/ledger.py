"""The offboarding ledger: one JSON line per step, appended and fsynced, never rewritten.

Every offboarding, purge and restore step is recorded before the next one starts, so an interrupted
run can be resumed (the ledger says what already happened) and auditors can see what was done to
a tenant's data, when, with which checksums. No secrets are ever written here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenantctl.errors import InputError


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Entry:
    at: str
    tenant: str
    step: str
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "tenant": self.tenant, "step": self.step, **self.details}


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, tenant: str, step: str, **details: Any) -> Entry:
        entry = Entry(utc_now(), tenant, step, details)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry.to_json(), sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def entries(self, tenant: str | None = None) -> Iterator[Entry]:
        if not self.path.exists():
            return
        with self.path.open() as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    entry = Entry(data.pop("at"), data.pop("tenant"), data.pop("step"), data)
                except (ValueError, KeyError) as error:
                    raise InputError(f"{self.path}:{number}: unreadable ledger line ({error})") from None
                if tenant is None or entry.tenant == tenant:
                    yield entry

    def last(self, tenant: str, step: str) -> Entry | None:
        found = None
        for entry in self.entries(tenant):
            if entry.step == step:
                found = entry
        return found
