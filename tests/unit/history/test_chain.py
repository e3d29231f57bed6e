"""The applied log's hash chain: every way of tampering with it is detected."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tenantctl.errors import InputError
from tenantctl.history.chain import GENESIS, AppliedLog, record_hash


def _log(tmp_path: Path, count: int = 4) -> AppliedLog:
    log = AppliedLog(tmp_path / "applied.log")
    for number in range(count):
        log.append({"event": "apply-finished", "plan_id": f"p{number}", "status": "applied"})
    return log


def _lines(log: AppliedLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AppliedLog, lines: list[str]) -> None:
    log.path.write_text("".join(line + "\n" for line in lines))


def test_records_are_chained_and_numbered(tmp_path: Path) -> None:
    log = _log(tmp_path)
    records, problems = log.read()
    assert problems == []
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert records[0]["prev"] == GENESIS
    assert all(later["prev"] == earlier["hash"] for earlier, later in itertools.pairwise(records))
    assert all(r["hash"] == record_hash(r) for r in records)


def test_an_edited_record_is_detected(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    record = json.loads(lines[1])
    record["status"] = "apply_failed"  # rewrite history
    _write(log, [lines[0], json.dumps(record), *lines[2:]])
    _records, problems = log.read()
    assert any("record 2 was edited" in p.message for p in problems), problems


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    record = json.loads(lines[1])
    record["actor"] = {"user": "someone-else"}
    record["hash"] = record_hash(record)  # a careful forger recomputes the record's own hash
    _write(log, [lines[0], json.dumps(record), *lines[2:]])
    _records, problems = log.read()
    assert any("record 3 does not follow" in p.message for p in problems), problems


def test_a_removed_record_is_detected(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    _write(log, [lines[0], *lines[2:]])
    _records, problems = log.read()
    messages = " ".join(p.message for p in problems)
    assert "expected record 2, found 3" in messages and "does not follow" in messages


def test_reordered_records_are_detected(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    _write(log, [lines[0], lines[2], lines[1], lines[3]])
    _records, problems = log.read()
    assert problems


def test_a_cut_short_last_record_is_reported_and_blocks_appends(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    log.path.write_bytes(log.path.read_bytes()[:-20])
    _records, problems = log.read()
    assert any("cut short" in p.message for p in problems)
    with pytest.raises(InputError, match="damaged"):
        log.append({"event": "apply-started", "plan_id": "x"})


def test_garbage_lines_are_reported_with_their_line_number(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    lines = _lines(log)
    _write(log, [lines[0], "not json", lines[1]])
    _records, problems = log.read()
    assert any(p.line == 2 and "not a JSON record" in p.message for p in problems)


def test_the_log_is_private(tmp_path: Path) -> None:
    log = _log(tmp_path, 1)
    assert log.path.stat().st_mode & 0o077 == 0
