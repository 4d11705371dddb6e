"""pyserial URL handler ``sim://``: a virtual hostctl probe in-process (sims/bench.py).

Register once (``sims.backend.install()`` does, with the tone output), then open like any
port::

    import serial
    serial.protocol_handler_packages.append("sims")
    ser = serial.serial_for_url("sim://?board=notebook&seed=3&faults=drop:0.01", timeout=1)
    ser.bench.set_tone(800)          # the VirtualBench behind the port

URL options: ``board`` (name in sims/boards/ or a .toml path; also accepted as the URL's
host part, ``sim://bench?seed=1``), ``seed`` (int, default 0), ``faults`` (see
sims/faults.py), ``boot`` (``0`` = do not reboot on open, i.e. no banner).

Modelled on pyserial's ``protocol_loop``. Timeouts are honoured in *simulated* time:
``read()`` returns as soon as the bytes have arrived in simulated time, or after
advancing ``bench.now_s`` by the timeout - it never sleeps. A host that keeps its own
deadlines should use ``ser.bench.now_s`` as its clock. Opening the port (and raising
DTR again) reboots the board, which then sends its ``! BOOT`` banner, like a Uno.
"""

from __future__ import annotations

import errno
import math
import urllib.parse
from typing import Any

from serial.serialutil import PortNotOpenError, SerialBase, SerialException, to_bytes

from hostctl.errors import HostctlError, InputError

#: Simulated seconds one failed open of an unplugged board takes (a host retry loop).
OPEN_RETRY_S = 0.1


class SimURLError(SerialException, InputError):
    """A bad ``sim://`` URL or board file: pyserial sees a SerialException, hostctl a
    usage error (exit code 2) rather than a device failure."""

    def __init__(self, message: str) -> None:
        InputError.__init__(self, message)


class Serial(SerialBase):
    """A serial port whose far end is a :class:`sims.bench.VirtualBench`."""

    BAUDRATES = (50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800,
                 9600, 19200, 38400, 57600, 115200, 230400, 250000, 500000, 1000000)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.bench: Any = None
        self._boot_on_open = True
        self._opened_url: str | None = None
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ open/close
    def open(self) -> None:
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.bench is None or self._opened_url != self._port:
            self.bench = self.from_url(self._port)
            self._opened_url = self._port
        if self.bench.disconnected:
            # unplugged (fault disconnect@N / unplug:S@N): the device node is gone until
            # the board is plugged back in; each failed attempt costs simulated time so
            # a host retrying in a loop sees its (simulated) deadline pass.
            replug = self.bench.replug_at
            if replug is None or self.bench.now_s < replug:
                self.bench.advance(OPEN_RETRY_S)
                raise SerialException(errno.ENOENT, f"could not open port {self._port}: "
                                      "[Errno 2] No such file or directory (simulated unplug)")
            self.bench.disconnected = False
            self.bench.replug_at = None
        self._reconfigure_port()
        self.is_open = True
        self.reset_input_buffer()
        if self._boot_on_open:
            self.bench.boot()           # DTR reset: banner after the board's boot time

    def close(self) -> None:
        self.is_open = False
        super().close()

    def hostctl_bench(self) -> Any:
        """hostctl's view of the bench behind this port (its clock, parts, tone output)."""
        from sims.backend import SimBench

        return None if self.bench is None else SimBench(self.bench)

    def from_url(self, url: str) -> Any:
        """Parse ``sim://[board]?board=..&seed=..&faults=..&boot=0|1`` -> a new bench."""
        from sims.bench import make_bench

        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "sim":
            raise SerialException(f"expected a sim://?board=NAME URL, got {url!r}")
        board = parts.netloc or "notebook"
        seed = 0
        faults = None
        for key, values in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items():
            value = values[-1]
            if key == "board":
                board = value
            elif key == "seed":
                if not (value.isascii() and value.isdigit()):
                    raise SimURLError(f"sim URL: seed must be a whole number >= 0, got "
                                      f"{value!r}")
                seed = int(value)
            elif key == "faults":
                faults = value
            elif key == "boot":
                self._boot_on_open = value not in ("0", "false", "no")
            else:
                raise SimURLError(f"sim URL: unknown option {key!r} "
                                      "(known: board, seed, faults, boot)")
        try:
            return make_bench(board, seed, faults)
        except HostctlError as e:
            raise SimURLError(f"sim URL {url!r}: {e}") from None

    def _reconfigure_port(self) -> None:
        if not isinstance(self._baudrate, int) or not 0 < self._baudrate < 2 ** 32:
            raise ValueError(f"invalid baudrate: {self._baudrate!r}")

    # ------------------------------------------------------------------ data
    def _check(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()

    @property
    def in_waiting(self) -> int:
        self._check()
        if self.bench.disconnected:
            raise SerialException("device disconnected (simulated unplug)")
        return self.bench.in_waiting()

    def read(self, size: int = 1) -> bytes:
        self._check()
        from sims.bench import Disconnected

        try:
            return self.bench.host_read(size, self._timeout)
        except Disconnected as e:
            raise SerialException(f"device reports readiness to read but returned no data "
                                  f"(device disconnected?): {e}") from None

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        """Like pyserial's, but the timeout is one budget in simulated time."""
        self._check()
        lenterm = len(expected)
        line = bytearray()
        t = self._timeout
        deadline = math.inf if t is None else self.bench.now_s + t
        while True:
            remaining = None if t is None else max(0.0, deadline - self.bench.now_s)
            if remaining == 0.0 and t:
                break
            saved = self._timeout
            self._timeout = remaining
            try:
                c = self.read(1)
            finally:
                self._timeout = saved
            if not c:
                break
            line += c
            if line[-lenterm:] == expected or (size is not None and len(line) >= size):
                break
        return bytes(line)

    def readline(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        return self.read_until(b"\n", None if size is None or size < 0 else size)

    def write(self, data: bytes) -> int:
        self._check()
        from sims.bench import Disconnected

        data = to_bytes(data)
        try:
            return self.bench.host_write(data)
        except Disconnected as e:
            raise SerialException(f"write failed: {e}") from None

    def flush(self) -> None:
        """Writes reach the simulated link at once: nothing to wait for."""

    def reset_input_buffer(self) -> None:
        self._check()
        self.bench.discard_input()

    def reset_output_buffer(self) -> None:
        self._check()

    @property
    def out_waiting(self) -> int:
        self._check()
        return 0

    def cancel_read(self) -> None:
        pass

    def cancel_write(self) -> None:
        pass

    # ------------------------------------------------------------------ modem lines
    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        # DTR going high on an open port resets the Uno (auto-reset circuit).
        prev = getattr(self, "_sim_dtr", True)
        self._sim_dtr = bool(self._dtr_state)
        if self.is_open and self._sim_dtr and not prev and self.bench is not None:
            self.bench.boot()

    @property
    def cts(self) -> bool:
        self._check()
        return True

    @property
    def dsr(self) -> bool:
        self._check()
        return True

    @property
    def ri(self) -> bool:
        self._check()
        return False

    @property
    def cd(self) -> bool:
        self._check()
        return True


__all__ = ["Serial"]
