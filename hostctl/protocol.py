"""Wire protocol v1 of the hostctl probe (see firmware/PROTOCOL.md): encode, parse, check.

Pure Python (no torch, no serial): the host client, the simulated devices and the tests
all share this one implementation, so a disagreement with the firmware shows up in one
place. Every malformed line from a device raises :class:`hostctl.errors.ProtocolError`
and nothing else, so callers can discard it and retry.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from hostctl.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_COMMAND_LINE = 80  # bytes, including the "\n"
ERRORS = {1: "unknown-command", 2: "bad-syntax", 3: "line-too-long", 4: "bad-crc",
          5: "bad-argument", 6: "unsupported-version", 7: "busy"}
ERR_UNKNOWN_COMMAND, ERR_BAD_SYNTAX, ERR_LINE_TOO_LONG, ERR_BAD_CRC = 1, 2, 3, 4
ERR_BAD_ARGUMENT, ERR_UNSUPPORTED_VERSION, ERR_BUSY = 5, 6, 7

_ID_RE = re.compile(r"(?:0|[1-9][0-9]{0,4})\Z")
_VERB_RE = re.compile(r"[A-Z]+\Z")
_KEY_RE = re.compile(r"[a-z0-9_]+\Z")
_REASON_RE = re.compile(r"[a-z0-9_-]+\Z")
_CRC_RE = re.compile(r"\*([0-9A-F]{4})\Z")
_UINT_RE = re.compile(r"[0-9]+\Z")
_MILLI_RE = re.compile(r"([0-9]+)\.([0-9]{3})\Z")


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR).

    That is exactly ``binascii.crc_hqx`` started at 0xFFFF (C, ~40x a Python table loop);
    tests/test_protocol.py checks it against the firmware's vectors and a bitwise reference.
    """
    return binascii.crc_hqx(data, 0xFFFF)


def with_crc(text: str) -> bytes:
    """``text`` + `` *XXXX`` + ``\\n``, the CRC covering the bytes of ``text``."""
    raw = text.encode("ascii")
    return raw + b" *%04X\n" % crc16(raw)


def encode_command(cmd_id: int, verb: str, *args: object) -> bytes:
    """One command line, CRC appended, ``\\n``-terminated.

    Raises ValueError for an id/verb/argument the protocol cannot carry (a caller bug,
    not a device fault).
    """
    if not isinstance(cmd_id, int) or isinstance(cmd_id, bool) or not 1 <= cmd_id <= 65535:
        raise ValueError(f"command id must be an integer in 1..65535, got {cmd_id!r}")
    if not _VERB_RE.match(verb):
        raise ValueError(f"command verb must be uppercase letters, got {verb!r}")
    parts = [str(cmd_id), verb]
    for a in args:
        s = str(a)
        if not s or any(not (0x21 <= ord(ch) <= 0x7E) for ch in s) or s.startswith("*"):
            raise ValueError(f"command argument {s!r} is empty, has spaces or non-ASCII")
        parts.append(s)
    line = with_crc(" ".join(parts))
    if len(line) > MAX_COMMAND_LINE:
        raise ValueError(f"command line is {len(line)} bytes, the limit is {MAX_COMMAND_LINE}")
    return line


def split_crc(text: str) -> tuple[str, int | None, bool]:
    """Split ``"body *XXXX"`` -> (body, crc, present). No CRC -> (text, None, False).

    A trailing ``*`` token that is not exactly four uppercase hex digits counts as a
    present but unreadable CRC (crc None, present True).
    """
    head, sep, tail = text.rpartition(" ")
    if sep and tail.startswith("*"):
        m = _CRC_RE.match(tail)
        return head, (int(m.group(1), 16) if m else None), True
    return text, None, False


@dataclass(frozen=True)
class Reply:
    """One parsed line from the device: a reply to a command or an async line."""

    id: int | None          # None for async lines ("! ...")
    ok: bool
    verb: str               # OK: the verb; async: the event (e.g. "BOOT"); ERR: ""
    fields: dict[str, str] = field(default_factory=dict)
    err_code: int | None = None
    err_reason: str | None = None

    @property
    def is_async(self) -> bool:
        return self.id is None


