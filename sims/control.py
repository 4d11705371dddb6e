"""The one serve loop both simulators run, and its control socket (JSON lines in, one JSON
reply line out).

The virtual bench (`python -m sims.bench serve`, sims/pty_server.py) and the firmware under
simavr (`python -m sims.avr serve`) differ only in the bench behind the pty: a
:class:`Served` says which descriptors it watches, what it does between looks and how it
answers a control request; :func:`serve_loop` does the rest (the socket, the signals, the
``PTY``/``CONTROL`` lines, the poll), so a host drives either one the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from typing import Any, Protocol

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


class Served(Protocol):
    """A bench behind the serve loop (the python device core, or simavr's UART)."""

    #: the pseudo-terminal a host opens
    port: str

    def control(self, req: Any) -> dict[str, Any]:
        """Answer one control-socket request (already parsed JSON)."""

    def step(self) -> int:
        """The bench's own work between looks; milliseconds until it wants the next one."""

    def fds(self) -> dict[int, int]:
        """Its descriptors to poll, with the poll events for each."""

    def ready(self, fd: int, events: int) -> None:
        """One of its descriptors is ready."""

    def alive(self) -> bool:
        """False once the bench has ended by itself (the loop then stops)."""


class ServeLoop:
    """The control socket, the signal handling and the poll loop around one :class:`Served`."""

    def __init__(self, served: Served, prefix: str = "hostctl-bench-") -> None:
        self.served = served
        self.sockdir = tempfile.mkdtemp(prefix=prefix)
        self.sock_path = os.path.join(self.sockdir, "control.sock")
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.sock_path)
        self.srv.listen(8)
        self.srv.setblocking(False)
        self.ctl = ControlClients(self.srv, served.control)
        # a signal wakes the poll through this pipe (no race between a check and the wait)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.stop = False
        self.old_handlers = {s: signal.signal(s, self._on_signal)
                             for s in (signal.SIGTERM, signal.SIGINT)}
        self.old_wake = signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop = True

    def announce(self, out: Any = None) -> None:
        """``PTY /dev/pts/N`` and ``CONTROL /path/control.sock``: what a host needs."""
        out = out or sys.stdout
        print(f"PTY {self.served.port}", file=out, flush=True)
        print(f"CONTROL {self.sock_path}", file=out, flush=True)

    def run(self) -> int:
        """Until SIGTERM/SIGINT (0) or until the bench ends by itself (1)."""
        served = self.served
        while not self.stop and served.alive():
            timeout_ms = served.step()
            p = select.poll()
            p.register(self.wake_r, select.POLLIN)
            p.register(self.srv, select.POLLIN)
            for fd in self.ctl.fds():
                p.register(fd, select.POLLIN)
            mine = served.fds()
            for fd, events in mine.items():
                p.register(fd, events)
            for fd, e in p.poll(timeout_ms):
                if fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 512)
                elif fd == self.srv.fileno():
                    self.ctl.accept()
                elif fd in self.ctl.clients:
                    self.ctl.service(fd)
                elif fd in mine:
                    served.ready(fd, e)
        return 0 if self.stop else 1

    def close(self) -> None:
        """Restore the signal handlers, close the clients and remove the socket."""
        signal.set_wakeup_fd(self.old_wake)
        for s, h in self.old_handlers.items():
            signal.signal(s, h)
        self.ctl.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        shutil.rmtree(self.sockdir, ignore_errors=True)


def serve_loop(served: Served, *, out: Any = None, prefix: str = "hostctl-bench-") -> int:
    """Serve ``served``: the two lines a host reads, then :meth:`ServeLoop.run`."""
    loop = ServeLoop(served, prefix)
    try:
        loop.announce(out)
        return loop.run()
    finally:
        loop.close()
