"""The applied log: an append-only, hash-chained record of every apply.

``.tenantctl/plans/applied.log`` holds one JSON record a line. Each record carries ``seq`` (1, 2, ...),
``prev`` (the previous record's hash; 64 zeros for the first) and ``hash``: the SHA-256 of the record's
canonical JSON without ``hash``. Editing a record changes its hash; deleting or reordering records
breaks ``seq`` and ``prev``. Deleting the newest records keeps the chain intact, so every applied plan's
directory also keeps the hashes of its own records (``audit.json``): `tenantctl plans verify` checks
both. An attacker who deletes a plan directory *and* its newest log records goes unnoticed locally;
a copy of the log kept elsewhere (the S3 artifact location) closes that.

Appends take an exclusive ``flock`` and are fsynced; a record is written as one ``write`` of one line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenantctl.errors import InputError
from tenantctl.fsutil import PRIVATE, fsync_dir

LOG_FILE = "applied.log"
GENESIS = "0" * 64


def record_hash(record: dict[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based line of the log, 0 when not about one line
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class AppliedLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Add a record after the current last one; returns it with ``seq``, ``prev`` and ``hash``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked() as fd:
            records, problems = self._parse(_read_all(fd))
            if problems:
                raise InputError(f"the applied log {self.path} is damaged ({problems[0]}); refusing to append",
                                 hint="run `tenantctl plans verify` and restore the log from a copy")
            previous = records[-1] if records else None
            record = {**fields, "seq": (previous["seq"] + 1) if previous else 1,
                      "prev": previous["hash"] if previous else GENESIS}
            record["hash"] = record_hash(record)
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode())
            os.fsync(fd)
        fsync_dir(self.path.parent)
        return record

    def read(self) -> tuple[list[dict[str, Any]], list[Problem]]:
        """Every record that parses, and what is wrong with the chain."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], []
        return self._parse(data)

    @staticmethod
    def _parse(data: bytes) -> tuple[list[dict[str, Any]], list[Problem]]:
        records: list[dict[str, Any]] = []
        problems: list[Problem] = []
        expected_prev = GENESIS
        expected_seq = 1
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        elif lines:
            problems.append(Problem(len(lines), "the last record is cut short (no newline): an interrupted write"))
        for number, raw in enumerate(lines, 1):
            try:
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError:
                problems.append(Problem(number, "not a JSON record"))
                continue
            if record.get("hash") != record_hash(record):
                problems.append(Problem(number, f"record {record.get('seq')} was edited: its hash does not match "
                                                "its content"))
            if record.get("seq") != expected_seq:
                problems.append(Problem(number, f"expected record {expected_seq}, found {record.get('seq')}: "
                                                "records were removed or reordered"))
            if record.get("prev") != expected_prev:
                problems.append(Problem(number, f"record {record.get('seq')} does not follow the record before it "
                                                "(previous hash differs): a record was removed, edited or "
                                                "inserted"))
            records.append(record)
            expected_prev = str(record.get("hash"))
            expected_seq = int(record.get("seq") or 0) + 1
        return records, problems

    @contextmanager
    def _locked(self) -> Iterator[int]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, PRIVATE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)
