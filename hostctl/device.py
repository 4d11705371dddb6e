"""The probe over serial: open, handshake, one command at a time, survive a noisy line.

The wire format (CRC, ids, replies) lives in :mod:`hostctl.protocol`, reading and writing
lines in :mod:`hostctl.link`, the HELLO exchange in :mod:`hostctl.handshake`; this module
is the *transport discipline* of firmware/PROTOCOL.md "Host rules":

- Ports are opened with ``serial.serial_for_url`` so a device path, ``loop://``,
  ``socket://``, ``hwgrep://`` and the virtual bench's ``sim://`` all work alike.
- Opening a Uno resets it (DTR) and its bootloader needs ~1-2 s, so the handshake
  waits for the ``! BOOT`` banner *or* a reply to a HELLO re-sent every 0.5 s (a clone
  without auto-reset never sends a banner) - never a fixed sleep.
- One command in flight; every command has a fresh id; lines with a bad CRC, garbage,
  our own echo and replies with another id (late answers to a timed-out command) are
  dropped and counted in :attr:`Probe.stats` so a report can show how clean the line was.
- A ``! BOOT`` mid-session means the board reset: handshake again and re-send (MEASURE
  is idempotent). Timeouts retry within ``retries``; then a :class:`DeviceTimeout`.
"""

from __future__ import annotations

import errno
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hostctl.errors import (
    DeviceError,
    DeviceReset,
    DeviceTimeout,
    HostctlError,
    LineNoise,
    ProtocolError,
)
from hostctl.handshake import (  # noqa: F401 (part of this module's interface)
    _ANSWER_ERRS,
    BANNER_GRACE_S,
    CONFIRM_ERRS,
    HELLO_INTERVAL_S,
    NOISE_RETRIES,
    PROTO_MAX,
    PROTO_MIN,
    Handshake,
)
from hostctl.link import MAX_LINE, POLL_S, READ_CHUNK, TRACE, DeviceGone  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    import serial

    from hostctl.protocol import MeasureResult, Reply

#: A board that resets more often than this during one command is not coming back.
MAX_RESETS_PER_COMMAND = 3
#: After the port vanishes (USB unplugged), how long to keep re-opening it: a board
#: plugged back in within this time is handshaken again and the command re-sent.
RECONNECT_S = 5.0
#: Pause between re-open attempts on a real port.
RECONNECT_POLL_S = 0.25
#: ERR codes only a command damaged on the way earns (the host's lines are well formed).
_DAMAGE_ERRS = {2, 3, 4}

STAT_KEYS = ("commands", "retries", "timeouts", "crc_errors", "garbage_lines", "long_lines",
             "stray_lines", "echoes", "resets", "reconnects")


@dataclass
class _Tally:
    """What the tries of one command met, for the retry budgets and the final message."""

    budget: int
    start: float
    tries: int = 0
    noise_used: int = 0
    damaged: int = 0        # replies with a bad CRC (their id too, perhaps)
    cut: int = 0            # replies cut off (a lost newline, dropped bytes at the end)
    err_noise: int = 0      # ERR replies earned by a command damaged on the way
    lost: int = 0           # nothing came back
    resets: int = 0
    err_code: int | None = None
    same_err: int = 0
    last_err: str = ""

    @property
    def noisy(self) -> bool:
        return self.damaged + self.cut + self.err_noise > 0


def _open_error(port: str, exc: BaseException) -> DeviceError:
    """Turn an OS/pyserial open failure into one actionable line."""
    code = getattr(exc, "errno", None)
    text = re.sub(r"^\[Errno \d+\] ", "", str(exc))
    text = re.sub(r"^[Cc]ould not open port .*?: (?=\[Errno|[A-Z])", "", text)
    if code == errno.ENOENT or "No such file" in text:
        return DeviceError(f"no such port {port} (see `hostctl devices`)")
    if code == errno.EACCES or "Permission denied" in text:
        return DeviceError(f"permission denied opening {port}: add yourself to the 'dialout' "
                           "group (sudo usermod -aG dialout $USER, then log in again)")
    if code in (errno.EBUSY, errno.EAGAIN) or "busy" in text.lower() \
            or "exclusively lock" in text:
        return DeviceError(f"port busy: {port} is busy: another program has it open "
                           "(close the Arduino IDE serial monitor / other hostctl runs)")
    if isinstance(exc, ValueError) and "protocol" in text:
        return DeviceError(f"cannot open {port}: {text} (known: a device path, loop://, "
                           "socket://host:port, hwgrep://REGEX, sim://?board=NAME)")
    return DeviceError(f"cannot open {port}: {text}")


