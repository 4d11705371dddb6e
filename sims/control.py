"""The control socket both simulators serve: JSON lines in, one JSON reply line out.

The virtual bench (`python -m sims.bench serve`) and the firmware under simavr
(`python -m sims.avr serve`) share this so a host drives either one the same way.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable
from typing import Any

Handler = Callable[[Any], dict[str, Any]]


class ControlClients:
    """The accepted connections of a listening unix socket and their partial lines."""

    def __init__(self, srv: socket.socket, handler: Handler) -> None:
        self.srv, self.handler = srv, handler
        self.clients: dict[int, tuple[socket.socket, bytearray]] = {}

    def fds(self) -> list[int]:
        return list(self.clients)

    def accept(self) -> None:
        try:
            conn, _ = self.srv.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self.clients[conn.fileno()] = (conn, bytearray())

    def service(self, fd: int) -> None:
        """Read what a client sent; answer every complete line."""
        conn, buf = self.clients[fd]
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            conn.close()
            del self.clients[fd]
            return
        buf += data
        while b"\n" in buf:
            raw, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            if not raw.strip():
                continue
            try:
                resp = self.handler(json.loads(raw))
            except (ValueError, UnicodeDecodeError) as err:
                resp = {"ok": False, "error": f"not JSON: {err}"}
            with contextlib.suppress(OSError):
                conn.sendall((json.dumps(resp) + "\n").encode())

    def close(self) -> None:
        for conn, _ in self.clients.values():
            conn.close()
        self.clients.clear()
        self.srv.close()
