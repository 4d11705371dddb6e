"""The line layer of the probe link: framed lines out, complete lines in, junk counted.

Below the handshake and the command discipline (:mod:`hostctl.device`): ids, writing a
command, reading with a deadline in short polls, bounding the line buffer, and telling a
damaged reply (bad CRC) from garbage, our own echo or a banner glued to a cut-off line.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hostctl.errors import DeviceError, DeviceTimeout, ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from hostctl.protocol import Reply

#: every line sent and received, at DEBUG (``hostctl -v`` shows it on stderr)
TRACE = logging.getLogger("hostctl.serial")
#: Longest line we keep; a device spewing without newlines cannot grow memory.
MAX_LINE = 512
#: Most bytes taken from the port at once (with MAX_LINE, bounds the line buffer).
READ_CHUNK = 4096
#: Serial read poll: short so deadlines are honoured within a few ms.
POLL_S = 0.02


class DeviceGone(DeviceError):
    """The port itself failed (unplugged): re-opening it may bring the board back."""


class LineLink:
    """Lines to and from one port; :class:`hostctl.device.Probe` builds on it."""

    port: str
    serial: Any
    stats: dict[str, int]
    _clock: Callable[[], float]
    _next_id: int
    _buf: bytearray
    _discarding: bool
    _last_sent: bytes
    _recent_sent: deque[bytes]
    _rx_bytes: int

    def _new_id(self) -> int:
        """Counting ids 1..65535, wrapping and skipping 0 (reserved by the firmware)."""
        i = self._next_id
        self._next_id = 1 if i >= 65535 else i + 1
        return i

    def _send(self, cmd_id: int, verb: str, *args: object) -> None:
        from hostctl.protocol import encode_command

        line = encode_command(cmd_id, verb, *args)
        if TRACE.isEnabledFor(logging.DEBUG):
            TRACE.debug("%s > %s", self.port, line.rstrip(b"\r\n").decode("ascii", "replace"))
        self._last_sent = line.rstrip(b"\r\n")
        self._recent_sent.append(self._last_sent)
        try:
            self.serial.write(line)
            flush = getattr(self.serial, "flush", None)
            if flush is not None:
                flush()
        except Exception as e:  # noqa: BLE001 - pyserial raises several unrelated types
            if type(e).__name__ == "SerialTimeoutException":
                raise DeviceTimeout(f"writing '{verb}' to {self.port} timed out "
                                    "(port stuck? unplug and re-plug the probe)") from None
            raise DeviceGone(f"lost the connection to {self.port} while sending '{verb}': "
                             f"{e}") from None

    def _read_chunk(self, remaining: float) -> bytes:
        ser = self.serial
        t0 = self._clock()
        try:
            try:
                n = int(ser.in_waiting)
            except (AttributeError, NotImplementedError, TypeError):
                n = 0
            data = ser.read(min(n, READ_CHUNK) if n > 0 else 1)
        except Exception as e:  # noqa: BLE001
            raise DeviceGone(f"lost the connection to {self.port}: {e} (unplugged?)") from None
        self._rx_bytes += len(data or b"")
        if not data:
            # A non-blocking port (some URL handlers) would otherwise spin a core.
            spent = self._clock() - t0
            if spent < POLL_S / 2:
                time.sleep(min(POLL_S, max(0.0, remaining)))
        return data or b""

    def _read_line(self, deadline: float) -> bytes | None:
        """Next complete line (without ``\\r\\n``), or None when ``deadline`` passes."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if self._discarding or len(line) > MAX_LINE:
                    self._discarding = False
                    self.stats["long_lines"] += 1
                    continue
                if TRACE.isEnabledFor(logging.DEBUG):
                    TRACE.debug("%s < %s", self.port,
                                line.rstrip(b"\r").decode("ascii", "replace"))
                return line.rstrip(b"\r")
            if len(self._buf) > MAX_LINE:
                self._buf.clear()
                self._discarding = True
            remaining = deadline - self._clock()
            if remaining <= 0:
                return None
            chunk = self._read_chunk(remaining)
            if chunk:
                self._buf += chunk

    def _drop_partial(self) -> None:
        """After a timeout, forget half a line so it cannot swallow the next reply.

        Should its rest still arrive, that fragment fails its CRC and is dropped alone.
        """
        self._buf.clear()

    def _parse(self, line: bytes) -> Reply | None:
        """Parse one line; count and drop anything that is not a valid protocol line."""
        from hostctl.protocol import parse_reply

        if not line:
            return None
        if line in self._recent_sent:
            self.stats["echoes"] += 1
            return None
        try:
            return parse_reply(line)
        except (ProtocolError, ValueError, UnicodeDecodeError):
            pass
        # Resynchronise: bootloader bytes or line noise may prefix a good line, and a board
        # that resets mid-reply glues its "! BOOT" banner to the cut-off line. The CRC
        # still guards whatever suffix we try.
        starts = []
        bad = [i for i, b in enumerate(line) if not 0x20 <= b <= 0x7E]
        if bad:
            starts.append(bad[-1] + 1)
        bang = line.rfind(b"! ")
        if bang > 0:
            starts.append(bang)
        for start in starts:
            if start < len(line):
                try:
                    return parse_reply(line[start:])
                except (ProtocolError, ValueError, UnicodeDecodeError):
                    pass
        if _looks_checksummed(line):
            self.stats["crc_errors"] += 1
        else:
            self.stats["garbage_lines"] += 1
        return None

    def _junk_count(self) -> int:
        s = self.stats
        return s["crc_errors"] + s["garbage_lines"] + s["long_lines"]


def _looks_checksummed(line: bytes) -> bool:
    """Is this a line with a ``*XXXX`` that does not match? (vs. plain garbage)"""
    from hostctl.protocol import crc16, split_crc

    text = line.decode("ascii", "replace")
    body, crc, present = split_crc(text)
    if not present:
        return False
    return crc is None or crc16(body.encode("ascii", "replace")) != crc
