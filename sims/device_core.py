"""A Python mirror of the probe firmware's command handling (firmware/PROTOCOL.md, v1).

Feed it the bytes the host sends; it returns the reply lines the firmware would send,
byte for byte. The physics is not here: MEASURE asks a callback for one window of raw
samples (what the ADC and the LED pins read), and the statistics are then computed with
the firmware's integer formulas (:func:`hostctl.protocol.channel_stats_fields`). The
virtual bench (sims/bench.py) supplies the callback; the tests feed it the shared vectors
in firmware/vectors/.

Line handling, in the order the checks are made (decided here where PROTOCOL.md is
silent, and checked against firmware/vectors/ when present):

1. Bytes are collected up to ``\\n``. At most 79 bytes may precede it (80 with the
   ``\\n``); a longer line is discarded to the next ``\\n`` -> ``ERR 3 line-too-long``.
   One ``\\r`` just before ``\\n`` is dropped (it still counts toward the 80 bytes).
2. An empty line (``\\n`` or ``\\r\\n`` alone) gets no reply (hitting Enter in a terminal).
3. Any byte outside 0x20..0x7E -> ``ERR 2 bad-syntax``.
4. A last token starting with ``*`` is the CRC: not ``*`` + 4 uppercase hex digits, or
   not matching -> ``ERR 4 bad-crc``.
5. Tokens are separated by single spaces; an empty token -> ``ERR 2``.
6. The id must be 1..65535 without leading zeros, and a verb must follow -> else ``ERR 2``.
7. Unknown verb -> ``ERR 1``; wrong argument count -> ``ERR 2``; a non-number or
   out-of-range number -> ``ERR 5``; HELLO whose range excludes 1 -> ``ERR 6``.

Every ERR reply carries the command's id when the first token is a valid id (also for
errors 2, 3 and 4), else id 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hostctl.protocol import (
    ERRORS,
    MAX_COMMAND_LINE,
    PROTOCOL_VERSION,
    crc16,
    format_milli,
    split_crc,
    with_crc,
)

_ID_RE = re.compile(rb"[1-9][0-9]{0,4}\Z")
_NUM_RE = re.compile(r"[0-9]{1,9}\Z")

MEASURE_MIN_MS = 1
MEASURE_MAX_MS = 5000
MAX_ROUNDS = 65535

DEFAULT_IDENTITY: dict[str, str] = {
    "fw": "hostctl-probe/1.0.0",
    "board": "uno",
    "mcu": "atmega328p",
    "f_cpu": "16000000",
    "adc_bits": "10",
    "vref_mv": "5000",
    "channels": "4",
    "leds": "3",
}


@dataclass
class Window:
    """What the firmware saw during one MEASURE window (raw, before statistics).

    ``analog``: 4 sequences (A0..A3) of ``n`` raw counts; ``led``: 3 sequences (D2..D4)
    of ``n`` pin reads (0/1), or 3 lit counts when ``led_counts`` is set.
    ``elapsed_ms`` is the millis() difference, ``elapsed_us`` the micros() difference.
    """

    analog: Sequence[Sequence[int]]
    led: Sequence[Sequence[int]] | Sequence[int]
    elapsed_ms: int
    elapsed_us: int
    led_counts: bool = False

    @property
    def n(self) -> int:
        return len(self.analog[0])


MeasureFn = Callable[[int], Window]


def stats_from_sums(n: int, s: int, q: int, lo: int, hi: int) -> str:
    """``mean,rms,min,max`` from the firmware's sums (same arithmetic as protocol.py)."""
    import math

    mean_milli = (s * 1000 + n // 2) // n
    v = (n * q - s * s) // n
    rms_milli = math.isqrt(v * 1000000 // n)
    return f"{format_milli(mean_milli)},{format_milli(rms_milli)},{lo},{hi}"


def _channel_field(samples: Sequence[int]) -> str:
    n = len(samples)
    try:  # numpy arrays: exact int64 sums without a Python loop per sample
        import numpy as np

        if isinstance(samples, np.ndarray):
            a = samples.astype(np.int64)
            return stats_from_sums(n, int(a.sum()), int((a * a).sum()), int(a.min()),
                                   int(a.max()))
    except ImportError:  # pragma: no cover
        pass
    xs = [int(x) for x in samples]
    return stats_from_sums(n, sum(xs), sum(x * x for x in xs), min(xs), max(xs))


def boot_banner(identity: dict[str, str] | None = None, protocol: int = PROTOCOL_VERSION
                ) -> bytes:
    ident = identity or DEFAULT_IDENTITY
    return with_crc(f"! BOOT fw={ident['fw']} proto={protocol}")


def err_line(cmd_id: int, code: int) -> bytes:
    return with_crc(f"{cmd_id} ERR {code} {ERRORS[code]}")


@dataclass
class DeviceCore:
    """Byte-level command handler of one probe. Not thread-safe (one per device).

    ``protocol``: the version this firmware speaks (another one: a probe the host must
    refuse, as a test's fake of a newer firmware)."""

    measure: MeasureFn
    nominal_rate_hz: int = 9000
    identity: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_IDENTITY))
    protocol: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        self.reset()

    # --------------------------------------------------------------- state
    def reset(self) -> bytes:
        """Power-on/reset state; returns the boot banner the firmware sends."""
        self._buf = bytearray()
        self._overflow = False
        self.rate_hz = int(self.nominal_rate_hz)
        self.lines = 0          # complete command lines seen (incl. errors, not empty ones)
        return boot_banner(self.identity, self.protocol)

    @property
    def pending(self) -> bytes:
        """Bytes of an unfinished line (for fault injection and tests)."""
        return bytes(self._buf)

    # --------------------------------------------------------------- input
    def feed(self, data: bytes) -> list[bytes]:
        """Consume bytes; return one reply line (``...\\n``) per completed command line."""
        out: list[bytes] = []
        for b in data:
            r = self.feed_byte(b)
            if r is not None:
                out.append(r)
        return out

    def feed_byte(self, b: int) -> bytes | None:
        if b != 0x0A:
            if len(self._buf) < MAX_COMMAND_LINE - 1:
                self._buf.append(b)
            else:
                self._overflow = True
            return None
        line = bytes(self._buf)
        overflow = self._overflow
        self._buf.clear()
        self._overflow = False
        if overflow:
            self.lines += 1
            return err_line(_readable_id(line), 3)
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return None
        self.lines += 1
        return self.handle_line(line)

    # --------------------------------------------------------------- one line
    def handle_line(self, line: bytes) -> bytes:
        """Reply to one complete command line (without ``\\r\\n``)."""
        rid = _readable_id(line)
        if any(b < 0x20 or b > 0x7E for b in line):
            return err_line(rid, 2)
        text = line.decode("ascii")
        body, crc, present = split_crc(text)
        if present and (crc is None or crc16(body.encode("ascii")) != crc):
            return err_line(rid, 4)
        tokens = body.split(" ")
        if any(t == "" for t in tokens) or rid == 0 or len(tokens) < 2:
            return err_line(rid, 2)
        verb, args = tokens[1], tokens[2:]
        if verb == "HELLO":
            if len(args) != 2:
                return err_line(rid, 2)
            lo, hi = _number(args[0]), _number(args[1])
            if lo is None or hi is None or lo > 65535 or hi > 65535:
                return err_line(rid, 5)
            if not lo <= self.protocol <= hi:
                return err_line(rid, 6)
            return self._identity_reply(rid, "HELLO")
        if verb == "ID":
            if args:
                return err_line(rid, 2)
            return self._identity_reply(rid, "ID")
        if verb == "PING":
            if args:
                return err_line(rid, 2)
            return with_crc(f"{rid} OK PING")
        if verb == "MEASURE":
            if len(args) != 1:
                return err_line(rid, 2)
            ms = _number(args[0])
            if ms is None or not MEASURE_MIN_MS <= ms <= MEASURE_MAX_MS:
                return err_line(rid, 5)
            return self._measure_reply(rid, ms)
        return err_line(rid, 1)

    def _identity_reply(self, rid: int, verb: str) -> bytes:
        i = self.identity
        return with_crc(
            f"{rid} OK {verb} proto={self.protocol} fw={i['fw']} board={i['board']} "
            f"mcu={i['mcu']} f_cpu={i['f_cpu']} adc_bits={i['adc_bits']} "
            f"vref_mv={i['vref_mv']} channels={i['channels']} leds={i['leds']} "
            f"rate_hz={self.rate_hz}")

    def _measure_reply(self, rid: int, ms: int) -> bytes:
        w = self.measure(ms)
        n = w.n
        if not 1 <= n <= MAX_ROUNDS or len(w.analog) != 4 or len(w.led) != 3:
            raise ValueError(f"measure callback returned a bad window (n={n})")
        if w.led_counts:
            lit = [int(x) for x in w.led]  # type: ignore[arg-type]
        else:
            lit = [int(sum(int(x) for x in pin)) for pin in w.led]  # type: ignore[union-attr]
        self.rate_hz = n * 1000000 // max(1, int(w.elapsed_us))
        fields = " ".join(f"a{i}={_channel_field(ch)}" for i, ch in enumerate(w.analog))
        return with_crc(f"{rid} OK MEASURE ms={int(w.elapsed_ms)} n={n} rate_hz={self.rate_hz} "
                        f"{fields} led={lit[0]},{lit[1]},{lit[2]}")


def _readable_id(line: bytes) -> int:
    """The command id if the line starts with a valid one followed by a space, else 0."""
    head, sep, _ = line.partition(b" ")
    if sep and _ID_RE.match(head):
        v = int(head)
        if v <= 65535:
            return v
    return 0


def _number(s: str) -> int | None:
    return int(s) if _NUM_RE.match(s) else None


__all__ = ["DeviceCore", "Window", "boot_banner", "err_line", "stats_from_sums",
           "DEFAULT_IDENTITY", "MEASURE_MIN_MS", "MEASURE_MAX_MS", "MAX_ROUNDS"]
