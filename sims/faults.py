"""Fault injection for the virtual bench: what goes wrong on a real USB serial link.

Grammar (comma-separated items, order irrelevant, spaces ignored)::

    drop:P          each byte (both directions) is lost with probability P (0..1)
    corrupt:P       each byte gets one random bit flipped with probability P
    dup:P           each byte is sent twice with probability P
    delay:S@N       the N-th reply line is held back S seconds (past the host's timeout);
                    the board is stalled meanwhile, the reply still arrives late
    reset@N         the board reboots on receiving the N-th command line: that command is
                    lost, the boot banner ``! BOOT ...`` follows after the boot time
    disconnect@N    on the N-th command line the board vanishes (USB unplugged): every
                    later read/write raises serial.SerialException (pty: the pty closes)
    unplug:S@N      like disconnect@N, but the board is plugged back in S (simulated)
                    seconds later: re-opening the port then works and reboots it
                    (in-process ``sim://`` only; on the pty it is a disconnect)
    mute@N          the sound card plays nothing during the N-th MEASURE window (a
                    glitch: the reference input A0 sees silence)
    ACTION@N        what the link does to the N-th command's reply (:data:`REPLY_ACTIONS`):
                    garbage (non-protocol bytes and a text line first), badcrc (a wrong
                    CRC), stray (an old id's reply first), silent (no reply), longline
                    (2000 bytes without a newline first), split (in two halves 50 ms
                    apart), half (only the first half), echo (the command line first),
                    err:CODE (``ERR CODE`` instead), dead (reboots, then never answers)

N counts from 1 over the whole session (since the bench was created; reboots do not
restart the count): "command" = a complete line received by the board (empty lines
excluded), "reply" = a reply line the board sends (banners excluded), "window" = a
MEASURE window the board runs. ``delay``, ``reset``, ``disconnect``, ``unplug`` and
``mute`` may be repeated with different N.
Example: ``drop:0.01,corrupt:0.01,dup:0.01,delay:2.0@5,reset@7,disconnect@9``.

The random byte faults draw from their own stream seeded by the bench seed, so the same
seed and the same host traffic give the same bytes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from hostctl.errors import DeviceError, InputError
from sims.wiring import Wiring, is_wiring
from sims.wiring import parse_item as parse_wiring_item

GRAMMAR = ("drop:P, corrupt:P, dup:P (P in 0..1), delay:SECONDS@N, reset@N, disconnect@N, "
           "unplug:SECONDS@N, mute@N, garbage|badcrc|stray|silent|longline|split|half|echo|"
           "dead|err:CODE@N (N >= 1), wiring (sims/wiring.py): dead:A<n>, noref, "
           "bias:A<n>=VOLTS, swap:A<n>-A<m>; comma-separated")

#: what a link can do to one command's reply (the virtual bench's ACTION@N items and the
#: test fake's per-verb scripts, tests/fakeprobe.py): besides ``err:CODE``, and ``ok``
#: (the reply as it is), ``late`` (held back: the bench's delay:S@N) and ``reset``
REPLY_ACTIONS = ("garbage", "badcrc", "stray", "silent", "longline", "split", "half", "echo",
                 "dead")
#: the pause inside a ``split`` reply (seconds)
SPLIT_PAUSE_S = 0.05


class Disconnected(DeviceError):
    """The simulated board was unplugged (fault ``disconnect@N``)."""


@dataclass
class FaultConfig:
    """Parsed fault specification (see the module docstring)."""

    drop: float = 0.0
    corrupt: float = 0.0
    dup: float = 0.0
    delays: dict[int, float] = field(default_factory=dict)   # reply number -> seconds
    resets: set[int] = field(default_factory=set)             # command numbers
    disconnects: set[int] = field(default_factory=set)        # command numbers
    unplugs: dict[int, float] = field(default_factory=dict)   # command number -> seconds
    mutes: set[int] = field(default_factory=set)              # MEASURE window numbers
    replies: dict[int, str] = field(default_factory=dict)     # command number -> action
    #: what the pins read when the probe is miswired (sims/wiring.py)
    wiring: Wiring = field(default_factory=Wiring)

    @property
    def byte_faults(self) -> bool:
        return self.drop > 0 or self.corrupt > 0 or self.dup > 0

    def __str__(self) -> str:
        items = [f"{k}:{getattr(self, k)!r}" for k in ("drop", "corrupt", "dup")
                 if getattr(self, k)]
        items += [f"delay:{s!r}@{n}" for n, s in sorted(self.delays.items())]
        items += [f"reset@{n}" for n in sorted(self.resets)]
        items += [f"disconnect@{n}" for n in sorted(self.disconnects)]
        items += [f"unplug:{s!r}@{n}" for n, s in sorted(self.unplugs.items())]
        items += [f"mute@{n}" for n in sorted(self.mutes)]
        items += [f"{a}@{n}" for n, a in sorted(self.replies.items())]
        items += [str(self.wiring)] if self.wiring else []
        return ",".join(items)


def _prob(name: str, s: str, spec: str) -> float:
    try:
        p = float(s)
    except ValueError:
        raise InputError(f"faults '{spec}': {name} needs a probability, got '{s}' "
                         f"(grammar: {GRAMMAR})") from None
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise InputError(f"faults '{spec}': {name} probability {s} is not in 0..1")
    return p


def _count(name: str, s: str, spec: str) -> int:
    if not s.isdigit() or int(s) < 1:
        raise InputError(f"faults '{spec}': {name}@N needs a whole number N >= 1, got '{s}'")
    return int(s)


def parse_faults(spec: str | None) -> FaultConfig:
    """Parse the grammar above; InputError naming the bad item otherwise."""
    cfg = FaultConfig()
    if spec is None:
        return cfg
    for raw in spec.replace(" ", "").split(","):
        if not raw:
            continue
        if raw.startswith(("drop:", "corrupt:", "dup:")):
            name, _, val = raw.partition(":")
            setattr(cfg, name, _prob(name, val, spec))
        elif raw.startswith(("delay:", "unplug:")):
            name, _, body = raw.partition(":")
            secs, at, n = body.partition("@")
            if not at:
                raise InputError(f"faults '{spec}': {name} needs SECONDS@N, got '{raw}'")
            try:
                s = float(secs)
            except ValueError:
                s = -1.0
            if not (math.isfinite(s) and 0 <= s <= 3600):
                raise InputError(f"faults '{spec}': {name} seconds '{secs}' not in 0..3600")
            (cfg.delays if name == "delay" else cfg.unplugs)[_count(name, n, spec)] = s
        elif raw.startswith("reset@"):
            cfg.resets.add(_count("reset", raw[len("reset@"):], spec))
        elif raw.startswith("disconnect@"):
            cfg.disconnects.add(_count("disconnect", raw[len("disconnect@"):], spec))
        elif raw.startswith("mute@"):
            cfg.mutes.add(_count("mute", raw[len("mute@"):], spec))
        elif _is_reply_item(raw):
            action, _, n = raw.rpartition("@")
            cfg.replies[_count(action, n, spec)] = check_action(action, spec)
        elif is_wiring(raw):
            parse_wiring_item(cfg.wiring, raw, spec)
        else:
            raise InputError(f"faults '{spec}': unknown item '{raw}' (grammar: {GRAMMAR})")
    return cfg


def _is_reply_item(raw: str) -> bool:
    action = raw.rpartition("@")[0]
    return action in REPLY_ACTIONS or action.startswith("err:")


def check_action(action: str, spec: str = "") -> str:
    """A reply action of :data:`REPLY_ACTIONS` (or ``err:CODE``, ``ok``, ``late``,
    ``reset``), else InputError naming it."""
    from hostctl.protocol import ERRORS

    if action in REPLY_ACTIONS or action in ("ok", "late", "reset"):
        return action
    code = action[4:] if action.startswith("err:") else ""
    if code.isdigit() and int(code) in ERRORS:
        return action
    raise InputError(f"faults '{spec or action}': unknown reply action '{action}' (known: "
                     f"{', '.join(REPLY_ACTIONS)}, err:CODE with CODE in "
                     f"{min(ERRORS)}..{max(ERRORS)})")


def render_reply(action: str, line: bytes, reply: bytes) -> list[tuple[float, bytes]]:
    """The bytes ``action`` puts on the wire in answer to ``line`` instead of ``reply``,
    each with its delay (s) after the reply was due. ``silent`` and ``dead`` send nothing
    (the caller reboots a dead board); ``late`` and ``reset`` are the caller's (timing and
    state)."""
    from hostctl.protocol import ERRORS, with_crc

    head = line.split(b" ")
    rid = int(head[0]) if head[0].isdigit() else 0
    verb = head[1].decode("ascii", "replace") if len(head) > 1 else "?"
    half = len(reply) // 2
    if action == "garbage":
        return [(0.0, b"\x00\xff\x14\x10 \xfe\xfdnoise\r\nNOT A PROTOCOL LINE\n" + reply)]
    if action == "badcrc":
        good = reply.rstrip(b"\n")
        return [(0.0, good[:-4] + b"%04X\n" % (int(good[-4:], 16) ^ 0x5A5A))]
    if action == "stray":
        return [(0.0, with_crc(f"{max(1, rid - 7)} OK {verb}") + reply)]
    if action in ("silent", "dead"):
        return []
    if action == "longline":
        return [(0.0, b"x" * 2000 + b"\n" + reply)]
    if action == "split":
        return [(0.0, reply[:half]), (SPLIT_PAUSE_S, reply[half:])]
    if action == "half":
        return [(0.0, reply[:half])]
    if action == "echo":
        return [(0.0, line + b"\n" + reply)]
    if action.startswith("err:"):
        code = int(action[4:])
        return [(0.0, with_crc(f"{rid} ERR {code} {ERRORS[code]}"))]
    return [(0.0, reply)]


class ByteFaults:
    """Applies the per-byte faults of a config with a seeded random stream."""

    def __init__(self, cfg: FaultConfig, seed: int) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"hostctl-faults-{seed}")
        self.counts = {"dropped": 0, "corrupted": 0, "duplicated": 0}

    def apply(self, data: bytes) -> bytes:
        c = self.cfg
        if not c.byte_faults:
            return data
        out = bytearray()
        rnd = self.rng.random
        for b in data:
            if c.drop and rnd() < c.drop:
                self.counts["dropped"] += 1
                continue
            if c.corrupt and rnd() < c.corrupt:
                b ^= 1 << self.rng.randrange(8)
                self.counts["corrupted"] += 1
            out.append(b)
            if c.dup and rnd() < c.dup:
                out.append(b)
                self.counts["duplicated"] += 1
        return bytes(out)


__all__ = ["FaultConfig", "ByteFaults", "parse_faults", "GRAMMAR", "REPLY_ACTIONS",
           "check_action", "render_reply"]
