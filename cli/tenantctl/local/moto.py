"""Local AWS for the ``local`` target: one moto server per project, on a free loopback port.

The server runs detached (it outlives the tenantctl process that started it) and is recorded in
``<state_dir>/local/moto.json`` so later runs reuse it. moto keeps everything in memory: stopping
it forgets every local AWS resource (Terraform's next plan recreates them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from tenantctl.errors import BackendError
from tenantctl.fsutil import atomic_write_text

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# moto accepts any credentials; these are what boto3 and the AWS provider use against it.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass(frozen=True)
class MotoServer:
    pid: int
    host: str
    port: int
    log_file: str
    started_at: float

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def record_path(state_dir: Path) -> Path:
    return Path(state_dir) / "local" / "moto.json"


def moto_status(state_dir: Path) -> MotoServer | None:
    """The recorded server if it is alive and answering, else None."""
    server = _read_record(state_dir)
    if server is None or not _is_our_process(server.pid) or not _answers(server.url):
        return None
    return server


def ensure_moto(state_dir: Path) -> MotoServer:
    """Reuse the recorded moto server, or start one on a free loopback port and record it."""
    running = moto_status(state_dir)
    if running is not None:
        return running
    stale = _read_record(state_dir)
    if stale is not None and _is_our_process(stale.pid):
        _terminate(stale.pid)  # alive but not answering: replace it
    record = record_path(state_dir)
    record.parent.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _attempt in range(3):  # a port picked free may be taken before moto binds it
        port = _free_port()
        log_file = record.parent / "moto.log"
        server = _start(port, log_file)
        if _wait_until_answering(server):
            atomic_write_text(record, json.dumps(asdict(server), indent=2, sort_keys=True) + "\n")
            return server
        last_error = _tail(log_file)
        _terminate(server.pid)
    raise BackendError(
        f"the local moto server did not start within {START_TIMEOUT_S:.0f}s",
        hint=f"see {record.parent / 'moto.log'}" + (f": {last_error}" if last_error else ""),
    )


def stop_moto(state_dir: Path) -> bool:
    """Stop the recorded moto server. Returns True if one was running."""
    server = _read_record(state_dir)
    was_running = server is not None and _is_our_process(server.pid)
    if server is not None and was_running:
        _terminate(server.pid)
    record_path(state_dir).unlink(missing_ok=True)
    return was_running


def _start(port: int, log_file: Path) -> MotoServer:
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed by the terminal's Ctrl-C meant for tenantctl
            close_fds=True,
        )
    return MotoServer(pid=process.pid, host=HOST, port=port, log_file=str(log_file), started_at=time.time())


def _wait_until_answering(server: MotoServer) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    delay = 0.05
    while time.monotonic() < deadline:
        if not _is_alive(server.pid):
            return False
        if _answers(server.url):
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _read_record(state_dir: Path) -> MotoServer | None:
    try:
        data = json.loads(record_path(state_dir).read_text())
        return MotoServer(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child we started and that exited is a zombie until reaped: treat as dead.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _is_our_process(pid: int) -> bool:
    """Alive and really a moto server (a recorded pid may have been reused by another process)."""
    if not _is_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"moto.server" in cmdline


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not _is_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _tail(log_file: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log_file.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
