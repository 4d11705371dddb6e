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
- Opening waits until the stream runs steadily in real time (a sound server may drop a new
  stream's first buffers or start it in an underrun storm), so the first fade-in is heard.

The sample rate is the device's default (``sample_rate=`` overrides it); the output buffer
is ``OUTPUT_LATENCY_S`` (0.2 s), generous because tone() waits for it anyway.

Other pieces:

- :class:`ToneSynth` -- the pure-numpy generator behind the stream (testable with no device);
  its ``history`` plus :func:`replay` reproduce exactly what was played.
- :func:`synthesize` -- a whole tone (fade in, hold, fade out) as an array.
- :func:`hostctl.bench.register_output` -- a backend's tone output behind
  ``open_output("PREFIX:...")``
  (the virtual bench registers ``sim:`` for its control socket when a caller opts in).
- :func:`list_output_devices` / :func:`probe_output_devices` -- what PortAudio can play on.

sounddevice (PortAudio) is imported only when a real device is used; every failure becomes
one AudioError line that says how to fix it (exit code 4 in the CLI).
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hostctl.bench import OUTPUTS
from hostctl.errors import AudioError, ToneRefused

FADE_S = 0.010
DEFAULT_LEVEL_CAP_DBFS = -6.0
DEFAULT_SAMPLE_RATE = 48000
MIN_FREQ_HZ = 20.0
MAX_FREQ_HZ = 20000.0
MAX_FRACTION_OF_RATE = 0.45
CHANNELS = ("both", "left", "right")
# Output buffering. Sound servers (PulseAudio through ALSA) drop out below ~0.1 s when the
# machine is busy; tone() waits for it anyway, so a generous buffer costs nothing here.
OUTPUT_LATENCY_S = 0.2

_PA_FIX = "install libportaudio2 (apt-get install libportaudio2)"
_SERVER_FIX = ("connect a sound card, or start a sound server (virtual one for tests: "
               "eval \"$(bash .ci/pulse.sh)\")")


class ToneOutput(Protocol):
    """What a bench run needs from a tone source."""

    sample_rate: int

    def tone(self, freq_hz: float, level_dbfs: float) -> None: ...

    def silence(self) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Checks shared by every output


def check_tone(freq_hz: float, level_dbfs: float, *, sample_rate: float | None,
               level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS) -> float:
    """Refuse a tone the card cannot play reliably or safely; return its peak amplitude.

    ``sample_rate`` None (not known yet): only the audible band is checked.
    """
    check_cap(level_cap_dbfs)
    try:
        f = float(freq_hz)
        lv = float(level_dbfs)
    except (TypeError, ValueError):
        raise ToneRefused(f"tone {freq_hz!r} Hz at {level_dbfs!r} dBFS is not a number") from None
    if not math.isfinite(f):
        raise ToneRefused(f"tone frequency {freq_hz} Hz is not a finite number")
    top = MAX_FREQ_HZ
    if sample_rate is not None:
        top = min(top, MAX_FRACTION_OF_RATE * sample_rate)
    if f < MIN_FREQ_HZ or f > top:
        why = "the audible band"
        if top < MAX_FREQ_HZ:
            why = f"0.45 x the {sample_rate:g} Hz sample rate, well below Nyquist"
        raise ToneRefused(f"tone {f:g} Hz is outside the sound card's reliable band "
                         f"{MIN_FREQ_HZ:g}..{top:g} Hz ({why}); choose a frequency inside it")
    if not math.isfinite(lv):
        raise ToneRefused(f"tone level {level_dbfs} dBFS is not a finite number")
    if lv > level_cap_dbfs + 1e-9:
        raise ToneRefused(f"tone level {lv:g} dBFS is above the level cap {level_cap_dbfs:g} "
                          "dBFS; lower {level_dbfs} or raise {level_cap_dbfs} (at most 0)"
                          ).naming(level_dbfs="the level", level_cap_dbfs="the level cap")
    return 10.0 ** (lv / 20.0)


def check_cap(level_cap_dbfs: float) -> None:
    if not (math.isfinite(level_cap_dbfs) and level_cap_dbfs <= 0.0):
        raise AudioError(f"level cap {level_cap_dbfs} dBFS must be a number <= 0 "
                         "(0 dBFS is digital full scale)")


def check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise AudioError(f"audio channel '{channel}' is not one of {', '.join(CHANNELS)}")
    return channel


# --------------------------------------------------------------------------------------------
# Synthesis (pure numpy)


@dataclass
class _Ramp:
    target: float          # amplitude at the end
    n: int                 # samples
    freq: float | None     # oscillator frequency set when the ramp starts (None: keep)
    start: float = 0.0     # amplitude when it started (filled in then)
    done: int = 0
    hold: bool = False     # a constant stretch before a fade-out (cut short by cut_hold)


class ToneSynth:
    """Sample-exact tone generator: a phase accumulator and a queue of raised-cosine ramps.

    Thread-safe between one producer (``set_tone``/``set_silence``) and the audio callback
    (``render``). Positions are absolute sample counts since creation, so callers can wait
    for "the sample where the tone is settled".
    """

    def __init__(self, sample_rate: int, *, level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS,
                 fade_s: float = FADE_S) -> None:
        check_cap(level_cap_dbfs)
        if sample_rate <= 0:
            raise AudioError(f"sample rate {sample_rate} Hz must be positive")
        self.sample_rate = int(sample_rate)
        self.level_cap_dbfs = float(level_cap_dbfs)
        self.cap_amplitude = 10.0 ** (self.level_cap_dbfs / 20.0)
        self.fade_n = max(1, int(round(fade_s * self.sample_rate)))
        self.position = 0              # samples rendered so far
        self._phase = 0.0              # radians, kept in [0, 2 pi)
        self._freq = 0.0               # oscillator frequency now
        self._amp = 0.0                # amplitude now
        self._ramps: deque[_Ramp] = deque()
        self._lock = threading.Lock()
        # (position, freq_hz, level_dbfs) of every accepted request, (position, None, at) for
        # silence: replaying them (render up to the position, then the same call) reproduces
        # the output exactly.
        self.history: deque[tuple[int, float | None, float]] = deque(maxlen=10000)

    # -- scheduling (any thread)
    def _end_state(self) -> tuple[float, float]:
        freq, amp = self._freq, self._amp
        for r in self._ramps:
            if r.freq is not None:
                freq = r.freq
            amp = r.target
        return freq, amp

    def _settled_at(self) -> int:
        return self.position + sum(r.n - r.done for r in self._ramps)

    def set_tone(self, freq_hz: float, level_dbfs: float) -> int:
        """Schedule a change to this tone; return the sample position where it is reached."""
        amp = check_tone(freq_hz, level_dbfs, sample_rate=self.sample_rate,
                         level_cap_dbfs=self.level_cap_dbfs)
        amp = min(amp, self.cap_amplitude)   # float rounding only; check_tone refused above
        f = float(freq_hz)
        with self._lock:
            self.history.append((self.position, f, float(level_dbfs)))
            end_f, end_a = self._end_state()
            if end_a == 0.0:
                self._ramps.append(_Ramp(amp, self.fade_n, f))
            elif end_f == f:
                if end_a != amp:           # level change on the same tone: one smooth ramp
                    self._ramps.append(_Ramp(amp, self.fade_n, None))
            else:
                self._ramps.append(_Ramp(0.0, self.fade_n, None))
                self._ramps.append(_Ramp(amp, self.fade_n, f))
            return self._settled_at()

    def set_silence(self, at: int = 0) -> int:
        """Schedule a fade to silence; return the position where it is silent.

        ``at`` > 0: hold the tone until absolute sample position ``at`` first, so a tone
        has an exact length whatever the buffering ahead of the card.
        """
        with self._lock:
            self.history.append((self.position, None, float(at)))
            end_a = self._end_state()[1]
            if end_a != 0.0:
                hold = int(at) - self._settled_at()
                if hold > 0:
                    self._ramps.append(_Ramp(end_a, hold, None, hold=True))
                self._ramps.append(_Ramp(0.0, self.fade_n, None))
            return self._settled_at()

    def cut_hold(self) -> None:
        """End any pending hold now (Ctrl-C during a timed tone): the fade-out follows."""
        with self._lock:
            for r in self._ramps:
                if r.hold:
                    r.n = max(r.done, 1)

    @property
    def current(self) -> tuple[float | None, float]:
        """(frequency or None when silent, amplitude) at the current position."""
        with self._lock:
            return (self._freq if self._amp > 0 else None), self._amp

    # -- rendering (audio thread)
    def render(self, n: int) -> np.ndarray:
        """The next ``n`` mono samples (float64)."""
        out = np.empty(n, dtype=np.float64)
        with self._lock:
            i = 0
            while i < n:
                if self._ramps:
                    r = self._ramps[0]
                    if r.done == 0:
                        r.start = self._amp
                        if r.freq is not None:
                            self._freq = r.freq
                    k = min(n - i, r.n - r.done)
                    j = np.arange(r.done + 1, r.done + k + 1, dtype=np.float64)
                    env = r.start + (r.target - r.start) * 0.5 * (1.0 - np.cos(np.pi * j / r.n))
                    r.done += k
                    if r.done >= r.n:
                        self._amp = r.target
                        self._ramps.popleft()
                    else:
                        self._amp = float(env[-1])
                else:
                    k = n - i
                    env = np.full(k, self._amp)
                w = 2.0 * np.pi * self._freq / self.sample_rate
                ph = self._phase + w * np.arange(k, dtype=np.float64)
                out[i:i + k] = env * np.sin(ph)
                self._phase = float((self._phase + w * k) % (2.0 * np.pi))
                i += k
            self.position += n
        return out


def replay(history: list[tuple[int, float | None, float]], n: int, sample_rate: int, *,
           level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS, fade_s: float = FADE_S) -> np.ndarray:
    """The first ``n`` samples a :class:`ToneSynth` produced, from its ``history``."""
    syn = ToneSynth(sample_rate, level_cap_dbfs=level_cap_dbfs, fade_s=fade_s)
    parts = []
    for pos, f, lv in history:
        parts.append(syn.render(max(0, min(pos, n) - syn.position)))
        if f is None:
            syn.set_silence(int(lv))         # silence entries keep the hold-until position
        else:
            syn.set_tone(f, lv)
    parts.append(syn.render(max(0, n - syn.position)))
    return np.concatenate(parts)


def synthesize(freq_hz: float, level_dbfs: float, duration_s: float, *,
               sample_rate: int = DEFAULT_SAMPLE_RATE,
               level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS,
               fade_s: float = FADE_S) -> np.ndarray:
    """One whole tone as float32: fade in, hold, fade out; ``duration_s`` includes the fades."""
    syn = ToneSynth(sample_rate, level_cap_dbfs=level_cap_dbfs, fade_s=fade_s)
    n = max(int(round(duration_s * sample_rate)), 2 * syn.fade_n)
    syn.set_tone(freq_hz, level_dbfs)
    head = syn.render(n - syn.fade_n)
    syn.set_silence()
    return np.concatenate([head, syn.render(syn.fade_n)]).astype(np.float32)


# --------------------------------------------------------------------------------------------
# sounddevice / PortAudio, imported lazily; every failure -> AudioError with the fix


def _import_sd() -> Any:
    try:
        import sounddevice as sd
    except OSError as e:          # 'PortAudio library not found'
        raise AudioError(f"{e}: {_PA_FIX}") from None
    except ImportError:
        raise AudioError("python package sounddevice missing: pip install sounddevice") from None
    return sd


_PA_CODES = {
    -9997: "sample rate not supported",           # paInvalidSampleRate
    -9985: "device unavailable (busy?)",           # paDeviceUnavailable
    -9996: "invalid device",                       # paInvalidDevice
    -9998: "channel count not supported",          # paInvalidChannelCount
}


def _pa_message(e: BaseException) -> str:
    """One line from a PortAudioError: PortAudio's text, its host error, no newlines."""
    args = getattr(e, "args", ())
    text = str(args[0]) if args else str(e)
    if len(args) > 2 and isinstance(args[2], tuple) and len(args[2]) > 2 and args[2][2]:
        text += f" ({args[2][2]})"
    return " ".join(text.split())


def _pa_code(e: BaseException) -> int | None:
    args = getattr(e, "args", ())
    return args[1] if len(args) > 1 and isinstance(args[1], int) else None


def _map_open_error(e: BaseException, name: str, rate: int, channels: int) -> AudioError:
    msg, code = _pa_message(e), _pa_code(e)
    low = msg.lower()
    if code == -9997 or "sample rate" in low:
        return AudioError(f"audio device '{name}' does not support {rate} Hz ({msg}); "
                          "choose another {sample_rate} (44100 or 48000 usually work)"
                          ).naming(sample_rate="sample rate")
    if code == -9998 or "channel" in low:
        return AudioError(f"audio device '{name}' cannot open {channels} output channel(s) "
                          f"({msg}); choose another {{device}}").naming(device="audio device")
    if code == -9985 or "busy" in low or "unavailable" in low:
        return AudioError(f"audio device '{name}' is busy or unavailable ({msg}); close the "
                          "program using it or choose another {device}").naming(
                              device="audio device")
    return AudioError(f"cannot open audio device '{name}': {msg}; check `hostctl devices` "
                      "and {device}").naming(device="the audio device")


def probe_output_devices() -> tuple[list[dict[str, Any]], str | None]:
    """(devices, reason): the output devices, and why the list is empty when it is."""
    try:
        sd = _import_sd()
        devs = sd.query_devices()
        default_out = sd.default.device[1]
    except AudioError as e:
        return [], str(e)
    except Exception as e:  # noqa: BLE001 - PortAudioError and friends: report, do not raise
        return [], f"PortAudio cannot list devices: {_pa_message(e)}"
    try:
        apis = {i: h["name"] for i, h in enumerate(sd.query_hostapis())}
    except Exception:  # noqa: BLE001
        apis = {}
    out = []
    for i, d in enumerate(devs):
        if d["max_output_channels"] > 0:
            out.append({"index": i, "name": d["name"],
                        "hostapi": apis.get(d.get("hostapi"), ""),
                        "max_output_channels": int(d["max_output_channels"]),
                        "default_samplerate": float(d["default_samplerate"]),
                        "default": i == default_out})
    return out, (None if out else f"PortAudio lists no output device: {_SERVER_FIX}")


def list_output_devices() -> list[dict[str, Any]]:
    """Output devices (index, name, hostapi, max_output_channels, default_samplerate, default).

    [] when PortAudio is missing or lists nothing; :func:`probe_output_devices` says why.
    """
    return probe_output_devices()[0]


def resolve_device(sd: Any, device: str | int | None, kind: str = "output") -> tuple[int, dict]:
    """Device index and info for a name substring, an index (int or digits) or None (default)."""
    try:
        devs = sd.query_devices()
    except sd.PortAudioError as e:
        raise AudioError(f"PortAudio cannot list devices: {_pa_message(e)}") from None
    key = f"max_{kind}_channels"
    usable = [i for i, d in enumerate(devs) if d[key] > 0]
    if not usable:
        raise AudioError(f"no audio {kind} device found: {_SERVER_FIX}")
    if device is None or (isinstance(device, str) and not device.strip()):
        idx = sd.default.device[0 if kind == "input" else 1]
        if not isinstance(idx, int) or idx not in usable:
            idx = usable[0]
    elif isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        idx = int(device)
        if idx not in usable:
            raise AudioError(f"audio device index {idx} is not an {kind} device; "
                             "see `hostctl devices` for the list")
    else:
        try:
            idx = int(sd.query_devices(device, kind=kind)["index"])
        except ValueError as e:
            names = ", ".join(f"[{i}] {devs[i]['name']}" for i in usable)
            if str(e).startswith("Multiple"):
                raise AudioError(f"several audio {kind} devices match '{device}' ({names}); "
                                 "give more of the name or the index") from None
            raise AudioError(f"no audio {kind} device matching '{device}' (have: {names}); "
                             "see `hostctl devices`") from None
        except sd.PortAudioError as e:
            raise AudioError(f"cannot query audio device '{device}': {_pa_message(e)}") from None
    return idx, dict(devs[idx])


# --------------------------------------------------------------------------------------------
# Outputs


class OutputBase:
    """What every tone output shares: a context manager that closes (fading out)."""

    sample_rate: int = DEFAULT_SAMPLE_RATE

    def __enter__(self) -> OutputBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class SoundDeviceOutput(OutputBase):
    """One continuous PortAudio output stream playing whatever :class:`ToneSynth` says."""

    def __init__(self, device: str | int | None = None, *, channel: str = "both",
                 level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS, settle_s: float = 0.05,
                 sample_rate: int | None = None, fade_s: float = FADE_S,
                 latency: str | float = OUTPUT_LATENCY_S) -> None:
        check_channel(channel)
        check_cap(level_cap_dbfs)
        sd = self._sd = _import_sd()
        idx, info = resolve_device(sd, device, "output")
        self.device_index, self.device_name = idx, str(info["name"])
        rate = int(sample_rate or round(info.get("default_samplerate") or 0) or DEFAULT_SAMPLE_RATE)
        maxch = int(info["max_output_channels"])
        nch = 2 if maxch >= 2 else 1
        if nch == 1 and channel != "both":
            raise AudioError(f"audio device '{self.device_name}' is mono: use {{channel}} both"
                             ).naming(channel="audio channel")
        self.channel, self.settle_s, self.sample_rate = channel, float(settle_s), rate
        self._cols = {"both": list(range(nch)), "left": [0], "right": [1]}[channel]
        self.synth = ToneSynth(rate, level_cap_dbfs=level_cap_dbfs, fade_s=fade_s)
        self.level_cap_dbfs = self.synth.level_cap_dbfs
        self._error: str | None = None
        self._cv = threading.Condition()
        self.underflows = 0
        self._settled_pos = 0
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
            raise _map_open_error(e, self.device_name, rate, nch) from None
        self.latency_s = float(self._stream.latency)
        try:
            self._warm_up()
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
            self._error = self._error or _pa_message(e)
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
        self._check_alive()
        pos = self._settled_pos = self.synth.set_tone(freq_hz, level_dbfs)
        self._wait_position(pos)
        time.sleep(self.latency_s + self.settle_s)
        self._check_alive()

    def silence(self, after_s: float = 0.0) -> None:
        """Fade to silence; return once silence has reached the output.

        ``after_s`` > 0: first hold the tone exactly that long (in samples, counted from the
        moment it settled) -- a tone of exact length whatever the buffering.
        """
        self._check_alive()
        if after_s > 0:
            at = self._settled_pos + int(round(after_s * self.sample_rate))
        else:
            at = 0
            self.synth.cut_hold()
        pos = self.synth.set_silence(at)
        self._wait_position(pos)
        time.sleep(self.latency_s)

    def close(self) -> None:
        """Fade out, stop and release the device. Safe to call twice."""
        if getattr(self, "_closed", True):
            return
        try:
            if not self._error and self._stream.active:
                self.synth.cut_hold()
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
            warnings.warn(f"closing audio device '{self.device_name}': {_pa_message(e)}",
                          stacklevel=2)


def open_output(device: str | int | None = None, *, channel: str = "both",
                level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS, settle_s: float = 0.05,
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
