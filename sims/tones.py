"""The virtual bench's tone outputs: the ToneOutput interface of hostctl.audio, same checks.

:class:`SimToneOutput` drives an in-process bench (``bench.set_tone``); :class:`SocketToneOutput`
one served on a pty, over its control socket (JSON lines). :mod:`sims.backend` registers them.

The in-process output waits what the sound card's would, on the bench's clock (the one
hostctl reads, not the physics') instead of the wall's: the fades its own
:class:`~hostctl.synth.ToneSynth` schedules (the sound card's synthesiser, so the same change
costs the same fades), the output latency and the settle time (``OutputBase``'s numbers, the
ones ``SoundDeviceOutput`` sleeps). It also has the bench count the host's own compute
between requests (``VirtualBench.count_host``): a run on the virtual bench then takes the
seconds a real bench would.
"""

from __future__ import annotations

import json
import math
import socket
import time
from typing import Any

from hostctl.audio import (
    DEFAULT_LEVEL_CAP_DBFS,
    DEFAULT_SAMPLE_RATE,
    Cue,
    OutputBase,
    ToneSynth,
    check_cap,
    check_tone,
)
from hostctl.errors import AudioError


class SimToneOutput(OutputBase):
    """The ToneOutput interface for an in-process virtual bench: ``bench.set_tone(...)``."""

    def __init__(self, bench: Any, *, level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS,
                 sample_rate: int = DEFAULT_SAMPLE_RATE, count_host: bool = True) -> None:
        check_cap(level_cap_dbfs)
        self.bench, self.level_cap_dbfs, self.sample_rate = bench, level_cap_dbfs, sample_rate
        self.synth = ToneSynth(sample_rate, level_cap_dbfs=level_cap_dbfs, fade_s=self.fade_s)
        #: bench seconds this output has waited (fades, latency, settle), and tones played
        self.waited_s = 0.0
        self.tones = 0
        self._free_at = 0.0            # bench time the last cue's hold ends (0: no queue)
        #: bench time silence had reached the jack (None: a tone was cued since); a new
        #: output has played nothing
        self._quiet_at: float | None = -math.inf
        if count_host and hasattr(bench, "count_host"):
            bench.count_host()

    def _wait(self, seconds: float) -> None:
        """Let the bench's clock run as the sound card's output would make a host wait."""
        self.waited_s += seconds
        wait = getattr(self.bench, "wait", None)
        if callable(wait):
            wait(seconds)

    def _now(self) -> float:
        """The bench's clock (a bench without one: the seconds this output has waited)."""
        clock = getattr(self.bench, "clock", None)
        return clock() if callable(clock) else self.waited_s

    def _fade_samples(self, until: int) -> int:
        """Samples the synthesiser plays before reaching ``until`` (rendered, not sent)."""
        n = max(0, until - self.synth.position)
        self.synth.render(n)
        return n

    def tone(self, freq_hz: float, level_dbfs: float) -> None:
        self.wait(self.cue(freq_hz, level_dbfs))

    def cue(self, freq_hz: float, level_dbfs: float, hold_s: float | None = None,
            not_before_s: float = 0.0) -> Cue:
        """Queue a tone as the sound card's output would: it starts where the last cue's
        hold ends, or once a change made now has passed the output latency, and not before
        ``not_before_s`` from now."""
        check_tone(freq_hz, level_dbfs, sample_rate=self.sample_rate,
                   level_cap_dbfs=self.level_cap_dbfs)
        self._quiet_at = None
        n = self._fade_samples(self.synth.set_tone(float(freq_hz), float(level_dbfs)))
        start = max(self._now() + max(self.latency_s, not_before_s), self._free_at)
        cue = Cue(float(freq_hz), float(level_dbfs), hold_s, clock=self._now)
        cue.settled_at = start + n / self.sample_rate + self.settle_s
        if hold_s is not None:
            cue.ends_at = cue.settled_at + hold_s
        self._free_at = cue.ends_at if hold_s is not None else 0.0
        return cue

    def wait(self, cue: Cue) -> None:
        """The bench's clock runs to the cue's settle; the board hears the tone from then."""
        self._wait(max(0.0, cue.settled_at - self._now()))
        self.bench.set_tone(cue.freq_hz, cue.level_dbfs)
        self.tones += 1

    def silence(self, after_s: float = 0.0, *, wait: bool = True) -> None:
        """Fade out (after holding the tone ``after_s`` from when it settled, in real time:
        someone may be listening), and wait what the sound card's output would
        (``wait=False``: the run is over, only start the fade)."""
        if after_s > 0:
            time.sleep(after_s)
            self._wait(after_s)
        self.bench.set_tone(None)
        self._free_at = 0.0            # tones still queued are not played
        if self._quiet_at is not None and self.synth.silent:   # silent for a while already
            self._wait(max(0.0, self._quiet_at - self._now()))
            return
        n = self._fade_samples(self.synth.set_silence())
        if not wait:
            self._quiet_at = self._now() + self.silence_wait_s(n)
            return
        self._wait(self.silence_wait_s(n))
        self._quiet_at = self._now()

    def close(self) -> None:
        """Silence, as the sound card's output closes: nothing more to wait for."""
        self.bench.set_tone(None)


class SocketToneOutput(OutputBase):
    """The ToneOutput interface over a virtual bench's control socket (JSON lines)."""

    def __init__(self, path: str, *, level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS,
                 sample_rate: int = DEFAULT_SAMPLE_RATE, timeout_s: float = 5.0) -> None:
        check_cap(level_cap_dbfs)
        self.path, self.level_cap_dbfs, self.sample_rate = path, level_cap_dbfs, sample_rate
        self.sim_time_s: float | None = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            raise AudioError(f"cannot reach the virtual bench control socket {path}: "
                             f"{e.strerror or e}; start it with `python -m sims.bench serve` "
                             "and pass the CONTROL path it prints") from None
        self._rfile = self._sock.makefile("rb")
        self._closed = False

    def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise AudioError("virtual bench tone output already closed")
        try:
            self._sock.sendall((json.dumps(obj) + "\n").encode())
            line = self._rfile.readline()
        except OSError as e:
            raise AudioError(f"virtual bench control socket {self.path}: {e}") from None
        if not line:
            raise AudioError(f"virtual bench control socket {self.path} closed the connection")
        try:
            reply = json.loads(line)
        except ValueError:
            raise AudioError(f"virtual bench control socket {self.path} sent "
                             f"{line[:60]!r}, not JSON") from None
        if not reply.get("ok"):
            raise AudioError(f"virtual bench refused {obj}: {reply.get('error', reply)}")
        if "sim_time_s" in reply:
            self.sim_time_s = float(reply["sim_time_s"])
        return reply

    def tone(self, freq_hz: float, level_dbfs: float) -> None:
        check_tone(freq_hz, level_dbfs, sample_rate=self.sample_rate,
                   level_cap_dbfs=self.level_cap_dbfs)
        self.request({"tone_hz": float(freq_hz), "level_dbfs": float(level_dbfs)})

    def silence(self, after_s: float = 0.0, *, wait: bool = True) -> None:
        """The server's output fades and charges its bench (``wait`` is the server's)."""
        if after_s > 0:
            time.sleep(after_s)
        self.request({"tone_hz": None})

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.silence()
        except AudioError:
            pass
        self._closed = True
        self._rfile.close()
        self._sock.close()