class Probe(Handshake):
    """A hostctl probe (Arduino Uno running firmware/) on a serial port or URL.

    Use as a context manager or call :meth:`close`. ``serial_obj`` injects an already
    open serial-like object (tests, the simulator) instead of opening ``port``.
    """

    def __init__(self, port: str, *, baudrate: int = 115200, timeout_s: float = 1.0,
                 boot_timeout_s: float = 4.0, retries: int = 3, serial_obj: Any = None,
                 clock: Callable[[], float] | None = None,
                 reconnect_s: float | None = None) -> None:
        from hostctl import protocol  # noqa: F401  (fail early if the wire layer is missing)

        self.port = port
        self.timeout_s = float(timeout_s)
        self.boot_timeout_s = float(boot_timeout_s)
        self.retries = max(0, int(retries))
        self.reconnect_s = float(RECONNECT_S if reconnect_s is None else reconnect_s)
        self.info: dict[str, str] = {}
        self.boot_banner: dict[str, str] | None = None
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self._clock: Callable[[], float] = clock or time.monotonic
        self._next_id = 1
        self._buf = bytearray()
        self._discarding = False       # inside an over-long line: drop up to the next "\n"
        self._last_sent = b""
        self._recent_sent: deque[bytes] = deque(maxlen=8)   # to recognise our own echo
        self._rx_bytes = 0
        if serial_obj is None:
            serial_obj = self._open(port, baudrate)
        elif getattr(serial_obj, "timeout", POLL_S) != POLL_S:
            # Reads poll in short slices so our own deadlines hold (None would block forever).
            try:
                serial_obj.timeout = POLL_S
            except (AttributeError, ValueError):
                pass
        self.serial: serial.SerialBase = serial_obj
        if clock is None:
            from hostctl.bench import bench_of

            # the bench's own clock: a virtual bench's timeouts pass in its simulated time
            self._clock = bench_of(serial_obj, port).clock
        t0 = self._clock()
        try:
            self._handshake(self.boot_timeout_s)
            #: seconds from open to the HELLO reply (simulated seconds on sim://)
            self.handshake_s = self._clock() - t0
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening
    def _open(self, port: str, baudrate: int) -> Any:
        import serial

        try:
            # exclusive: a second hostctl (or a terminal) on the same port would steal
            # replies; pyserial locks a device path (flock), URL handlers ignore it
            return serial.serial_for_url(port, baudrate=baudrate, timeout=POLL_S,
                                         write_timeout=max(1.0, self.timeout_s),
                                         exclusive=True)
        except HostctlError:
            raise          # a usage error the URL handler reported (e.g. a bad sim:// board)
        except (serial.SerialException, OSError, ValueError) as e:
            raise _open_error(port, e) from None

    def close(self) -> None:
        """Close the port (idempotent)."""
        ser = getattr(self, "serial", None)
        if ser is not None:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - closing a dead port must not mask the real error
                pass

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Probe({self.port!r}, fw={self.info.get('fw', '?')})"

    # ------------------------------------------------------------------ commands
    def _transact(self, verb: str, *args: object, timeout_s: float | None = None,
                  retries: int | None = None) -> Reply:
        """Send one command and return its OK reply, surviving noise, resets and timeouts.

        Line damage (a reply with a bad CRC or a damaged id, an ERR that only a damaged
        command earns, a reply cut off) is retried at once from the noise budget; a lost
        reply on a clean line from ``retries``. An ERR the probe repeats on a clean line
        is its real answer.
        """
        timeout = self.timeout_s if timeout_s is None else timeout_s
        what = " ".join([verb, *map(str, args)])
        t = _Tally(self.retries if retries is None else retries, self._clock())
        # A late OK to an earlier try of this very command (same verb and arguments, sent
        # since the last reset) answers it as well as the latest try would.
        sent_ids: list[int] = []
        while True:
            cid = self._new_id()
            sent_ids.append(cid)
            self.stats["commands"] += 1
            t.tries += 1
            try:
                self._send(cid, verb, *args)
                outcome, reply = self._await_reply(cid, verb, what, sent_ids, timeout, t)
            except DeviceGone as e:
                outcome, reply, gone = "gone", None, e
            if outcome == "ok":
                return reply
            if outcome in ("reset", "gone"):
                sent_ids.clear()        # a reply from before the reboot measured nothing now
                t.resets += 1
                if outcome == "gone":
                    if t.resets > MAX_RESETS_PER_COMMAND:
                        raise gone
                    self._reconnect(what, gone)
                else:
                    self._after_reset(what, t.resets)
                continue   # resets do not use up the retry budget; they have their own cap
            if outcome == "timeout":
                self.stats["timeouts"] += 1
                if self._buf:           # a reply was arriving, cut off: damage, not silence
                    t.cut += 1
                else:
                    t.lost += 1
                if self._buf or t.noisy:    # on a damaging line, a lost reply is damage too
                    outcome = "noise"
                self._drop_partial()
            self._retry_or_raise(outcome, what, timeout, t)

    def _await_reply(self, cid: int, verb: str, what: str, sent_ids: list[int],
                     timeout: float, t: _Tally) -> tuple[str, Reply | None]:
        """Read until this try is decided: ("ok", reply) or (timeout|reset|noise|busy)."""
        deadline = self._clock() + timeout
        while True:
            line = self._read_line(deadline)
            if line is None:
                return "timeout", None
            junk = self._junk_count()
            reply = self._parse(line)
            if reply is None:
                if self._junk_count() > junk:
                    # a reply damaged on the way (maybe its id): ask again now, not after
                    # the timeout; a late good reply to this try is still accepted. A
                    # line that does not even start with an id may be another program's
                    # text: wait on, but a timeout now counts as line noise.
                    t.damaged += 1
                    if line.lstrip()[:1].isdigit():
                        return "noise", None
                continue
            if reply.is_async:
                if reply.verb == "BOOT":
                    self.boot_banner = dict(reply.fields)
                    return "reset", None
                self.stats["stray_lines"] += 1
                continue
            if reply.id != cid and reply.id in sent_ids and reply.ok and reply.verb == verb:
                self.stats["stray_lines"] += 1      # counted: it was late
                return "ok", reply
            if reply.id == cid:
                if reply.ok and reply.verb == verb:
                    return "ok", reply
                if reply.ok:   # right id, wrong verb: not our reply
                    self.stats["stray_lines"] += 1
                    continue
                return self._err_outcome(reply, what, t), None
            if reply.id == 0 and not reply.ok:
                # The firmware could not read an id: our line was mangled on the way - or
                # another program wrote into the port. Our reply, if any, still comes: wait
                # for it (a timeout then counts as line noise).
                t.err_noise += 1
                self.stats["stray_lines"] += 1
                continue
            self.stats["stray_lines"] += 1

    def _err_outcome(self, reply: Reply, what: str, t: _Tally) -> str:
        """An ERR to this very command: line damage, busy, or the probe's real answer."""
        code = reply.err_code
        t.last_err = f"ERR {code} {reply.err_reason}"
        if code == 7:
            return "busy"
        if code in _DAMAGE_ERRS:   # our encoder never sends a bad CRC, syntax or length
            t.err_noise += 1
            return "noise"
        # ERR 1/5 (6 in a session): the answer to the command we sent, unless the line
        # damaged it; an answer repeats, damage does not
        t.same_err = t.same_err + 1 if t.err_code == code else 1
        t.err_code = code
        if code in _ANSWER_ERRS and t.same_err < CONFIRM_ERRS:
            t.err_noise += 1
            return "noise"
        raise ProtocolError(f"probe on {self.port} rejected '{what}': ERR {code} "
                            f"{reply.err_reason}")

    def _retry_or_raise(self, outcome: str, what: str, timeout: float, t: _Tally) -> None:
        """Take a retry from the right budget, or give up with what the tries met."""
        if outcome == "noise" and t.noise_used < NOISE_RETRIES:
            t.noise_used += 1
        elif outcome != "noise" and t.tries - t.noise_used <= t.budget:
            pass
        else:
            spent = self._clock() - t.start
            if t.noisy:
                raise LineNoise(self.port, what, t.tries, t.damaged + t.cut, t.err_noise,
                                t.lost, spent)
            if outcome == "busy":
                raise ProtocolError(f"probe on {self.port} kept answering '{what}' with "
                                    f"{t.last_err} after {t.tries} tries")
            raise DeviceTimeout(
                f"no reply from {self.port} to '{what}' after {t.tries} "
                f"tr{'y' if t.tries == 1 else 'ies'} ({spent:.1f} s, {timeout:.2f} s "
                "each): probe hung or unplugged?")
        self.stats["retries"] += 1

    def _after_reset(self, what: str, resets: int) -> None:
        self.stats["resets"] += 1
        if resets > MAX_RESETS_PER_COMMAND:
            raise DeviceReset(
                f"probe on {self.port} reset {resets} times during '{what}': check the "
                "USB cable and power (brown-out?)")
        try:
            self._handshake(self.boot_timeout_s)
        except DeviceError as e:
            raise DeviceReset(f"probe on {self.port} reset during '{what}' and did not "
                              f"come back: {e}") from None

    def _reconnect(self, what: str, gone: DeviceError) -> None:
        """Re-open the port for up to ``reconnect_s`` (a re-plugged board), then handshake.

        A port we did not open (``serial_obj``) is re-opened through its own ``open()``,
        which is what pyserial does for a device path coming back under the same name.
        """
        ser = self.serial
        start, real_start = self._clock(), time.monotonic()
        real = self._clock is time.monotonic
        while True:
            try:
                ser.close()
            except Exception:  # noqa: BLE001 - a vanished port may fail to close
                pass
            try:
                ser.open()
                break
            except Exception:  # noqa: BLE001 - pyserial raises several unrelated types
                if (self._clock() - start >= self.reconnect_s
                        or time.monotonic() - real_start >= self.reconnect_s):
                    raise DeviceGone(f"{gone}; it did not come back within "
                                     f"{self.reconnect_s:g} s (during '{what}')") from None
                if real or self._clock() == start:
                    time.sleep(RECONNECT_POLL_S)
        self.stats["reconnects"] += 1
        self._buf.clear()
        self._discarding = False
        try:
            self._handshake(self.boot_timeout_s)
        except DeviceError as e:
            raise DeviceGone(f"probe on {self.port} came back after an unplug but did not "
                             f"answer: {e}") from None

    def ping(self) -> float:
        """Round trip of one PING, seconds (a liveness check)."""
        t0 = self._clock()
        self._transact("PING")
        return self._clock() - t0

    def identify(self) -> dict[str, str]:
        """The ID reply fields (same keys as HELLO)."""
        return dict(self._transact("ID").fields)

    def measure(self, ms: int = 200) -> MeasureResult:
        """One MEASURE window of ``ms`` milliseconds; the reply waits at least that long."""
        from hostctl.protocol import parse_measure

        if not 1 <= int(ms) <= 5000:
            raise DeviceError(f"measure window must be 1..5000 ms, got {ms}")
        reply = self._transact("MEASURE", int(ms), timeout_s=self.timeout_s + int(ms) / 1000.0)
        try:
            return parse_measure(reply)
        except ProtocolError as e:
            raise ProtocolError(f"probe on {self.port}: malformed MEASURE reply: {e}") from None


def open_probe(port: str, **kw: Any) -> Probe:
    """Open ``port`` (a path or any pyserial URL, incl. ``sim://``) and handshake."""
    return Probe(port, **kw)
