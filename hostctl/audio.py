"""Test tones through the sound card (or into a virtual bench).

A tone is a sine at a frequency and a level in dBFS (0 dBFS = a sine whose peak is digital
full scale). The output is one continuous stream whose callback synthesises the current tone,
so the tone keeps playing while the probe measures::

    from hostctl.audio import open_output
    with open_output("USB Audio", channel="left") as out:   # name substring, index or None
        out.tone(1000.0, -12.0)     # fades in, returns once settled
        ...                         # measure
        out.tone(2000.0, -12.0)     # fade out, switch (phase-continuous), fade in
        out.silence()

Safety, the same for every output:

- Levels above the cap (``level_cap_dbfs``, default -6 dBFS) are **refused** with an
  :class:`~hostctl.errors.AudioError`, never clamped: a quietly clamped level would corrupt
  the level-dependent LED data. Samples are float32 and never clipped (peak <= cap <= 0 dBFS).
- Frequencies outside the reliable band of a sound card are refused: below 20 Hz, above
  20 kHz, or above 0.45 x the sample rate (so never near Nyquist).
- Every change fades: a raised-cosine ramp (``FADE_S`` = 10 ms) down to silence, the switch,
  a ramp up (a level change on the same frequency ramps directly). The oscillator phase is
  never reset, so there is no click even when a change arrives mid-ramp.
- ``tone()`` returns after the fade-in, the stream's output latency and ``settle_s`` more,
  i.e. when the filter under test has settled and the measurement window may open.
- ``silence(after_s=T)`` holds the current tone exactly T seconds of samples (counted from
  when it settled) before fading out: exact tone lengths whatever the buffering.
- Tones known ahead play back to back: ``cue(f, level, hold_s)`` queues a tone to start when
  the one queued before it has held ``hold_s`` past its settle, and ``wait(cue)`` returns
  once it has settled, so the output latency is paid once for a run of tones, not per tone.
  ``cue.left_s()`` says how long it still holds; ``tone()`` is ``wait(cue(f, level))``::

      cues = [out.cue(f, -12.0, hold_s=0.25) for f in (100.0, 1000.0, 10000.0)]
      for c in cues:
          out.wait(c)            # settled; holds 0.25 s more, then the next one starts
          ...                    # measure, if c.left_s() leaves time for the window
- Opening waits until the stream runs steadily in real time (a sound server may drop a new
  stream's first buffers or start it in an underrun storm), so the first fade-in is heard.

The sample rate is the device's default (``sample_rate=`` overrides it); the output buffer
is ``OUTPUT_LATENCY_S`` (0.2 s), generous because tone() waits for it anyway.

Other pieces:

- :mod:`hostctl.synth` -- the tone itself: limits, :func:`check_tone`, :class:`ToneSynth`
  (the pure-numpy generator behind the stream; ``history`` plus :func:`replay` reproduce
  exactly what was played), :func:`synthesize` (a whole tone as an array).
- :func:`hostctl.bench.register_output` -- a backend's tone output behind
  ``open_output("PREFIX:...")``
  (the virtual bench registers ``sim:`` for its control socket when a caller opts in).
- :mod:`hostctl.portaudio` -- :func:`list_output_devices` / :func:`probe_output_devices`
  (what PortAudio can play on), device lookup and its errors.

sounddevice (PortAudio) is imported only when a real device is used; every failure becomes
one AudioError line that says how to fix it (exit code 4 in the CLI).
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hostctl.bench import OUTPUTS
from hostctl.errors import AudioError
from hostctl.portaudio import (  # noqa: F401 (part of this module's interface)
    import_sd,
    list_output_devices,
    map_open_error,
    pa_message,
    probe_output_devices,
    resolve_device,
)
from hostctl.synth import (  # noqa: F401 (part of this module's interface)
    DEFAULT_LEVEL_CAP_DBFS,
    DEFAULT_SAMPLE_RATE,
    FADE_S,
    MAX_FRACTION_OF_RATE,
    MAX_FREQ_HZ,
    MIN_FREQ_HZ,
    ToneSynth,
    check_cap,
    check_tone,
    replay,
    synthesize,
)

CHANNELS = ("both", "left", "right")
# Output buffering. Sound servers (PulseAudio through ALSA) drop out below ~0.1 s when the
# machine is busy; tone() waits for it anyway, so a generous buffer costs nothing here.
OUTPUT_LATENCY_S = 0.2
#: after the fade-in has reached the card, the filter under test settles this long. ngspice
#: transients of the bench board (probe coupling 10 uF into 10 kohm included): a window
#: opened 0-50 ms after the fade reads the steady gain within 0.035 % whatever the settle
#: (tests/test_settle_spice.py). The CLI's --settle defaults to it (raise it for slow paths)
SETTLE_S = 0.02


class ToneOutput(Protocol):
    """What a bench run needs from a tone source."""

    sample_rate: int

    def tone(self, freq_hz: float, level_dbfs: float) -> None: ...

    def silence(self) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Checks shared by every output (the tone's own in hostctl.synth)


def check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise AudioError(f"audio channel '{channel}' is not one of {', '.join(CHANNELS)}")
    return channel


@dataclass
class Cue:
    """A tone queued on an output: when it settles at the output's jack and until when it
    holds (the next queued change begins then), on the output's own clock."""

    freq_hz: float
    level_dbfs: float
    hold_s: float | None                   # after the settle; None: until the next change
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    settled_at: float = math.nan           # known once waited on
    ends_at: float = math.inf
    pos: int = 0                           # the output's own mark (a sample position)

    def left_s(self) -> float:
        """Seconds the tone still holds before the next queued change (inf: no change)."""
        return self.ends_at - self.clock()


