"""A scripted fake hostctl probe for tests: the sims device core plus the ways a real link
fails, in real time.

:class:`FakeDevice` answers with :class:`sims.device_core.DeviceCore` (the firmware's mirror
the virtual bench runs too: one reading of firmware/PROTOCOL.md), fed synthetic windows, and
misbehaves on cue with the reply actions of sims/faults.py's grammar (the bench's
``ACTION@N`` items): per verb, a queue of actions is consumed one per command
(``fake.script("MEASURE", "garbage", "late", "ok")``); when a queue is empty the device
answers normally. Actions (:data:`sims.faults.REPLY_ACTIONS`, rendered by
:func:`sims.faults.render_reply`), plus three whose timing or state is the transport's:

``ok``        the normal reply
``late``      the reply ``late_s`` seconds later (past the host's timeout)
``reset``     the command is lost, the board reboots: ``! BOOT`` after ``boot_s``
``dead``      like ``reset`` (banner included), but afterwards the board never answers

Device-wide ``mode``: ``probe`` (normal), ``echo`` (echoes every byte, like a loopback),
``chatter`` (prints non-protocol text lines, like some other serial gadget),
``mute`` (never says anything), ``noise`` (bytes without newlines, like a wrong baud
rate), ``proto2`` (a firmware that only speaks protocol 2).

Two transports: :class:`FakeSerial` (an in-process serial-like object, real time,
single-threaded) and :class:`PtyFake` (a thread serving the device on a real
pseudo-terminal; the client opens ``PtyFake.path`` like ``/dev/ttyACM0``).
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field

from hostctl.protocol import PROTOCOL_VERSION, with_crc
from sims.device_core import DEFAULT_IDENTITY, DeviceCore, Window
from sims.faults import check_action, render_reply

FW = DEFAULT_IDENTITY["fw"]

#: A reply with hand-chosen numbers (PROTOCOL.md's example): tests assert these exactly.
EXAMPLE_MEASURE = ("ms=200 n=480 rate_hz=2400 a0=511.734,72.118,409,614 "
                   "a1=510.250,50.500,440,580 a2=512.000,36.059,460,563 "
                   "a3=511.000,7.211,500,522 led=0,120,0")
#: replies the core gives a line it could not read (syntax, length, CRC): no action is used
_UNREAD = (b" ERR 2 ", b" ERR 3 ", b" ERR 4 ")


def synth_samples(n: int, mean: float, amp: float, step: float = 0.1234567) -> list[int]:
    """Deterministic 10-bit samples of a sine at non-repeating phases."""
    return [max(0, min(1023, int(math.floor(mean + amp * math.sin(2 * math.pi * step * k)))))
            for k in range(n)]


@dataclass
class FakeDevice:
    """A probe with scripted faults; time is passed in by the transport."""

    mode: str = "probe"
    boot_s: float = 0.05          # bootloader time: input is swallowed, then the banner
    banner: bool = True
    late_s: float = 0.5
    rate_hz: int = 2400
    #: (mean, amplitude) in counts for A0..A3 when no fixed reply is set
    levels: tuple[tuple[float, float], ...] = ((511.5, 100.0), (511.5, 70.0),
                                               (511.5, 40.0), (511.5, 10.0))
    led_fraction: tuple[float, float, float] = (0.0, 0.25, 0.0)
    measure_fields: str | None = None   # fixed MEASURE reply body after "OK MEASURE "
    identity: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_IDENTITY))

    def __post_init__(self) -> None:
        self.core = DeviceCore(self._window, nominal_rate_hz=self.rate_hz,
                               identity=self.identity,
                               protocol=2 if self.mode == "proto2" else PROTOCOL_VERSION)
        self._scripts: dict[str, deque[str]] = {}
        self._out: list[tuple[float, bytes]] = []   # (due time, bytes), kept sorted
        self._booting_until = -1.0
        self.lines_in: list[bytes] = []            # every complete line the device got
        self.times_in: list[float] = []            # ... and when
        self.boot_ends: list[float] = []           # when each boot finished (banner time)
        self.boots = 0
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ scripting
    def script(self, verb: str, *actions: str) -> FakeDevice:
        """Queue reply actions (sims/faults.py's) for the next commands of ``verb``."""
        self._scripts.setdefault(verb, deque()).extend(check_action(a) for a in actions)
        return self

    def _action(self, verb: str) -> str:
        q = self._scripts.get(verb)
        return q.popleft() if q else "ok"

    # ------------------------------------------------------------------ time & output
    def _emit(self, t: float, data: bytes) -> None:
        self._out.append((t, data))
        self._out.sort(key=lambda x: x[0])

    def boot(self, now: float) -> None:
        """Power-on / DTR reset: swallow input for ``boot_s``, then the banner."""
        self.boots += 1
        self._out = [o for o in self._out if o[0] <= now]   # unsent output dies
        banner = self.core.reset()
        self._booting_until = now + self.boot_s
        self.boot_ends.append(self._booting_until)
        if self.mode in ("probe", "proto2") and self.banner:
            self._emit(self._booting_until, banner)

    def next_due(self) -> float | None:
        return self._out[0][0] if self._out else None

    def take(self, now: float) -> bytes:
        """Bytes due by ``now``."""
        out = bytearray()
        while self._out and self._out[0][0] <= now:
            out += self._out.pop(0)[1]
        return bytes(out)

    def pending_bytes(self, now: float) -> int:
        return sum(len(d) for t, d in self._out if t <= now)

    # ------------------------------------------------------------------ input
    def feed(self, data: bytes, now: float) -> None:
        if self.mode == "echo":
            self._emit(now, bytes(data))
            return
        if self.mode == "mute" or now < self._booting_until:
            return
        for b in data:
            line = self.core.pending.rstrip(b"\r")
            before = self.core.lines
            reply = self.core.feed_byte(b)
            if self.core.lines == before or reply is None:
                continue
            self.lines_in.append(line)
            self.times_in.append(now)
            self._handle(line, reply, now)

    def _handle(self, line: bytes, reply: bytes, now: float) -> None:
        if self.mode == "noise":     # wrong baud rate: bytes, but never a newline
            self._emit(now, bytes((37 * i + 11) % 256 for i in range(1500)).replace(b"\n", b"?"))
            return
        if self.mode == "chatter":
            self._emit(now, b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9*47\r\n"
                            b"hello from a different gadget\r\n")
            return
        if any(u in reply for u in _UNREAD):
            self._emit(now, reply)
            return
        rid, verb = line.split(b" ")[:2]
        if self.measure_fields is not None and b" OK MEASURE " in reply:
            reply = with_crc(f"{int(rid)} OK MEASURE {self.measure_fields}")
        action = self._action(verb.decode("ascii"))
        if action == "late":
            self._emit(now + self.late_s, reply)
        elif action in ("reset", "dead"):
            self.boot(now)
            self.mode = "mute" if action == "dead" else self.mode
        else:
            for dt, data in render_reply(action, line, reply):
                self._emit(now + dt, data)

    def _window(self, ms: int) -> Window:
        """A synthetic window at ``rate_hz``: ``levels`` as sines, ``led_fraction`` lit."""
        n = max(1, ms * self.rate_hz // 1000)
        analog = [synth_samples(n, mean, amp) for mean, amp in self.levels]
        lit = [int(round(f * n)) for f in self.led_fraction]
        return Window(analog, lit, ms, n * 1_000_000 // self.rate_hz, led_counts=True)


class FakeSerial:
    """Serial-like object in front of a :class:`FakeDevice` (real time, no threads)."""

    def __init__(self, device: FakeDevice, *, port: str = "fake://", timeout: float = 0.02,
                 boot_on_open: bool = True) -> None:
        self.device = device
        self.port = port
        self.timeout = timeout
        self.is_open = True
        self.written = bytearray()
        self._rx = bytearray()
        if boot_on_open:
            device.boot(time.monotonic())

    def _pull(self) -> None:
        self._rx += self.device.take(time.monotonic())

    @property
    def in_waiting(self) -> int:
        self._pull()
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        deadline = time.monotonic() + (self.timeout or 0.0)
        while True:
            self._pull()
            if len(self._rx) >= size:
                break
            now = time.monotonic()
            if now >= deadline:
                break
            due = self.device.next_due()
            wait = deadline - now if due is None else min(deadline, due) - now
            time.sleep(max(0.0, min(wait, 0.005)))
        out = bytes(self._rx[:size])
        del self._rx[:size]
        return out

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise OSError("port closed")
        self.written += data
        self.device.feed(bytes(data), time.monotonic())
        return len(data)

    def flush(self) -> None:
        pass

    def reset_input_buffer(self) -> None:
        self._pull()
        self._rx.clear()

    def close(self) -> None:
        self.is_open = False


class PtyFake:
    """Serve a :class:`FakeDevice` on a real pseudo-terminal from a thread.

    ``boot_on_first_byte`` emulates the Uno's DTR reset on open (the fake cannot see the
    open itself): the first bytes the host sends start a boot (swallowed input, banner
    after ``boot_s``). Otherwise the board is already running, like a clone without
    auto-reset. Use as a context manager; ``path`` is the slave device to open.
    """

    def __init__(self, device: FakeDevice, *, boot_on_first_byte: bool = False) -> None:
        self.device = device
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)            # no echo/CR translation before pyserial opens it
        self.path = os.ttyname(self.slave)
        self._boot_pending = boot_on_first_byte
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="PtyFake", daemon=True)
        self.received = bytearray()

    def __enter__(self) -> PtyFake:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def _serve(self) -> None:
        dev = self.device
        while not self._stop.is_set():
            now = time.monotonic()
            due = dev.next_due()
            wait = 0.05 if due is None else max(0.0, min(0.05, due - now))
            try:
                r, _, _ = select.select([self.master], [], [], wait)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            if r:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                if data:
                    self.received += data
                    with dev.lock:
                        if self._boot_pending:
                            self._boot_pending = False
                            dev.boot(now)
                        dev.feed(data, now)
            with dev.lock:
                out = dev.take(time.monotonic())
            if out:
                try:
                    os.write(self.master, out)
                except OSError:
                    return
