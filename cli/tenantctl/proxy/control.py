"""The proxy's control socket: pause, resume and reload, for `tenantctl move` and operators.

A Unix socket (never TCP, never an HTTP verb on the admin port): the socket file is created 0600 and
each peer's credentials (SO_PEERCRED) must be root or the proxy's own user, so only who may read the
proxy's files may pause a tenant. One JSON request per line, one JSON answer per line::

    {"op": "pause", "tenant": "client01", "max_seconds": 10, "reason": "move"}
    {"op": "resume", "tenant": "client01"}
    {"op": "reload"}                    # re-read the routing map now; answers with the serial served
    {"op": "status"}                    # paused tenants, queued connections, sessions per tenant

Answers carry ``"ok": true`` or ``"ok": false`` with an ``"error"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tenantctl.errors import InputError

MAX_REQUEST_BYTES = 4096
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = Path(path)
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(mode):
                raise InputError(f"--control-socket {self.path}: exists and is not a socket; refusing to replace it")
            self.path.unlink()  # a stale socket of an earlier run
        previous = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._handle, path=str(self.path),
                                                           limit=MAX_REQUEST_BYTES)
        finally:
            os.umask(previous)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not _peer_allowed(writer.get_extra_info("socket")):
                writer.write(_line({"ok": False, "error": "permission denied"}))
                await writer.drain()
                return
            while True:
                try:
                    raw = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(_line({"ok": False, "error": "request too long"}))
                    return
                if not raw:
                    return
                writer.write(_line(await self._answer(raw)))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, raw: bytes) -> dict[str, Any]:
        try:
            request = json.loads(raw)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError("expected a JSON object with an op")
        except ValueError as error:
            return {"ok": False, "error": f"bad request: {error}"}
        try:
            return {"ok": True, **await self._handler(request)}
        except (ValueError, KeyError, TypeError) as error:
            return {"ok": False, "error": str(error)}


def _peer_allowed(sock: socket.socket | None) -> bool:
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return False
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", data)
    return uid in (0, os.getuid())


def _line(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, sort_keys=True) + "\n").encode()


def request(path: Path, document: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a proxy's control socket (blocking); raises InputError when unreachable."""
    from tenantctl.errors import BackendError

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(_line(document))
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
    except FileNotFoundError:
        raise InputError(f"no proxy control socket at {path}",
                         hint="start the proxy with --control-socket PATH") from None
    except OSError as error:
        raise BackendError(f"proxy control socket {path}: {error}") from None
    try:
        answer = json.loads(buffer)
    except ValueError:
        raise BackendError(f"proxy control socket {path}: unreadable answer") from None
    if not answer.get("ok"):
        raise BackendError(f"proxy refused {document.get('op')}: {answer.get('error')}")
    return dict(answer)