# --------------------------------------------------------------------------------------------
# Outputs


class OutputBase:
    """What every tone output shares: a context manager that closes (fading out), and what a
    change of tone waits on a real bench -- the one place the sound card's output and the
    virtual bench's (which charges it to its clock) take these numbers from."""

    sample_rate: int = DEFAULT_SAMPLE_RATE
    fade_s: float = FADE_S
    latency_s: float = OUTPUT_LATENCY_S
    settle_s: float = SETTLE_S

    def tone_wait_s(self, fade_samples: int) -> float:
        """What ``tone()`` waits: the fades it schedules, the output latency, the settle."""
        return fade_samples / self.sample_rate + self.latency_s + self.settle_s

    def cue(self, freq_hz: float, level_dbfs: float, hold_s: float | None = None,
            not_before_s: float = 0.0) -> Cue:
        """Queue a tone behind the last one queued, reaching the jack no sooner than
        ``not_before_s`` from now (silence the probe reads first). An output that cannot
        schedule plays it when waited on (each tone then pays the latency)."""
        return Cue(float(freq_hz), float(level_dbfs), hold_s)

    def wait(self, cue: Cue) -> None:
        """Return once the cued tone has settled (playing it now if nothing queued it)."""
        self.tone(cue.freq_hz, cue.level_dbfs)

    def tone(self, freq_hz: float, level_dbfs: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def silence_wait_s(self, fade_samples: int) -> float:
        """What ``silence()`` waits: the hold and fade-out it schedules, the output latency."""
        return fade_samples / self.sample_rate + self.latency_s

    def __enter__(self) -> OutputBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class SoundDeviceOutput(OutputBase):
    """One continuous PortAudio output stream playing whatever :class:`ToneSynth` says."""

    def __init__(self, device: str | int | None = None, *, channel: str = "both",
                 level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS, settle_s: float = SETTLE_S,
                 sample_rate: int | None = None, fade_s: float = FADE_S,
                 latency: str | float = OUTPUT_LATENCY_S) -> None:
        check_channel(channel)
        check_cap(level_cap_dbfs)
        sd = self._sd = import_sd()
        idx, info = resolve_device(sd, device, "output")
        self.device_index, self.device_name = idx, str(info["name"])
        rate = int(sample_rate or round(info.get("default_samplerate") or 0) or DEFAULT_SAMPLE_RATE)
        maxch = int(info["max_output_channels"])
        nch = 2 if maxch >= 2 else 1
        if nch == 1 and channel != "both":
            raise AudioError(f"audio device '{self.device_name}' is mono: use {{channel}} both"
                             ).naming(channel="audio channel")
        self.channel, self.settle_s, self.sample_rate = channel, float(settle_s), rate
        self.fade_s = float(fade_s)
        self._cols = {"both": list(range(nch)), "left": [0], "right": [1]}[channel]
        self.synth = ToneSynth(rate, level_cap_dbfs=level_cap_dbfs, fade_s=fade_s)
        self.level_cap_dbfs = self.synth.level_cap_dbfs
        self._error: str | None = None
        self._cv = threading.Condition()
        self.underflows = 0
        self._settled_pos = 0
        self._free_pos = 0             # where the last cue's hold ends (0: no queue)
        #: when silence had reached the jack (None: a tone was cued since)
        self._quiet_at: float | None = None
        #: (first sample, monotonic time) of recent callbacks: when a sample was rendered
        self._rendered: deque[tuple[int, float]] = deque(maxlen=512)
        # fixed ~20 ms blocks: steadier than PortAudio's variable ones through sound servers
        self._block = 1 << max(6, round(math.log2(rate * 0.02)))
        self._closed = False
        try:
            sd.check_output_settings(device=idx, channels=nch, dtype="float32", samplerate=rate)
            self._stream = sd.OutputStream(
                samplerate=rate, device=idx, channels=nch, dtype="float32", latency=latency,
                blocksize=self._block, callback=self._callback,
                finished_callback=self._finished)
            self._stream.start()
        except (sd.PortAudioError, ValueError) as e:
            self._closed = True
            raise map_open_error(e, self.device_name, rate, nch) from None
        self.latency_s = float(self._stream.latency)
        try:
            self._warm_up()
            self._quiet_at = time.monotonic()     # it played silence a while
        except AudioError:
            self._closed = True
            try:
                self._stream.abort()
                self._stream.close()
            except Exception:  # noqa: BLE001 - already failing; report the first error
                pass
            raise

    def _warm_up(self, timeout_s: float = 5.0) -> None:
        """Play silence until the stream runs steadily in real time.

        A sound server drops what a new stream renders while it connects it, and through
        PulseAudio's ALSA plugin a stream can start in an underrun storm (the callback runs
        many times faster than real time, the sound is lost). Either would cut the first
        fade-in into a click, so tones wait for a quiet stretch of 2 x latency (>= 0.3 s).
        """
        need = max(0.3, 2 * self.latency_s)
        t_end = time.monotonic() + timeout_s
        stable = 0.0
        self._wait_position(1)
        while stable < need:
            u0, p0, t0 = self.underflows, self.synth.position, time.monotonic()
            time.sleep(0.05)
            self._check_alive()
            dt = time.monotonic() - t0
            dp = self.synth.position - p0
            if self.underflows == u0 and dp <= 1.5 * self.sample_rate * dt + 2 * self._block:
                stable += dt
            else:
                stable = 0.0
            if time.monotonic() > t_end:
                warnings.warn(f"audio device '{self.device_name}' did not settle into real "
                              f"time within {timeout_s:g} s ({self.underflows} underruns); "
                              "tones may have gaps", stacklevel=3)
                return

    # audio thread
    def _callback(self, outdata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        if status.output_underflow:      # spurious on sound servers; counted, not fatal
            self.underflows += 1
        self._rendered.append((self.synth.position, time.monotonic()))
        try:
            mono = self.synth.render(frames).astype(np.float32)
            outdata.fill(0.0)
            for c in self._cols:
                outdata[:, c] = mono
        except Exception as e:  # noqa: BLE001 - stop the stream, report in the main thread
            self._error = f"tone synthesis failed: {e}"
            outdata.fill(0.0)
            raise self._sd.CallbackAbort from None
        with self._cv:
            self._cv.notify_all()

    def _finished(self) -> None:
        with self._cv:
            if not self._closed_flag():
                self._error = self._error or "the audio stream stopped"
            self._cv.notify_all()

    def _closed_flag(self) -> bool:
        return getattr(self, "_closed", False)

    def _check_alive(self) -> None:
        if self._closed:
            raise AudioError("audio output already closed")
        try:
            active = self._stream.active
        except self._sd.PortAudioError as e:
            self._error = self._error or pa_message(e)
            active = False
        if self._error or not active:
            raise AudioError(f"audio device '{self.device_name}' stopped mid-run "
                             f"({self._error or 'stream inactive'}): it was unplugged or taken "
                             "by another program; reconnect it and run again ({resume})"
                             ).naming(resume="resume the session")

    def _wait_position(self, pos: int) -> None:
        """Block until the callback has rendered sample ``pos``; fail if the stream stalls."""
        last, stalled_since = self.synth.position, time.monotonic()
        with self._cv:
            while self.synth.position < pos:
                self._check_alive()
                self._cv.wait(0.05)
                now = time.monotonic()
                if self.synth.position != last:
                    last, stalled_since = self.synth.position, now
                elif now - stalled_since > 2.0 + 2 * self.latency_s:
                    raise AudioError(f"audio device '{self.device_name}' stopped consuming "
                                     "samples (stalled for 2 s); check the device and run again")

    def tone(self, freq_hz: float, level_dbfs: float) -> None:
        """Switch to a tone (fade out, phase-continuous switch, fade in); return when settled."""
        self.wait(self.cue(freq_hz, level_dbfs))

    def cue(self, freq_hz: float, level_dbfs: float, hold_s: float | None = None,
            not_before_s: float = 0.0) -> Cue:
        """Queue a tone to start where the last cue's hold ends (now if none is pending),
        and not before the jack has played ``not_before_s`` more of what it plays now."""
        self._check_alive()
        self._quiet_at = None
        at = self._free_pos
        if not_before_s > 0:
            at = max(at, self._jack_pos(time.monotonic() + not_before_s))
        pos = self._settled_pos = self.synth.set_tone(freq_hz, level_dbfs, at)
        held = None if hold_s is None else self.settle_s + hold_s
        self._free_pos = 0 if held is None else pos + int(round(held * self.sample_rate))
        return Cue(float(freq_hz), float(level_dbfs), hold_s, pos=pos)

    def wait(self, cue: Cue) -> None:
        """Sleep until the cued tone's settled sample has reached the jack, plus the settle."""
        self._wait_position(cue.pos + 1)
        cue.settled_at = self._jack_time(cue.pos) + self.settle_s
        if cue.hold_s is not None:
            cue.ends_at = cue.settled_at + cue.hold_s
        time.sleep(max(0.0, cue.settled_at - time.monotonic()))
        self._check_alive()

    def _jack_time(self, pos: int) -> float:
        """When sample ``pos`` (already rendered) reaches the output: its callback's time
        plus the stream's latency."""
        for start, t in reversed(self._rendered):
            if start <= pos:
                return t + self.latency_s + (pos - start) / self.sample_rate
        return time.monotonic() + self.latency_s

    def _jack_pos(self, t: float) -> int:
        """The sample that reaches the output at monotonic time ``t`` (inverse of
        :meth:`_jack_time`; nothing rendered yet: the next one)."""
        if not self._rendered:
            return self.synth.position
        start, t0 = self._rendered[-1]
        return start + max(0, int(round((t - self.latency_s - t0) * self.sample_rate)))

    def silence(self, after_s: float = 0.0, *, wait: bool = True) -> None:
        """Fade to silence; return once silence has reached the output.

        ``after_s`` > 0: first hold the tone exactly that long (in samples, counted from the
        moment it settled) -- a tone of exact length whatever the buffering. ``wait=False``:
        start the fade and return (a run is over: nothing is measured until it is silent).
        """
        self._check_alive()
        if after_s > 0:
            at = self._settled_pos + int(round(after_s * self.sample_rate))
        else:
            at = 0
            self.synth.cancel()       # tones still queued are not played
        self._free_pos = 0
        if self._quiet_at is not None and self.synth.silent:   # silent for a while already
            time.sleep(max(0.0, self._quiet_at - time.monotonic()))
            return
        pos = self.synth.set_silence(at)
        if not wait:
            return
        self._wait_position(pos)
        time.sleep(self.silence_wait_s(0))
        self._quiet_at = time.monotonic()

    def close(self) -> None:
        """Fade out, stop and release the device. Safe to call twice."""
        if getattr(self, "_closed", True):
            return
        try:
            if not self._error and self._stream.active:
                self.synth.cancel()
                pos = self.synth.set_silence()
                try:
                    self._wait_position(pos)
                except AudioError:
                    pass
            self._closed = True
            self._stream.stop()
            self._stream.close()
        except self._sd.PortAudioError as e:
            self._closed = True
            warnings.warn(f"closing audio device '{self.device_name}': {pa_message(e)}",
                          stacklevel=2)


def open_output(device: str | int | None = None, *, channel: str = "both",
                level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS, settle_s: float = SETTLE_S,
                sample_rate: int | None = None, fade_s: float = FADE_S,
                latency: str | float = OUTPUT_LATENCY_S) -> ToneOutput:
    """A started tone output: a sound card (name substring, index, None = default) or
    ``"PREFIX:..."`` for a tone output a backend registered (hostctl.bench.register_output).

    The sample rate is the device's default unless ``sample_rate`` is given. Raises
    AudioError with the fix for every failure.
    """
    check_channel(channel)
    check_cap(level_cap_dbfs)
    prefix, sep, rest = device.partition(":") if isinstance(device, str) else ("", "", "")
    if sep and prefix in OUTPUTS:      # a backend's own output (hostctl.bench.register_output)
        return OUTPUTS[prefix](rest, level_cap_dbfs=level_cap_dbfs,
                               sample_rate=sample_rate or DEFAULT_SAMPLE_RATE)
    return SoundDeviceOutput(device, channel=channel, level_cap_dbfs=level_cap_dbfs,
                             settle_s=settle_s, sample_rate=sample_rate, fade_s=fade_s,
                             latency=latency)