def _fields(tokens: list[str], line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for tok in tokens:
        key, eq, value = tok.partition("=")
        if not eq or not _KEY_RE.match(key):
            raise ProtocolError(f"malformed field {tok!r} in device line {line!r}")
        if key in out:
            raise ProtocolError(f"duplicated field {key!r} in device line {line!r}")
        out[key] = value
    return out


def parse_reply(line: bytes) -> Reply:
    """Parse one device line (with or without its ``\\r\\n``); check its CRC.

    Raises ProtocolError (only) for a missing/bad CRC, bad bytes or bad syntax.
    """
    if not isinstance(line, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"device line must be bytes, got {type(line).__name__}")
    raw = bytes(line)
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    shown = raw[:100].decode("ascii", "backslashreplace")
    if not raw:
        raise ProtocolError("empty line from device")
    if any(b < 0x20 or b > 0x7E for b in raw):
        raise ProtocolError(f"non-printable bytes in device line {shown!r}")
    text = raw.decode("ascii")
    body, crc, present = split_crc(text)
    if not present:
        raise ProtocolError(f"device line without CRC: {shown!r}")
    if crc is None:
        raise ProtocolError(f"unreadable CRC in device line {shown!r}")
    if crc16(body.encode("ascii")) != crc:
        raise ProtocolError(f"CRC mismatch in device line {shown!r}")
    tokens = body.split(" ")
    if any(t == "" for t in tokens):
        raise ProtocolError(f"bad spacing in device line {shown!r}")
    if tokens[0] == "!":
        if len(tokens) < 2 or not _VERB_RE.match(tokens[1]):
            raise ProtocolError(f"bad async line {shown!r}")
        return Reply(None, True, tokens[1], _fields(tokens[2:], shown))
    if not _ID_RE.match(tokens[0]) or int(tokens[0]) > 65535:
        raise ProtocolError(f"bad reply id in device line {shown!r}")
    rid = int(tokens[0])
    if len(tokens) >= 3 and tokens[1] == "OK":
        if not _VERB_RE.match(tokens[2]):
            raise ProtocolError(f"bad verb in device line {shown!r}")
        return Reply(rid, True, tokens[2], _fields(tokens[3:], shown))
    if len(tokens) == 4 and tokens[1] == "ERR":
        code_s, reason = tokens[2], tokens[3]
        if not _UINT_RE.match(code_s) or len(code_s) > 5 or not _REASON_RE.match(reason):
            raise ProtocolError(f"bad error reply {shown!r}")
        return Reply(rid, False, "", {}, int(code_s), reason)
    raise ProtocolError(f"not an OK/ERR reply or async line: {shown!r}")


@dataclass(frozen=True)
class ChannelStats:
    """One analog channel over a window, in ADC counts (rms is AC: mean removed)."""

    n: int
    mean: float
    rms: float
    min: int
    max: int


@dataclass(frozen=True)
class MeasureResult:
    """A parsed ``OK MEASURE`` reply."""

    ms: int
    n: int
    rate_hz: int
    analog: tuple[ChannelStats, ...]   # a0 (reference), a1 low, a2 band, a3 high
    led_lit: tuple[int, int, int]      # D2 low, D3 band, D4 high

    @property
    def led_fraction(self) -> tuple[float, float, float]:
        return tuple(x / self.n for x in self.led_lit)  # type: ignore[return-value]


def _uint(fields: dict[str, str], key: str, what: str) -> int:
    if key not in fields:
        raise ProtocolError(f"MEASURE reply lacks {key}=")
    s = fields[key]
    if not _UINT_RE.match(s) or len(s) > 12:
        raise ProtocolError(f"MEASURE reply {key}={s!r} is not {what}")
    return int(s)


def _milli(s: str, key: str) -> float:
    m = _MILLI_RE.match(s)
    if not m or len(m.group(1)) > 9:
        raise ProtocolError(f"MEASURE reply {key}: {s!r} is not a number with 3 decimals")
    return int(m.group(1)) + int(m.group(2)) / 1000.0


def parse_measure(reply: Reply) -> MeasureResult:
    """Turn an ``OK MEASURE`` reply into numbers; ProtocolError if anything is off."""
    if not reply.ok or reply.verb != "MEASURE" or reply.id is None:
        raise ProtocolError(f"not an OK MEASURE reply (verb {reply.verb!r}, ok={reply.ok})")
    f = reply.fields
    ms = _uint(f, "ms", "an integer")
    n = _uint(f, "n", "an integer")
    rate = _uint(f, "rate_hz", "an integer")
    if n == 0:
        raise ProtocolError("MEASURE reply with n=0 rounds")
    analog = []
    for i in range(4):
        key = f"a{i}"
        if key not in f:
            raise ProtocolError(f"MEASURE reply lacks {key}=")
        parts = f[key].split(",")
        if len(parts) != 4:
            raise ProtocolError(f"MEASURE reply {key}={f[key]!r} needs mean,rms,min,max")
        mean, rms = _milli(parts[0], key), _milli(parts[1], key)
        lo_hi = []
        for p in parts[2:]:
            if not _UINT_RE.match(p) or len(p) > 6:
                raise ProtocolError(f"MEASURE reply {key}: {p!r} is not an integer count")
            lo_hi.append(int(p))
        lo, hi = lo_hi
        if not (lo <= mean <= hi + 1e-9) or lo > hi:
            raise ProtocolError(f"MEASURE reply {key}={f[key]!r}: mean outside min..max")
        analog.append(ChannelStats(n, mean, rms, lo, hi))
    if "led" not in f:
        raise ProtocolError("MEASURE reply lacks led=")
    lparts = f["led"].split(",")
    if len(lparts) != 3 or not all(_UINT_RE.match(p) and len(p) <= 12 for p in lparts):
        raise ProtocolError(f"MEASURE reply led={f['led']!r} needs three integer counts")
    lit = tuple(int(p) for p in lparts)
    if any(x > n for x in lit):
        raise ProtocolError(f"MEASURE reply led={f['led']!r}: more lit rounds than n={n}")
    return MeasureResult(ms, n, rate, tuple(analog), lit)  # type: ignore[arg-type]


def channel_stats_fields(samples: Sequence[int]) -> tuple[int, int, int, int]:
    """(mean_milli, rms_milli, min, max) with exactly the firmware's integer arithmetic."""
    n = len(samples)
    if n == 0:
        raise ValueError("channel_stats_fields needs at least one sample")
    s = 0
    q = 0
    lo = hi = int(samples[0])
    for x in samples:
        x = int(x)
        s += x
        q += x * x
        if x < lo:
            lo = x
        if x > hi:
            hi = x
    mean_milli = (s * 1000 + n // 2) // n
    v = (n * q - s * s) // n
    rms_milli = math.isqrt(v * 1000000 // n)
    return mean_milli, rms_milli, lo, hi


def format_milli(v: int) -> str:
    """Fixed-point thousandths as the firmware prints them: 511734 -> "511.734"."""
    v = int(v)
    sign = "-" if v < 0 else ""
    v = abs(v)
    return f"{sign}{v // 1000}.{v % 1000:03d}"


def format_stats(samples: Sequence[int]) -> str:
    """``mean,rms,min,max`` as in a MEASURE reply's ``aN=`` field."""
    m, r, lo, hi = channel_stats_fields(samples)
    return f"{format_milli(m)},{format_milli(r)},{lo},{hi}"


__all__ = ["PROTOCOL_VERSION", "MAX_COMMAND_LINE", "ERRORS", "crc16", "with_crc",
           "encode_command", "split_crc", "Reply", "parse_reply", "ChannelStats",
           "MeasureResult", "parse_measure", "channel_stats_fields", "format_milli",
           "format_stats"]
