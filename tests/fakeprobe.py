"""A scripted fake hostctl probe for tests: the protocol plus the ways a real link fails.

:class:`FakeDevice` is the device logic. It speaks firmware/PROTOCOL.md (built on
:mod:`hostctl.protocol`'s ``with_crc``/``channel_stats_fields``, the one shared
implementation) and misbehaves on cue: per verb, a queue of actions is consumed one per
command (``fake.script("MEASURE", "garbage", "late", "ok")``); when a queue is empty the
device answers normally. Actions:

``ok``        the normal reply
``garbage``   a burst of non-protocol bytes and a text line, then the reply
``badcrc``    the reply with a wrong CRC (and nothing else)
``stray``     a valid reply carrying an older id first, then the reply
``late``      the reply ``late_s`` seconds later (past the host's timeout)
``reset``     the command is lost, the board reboots: ``! BOOT`` after ``boot_s``
``dead``      like ``reset`` (banner included), but afterwards the board never answers
``silent``    no reply at all
``longline``  2000 bytes without a newline, then a newline and the reply
``split``     the reply in two halves with a pause between them
``half``      only the first half of the reply (the rest is lost)
``err:N``     ``ERR N`` for this command
``echo``      the command line itself comes back, then the reply

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

from hostctl.protocol import channel_stats_fields, crc16, format_milli, with_crc

FW = "hostctl-probe/1.0.0"

#: A reply with hand-chosen numbers (PROTOCOL.md's example): tests assert these exactly.
EXAMPLE_MEASURE = ("ms=200 n=480 rate_hz=2400 a0=511.734,72.118,409,614 "
                   "a1=510.250,50.500,440,580 a2=512.000,36.059,460,563 "
                   "a3=511.000,7.211,500,522 led=0,120,0")


def synth_samples(n: int, mean: float, amp: float, step: float = 0.1234567) -> list[int]:
    """Deterministic 10-bit samples of a sine at non-repeating phases."""
    return [max(0, min(1023, int(math.floor(mean + amp * math.sin(2 * math.pi * step * k)))))
            for k in range(n)]


@dataclass
class FakeDevice:
    """Protocol logic of a probe with scripted faults; time is passed in by the transport."""

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
    identity: dict[str, str] = field(default_factory=lambda: {
        "fw": FW, "board": "uno", "mcu": "atmega328p", "f_cpu": "16000000",
        "adc_bits": "10", "vref_mv": "5000", "channels": "4", "leds": "3"})

    def __post_init__(self) -> None:
        self._scripts: dict[str, deque[str]] = {}
        self._out: list[tuple[float, bytes]] = []   # (due time, bytes), kept sorted
        self._inbuf = bytearray()
        self._booting_until = -1.0
        self._last_id = 0
        self.lines_in: list[bytes] = []            # every complete line the device got
        self.times_in: list[float] = []            # ... and when
        self.boot_ends: list[float] = []           # when each boot finished (banner time)
        self.boots = 0
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ scripting
    def script(self, verb: str, *actions: str) -> FakeDevice:
        self._scripts.setdefault(verb, deque()).extend(actions)
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
        self._inbuf.clear()
        self._booting_until = now + self.boot_s
        self.boot_ends.append(self._booting_until)
        if self.mode in ("probe", "proto2") and self.banner:
            proto = 2 if self.mode == "proto2" else 1
            self._emit(self._booting_until, with_crc(f"! BOOT fw={self.identity['fw']} "
                                                     f"proto={proto}"))

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
        if self.mode == "mute":
            return
        if now < self._booting_until:
            return
        for b in data:
            if b == 0x0A:
                line = bytes(self._inbuf).rstrip(b"\r")
                self._inbuf.clear()
                if line:
                    self.lines_in.append(line)
                    self.times_in.append(now)
                    self._handle(line, now)
            elif len(self._inbuf) < 200:
                self._inbuf.append(b)

    def _handle(self, line: bytes, now: float) -> None:
        if self.mode == "noise":     # wrong baud rate: bytes, but never a newline
            self._emit(now, bytes((37 * i + 11) % 256 for i in range(1500)).replace(b"\n", b"?"))
            return
        if self.mode == "chatter":
            self._emit(now, b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9*47\r\n"
                            b"hello from a different gadget\r\n")
            return
        text = line.decode("ascii", "replace")
        body, _, tail = text.rpartition(" ")
        if not tail.startswith("*"):
            body = text
        elif crc16(body.encode()) != int(tail[1:], 16):
            head = body.split(" ")[0]
            self._emit(now, with_crc(f"{head if head.isdigit() else 0} ERR 4 bad-crc"))
            return
        tokens = body.split(" ")
        if len(tokens) < 2 or not tokens[0].isdigit():
            self._emit(now, with_crc("0 ERR 2 bad-syntax"))
            return
        rid, verb, args = int(tokens[0]), tokens[1], tokens[2:]
        action = self._action(verb)
        reply = self._reply(rid, verb, args)
        self._last_id = rid
        self._perform(action, rid, verb, line, reply, now)

    def _reply(self, rid: int, verb: str, args: list[str]) -> bytes:
        ident = " ".join(f"{k}={v}" for k, v in self.identity.items())
        proto = 2 if self.mode == "proto2" else 1
        if verb == "HELLO":
            lo, hi = int(args[0]), int(args[1])
            if not lo <= proto <= hi:
                return with_crc(f"{rid} ERR 6 unsupported-version")
            return with_crc(f"{rid} OK HELLO proto={proto} {ident} rate_hz={self.rate_hz}")
        if verb == "ID":
            return with_crc(f"{rid} OK ID proto={proto} {ident} rate_hz={self.rate_hz}")
        if verb == "PING":
            return with_crc(f"{rid} OK PING")
        if verb == "MEASURE":
            ms = int(args[0])
            if not 1 <= ms <= 5000:
                return with_crc(f"{rid} ERR 5 bad-argument")
            return with_crc(f"{rid} OK MEASURE {self.measure_body(ms)}")
        return with_crc(f"{rid} ERR 1 unknown-command")

    def measure_body(self, ms: int) -> str:
        """The MEASURE reply fields (fixed ``measure_fields`` or synthesised)."""
        if self.measure_fields is not None:
            return self.measure_fields
        n = max(1, ms * self.rate_hz // 1000)
        parts = [f"ms={ms} n={n} rate_hz={self.rate_hz}"]
        for i, (mean, amp) in enumerate(self.levels):
            m, r, lo, hi = channel_stats_fields(synth_samples(n, mean, amp))
            parts.append(f"a{i}={format_milli(m)},{format_milli(r)},{lo},{hi}")
        lit = ",".join(str(int(round(f * n))) for f in self.led_fraction)
        parts.append(f"led={lit}")
        return " ".join(parts)

    def _perform(self, action: str, rid: int, verb: str, line: bytes, reply: bytes,
                 now: float) -> None:
        if action == "ok":
            self._emit(now, reply)
        elif action == "garbage":
            self._emit(now, b"\x00\xff\x14\x10 \xfe\xfdnoise" + b"\r\nNOT A PROTOCOL LINE\n"
                       + reply)
        elif action == "badcrc":
            good = reply.rstrip(b"\n")
            crc = int(good[-4:], 16) ^ 0x5A5A
            self._emit(now, good[:-4] + b"%04X\n" % crc)
        elif action == "stray":
            self._emit(now, with_crc(f"{max(1, rid - 7)} OK {verb}") + reply)
        elif action == "late":
            self._emit(now + self.late_s, reply)
        elif action == "reset":
            self.boot(now)
        elif action == "dead":
            self.boot(now)
            self.mode = "mute"
        elif action == "silent":
            pass
        elif action == "longline":
            self._emit(now, b"x" * 2000 + b"\n" + reply)
        elif action == "split":
            half = len(reply) // 2
            self._emit(now, reply[:half])
            self._emit(now + 0.05, reply[half:])
        elif action == "half":
            self._emit(now, reply[: len(reply) // 2])
        elif action.startswith("err:"):
            code = int(action[4:])
            reason = {1: "unknown-command", 2: "bad-syntax", 3: "line-too-long",
                      4: "bad-crc", 5: "bad-argument", 6: "unsupported-version",
                      7: "busy"}[code]
            self._emit(now, with_crc(f"{rid} ERR {code} {reason}"))
        elif action == "echo":
            self._emit(now, line + b"\n" + reply)
        else:  # pragma: no cover - test bug
            raise ValueError(f"unknown fake action {action!r}")


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
