"""Listen to what hostctl really plays, so a virtual bench can follow it.

``follow(device, on_tone)`` records an input device (in CI: the PulseAudio null sink's
monitor, see .ci/pulse.sh) in ~0.1 s blocks, estimates the tone in each block and calls
``on_tone(freq_hz or None, level_dbfs)`` whenever it changes::

    from sims.listen import follow
    follow("hostctl_null.monitor", lambda f, lv: bench.set_tone(f, lv), stop_event=ev)

The estimator (:func:`estimate_tone`, pure numpy) is an FFT peak refined by a parabola on
the Hann-windowed log spectrum, then a least-squares sine fit (Gauss-Newton on frequency,
linear in amplitude, phase and DC): for a clean block it recovers frequency and amplitude to
~1e-6. Blocks that are not one steady sine (a fade or a switch inside the block) have a large
fit residual and are ignored, so the follower never reports a half-faded level.

``python -m sims.bench serve --listen`` does not follow changes as they come: it needs the
tone *during each measurement window*, and the audio arrives after the host's MEASURE does.
:class:`Capture` records into blocks stamped in ``time.monotonic()`` (shared by all
processes), and :class:`MeasureGate` holds each MEASURE line until the capture covers the
command's window, then sets the bench's tone to the steady sine heard there.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hostctl.errors import AudioError

SILENCE_DBFS = -60.0        # below this RMS level (as a sine's dBFS) a block is silence
MAX_RESIDUAL = 0.02         # fit residual RMS / amplitude above which a block is "changing"
FREQ_TOLERANCE = 1e-3       # relative frequency change that counts as a new tone
LEVEL_TOLERANCE_DB = 0.1    # level change that counts as a new tone


@dataclass(frozen=True)
class SineFit:
    freq_hz: float
    amplitude: float        # peak
    phase: float            # radians at sample 0 (sin convention)
    dc: float
    residual: float         # RMS of what the sine does not explain

    @property
    def level_dbfs(self) -> float:
        return 20.0 * math.log10(self.amplitude) if self.amplitude > 0 else -math.inf


def coarse_frequency(x: np.ndarray, rate: float) -> float:
    """FFT peak of a Hann-windowed block, refined by a parabola through log magnitudes."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    nfft = 1 << max(12, int(math.ceil(math.log2(4 * n))))     # zero-pad: finer grid
    spec = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(n), nfft))
    spec[0] = 0.0
    k = int(np.argmax(spec))
    if 0 < k < len(spec) - 1 and spec[k - 1] > 0 and spec[k + 1] > 0:
        a, b, c = np.log(spec[k - 1:k + 2])
        den = a - 2 * b + c
        delta = 0.5 * (a - c) / den if den != 0 else 0.0
    else:
        delta = 0.0
    return (k + delta) * rate / nfft


def fit_sine(x: np.ndarray, rate: float, freq_hz: float | None = None,
             iterations: int = 8) -> SineFit:
    """Least-squares sine fit; starts from ``freq_hz`` or the coarse FFT estimate."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    t = (np.arange(n) - (n - 1) / 2) / rate        # centred time: decorrelates f and phase
    f = coarse_frequency(x, rate) if freq_hz is None else float(freq_hz)
    a = b = c = 0.0
    for _ in range(iterations):
        w = 2 * np.pi * f
        s, co = np.sin(w * t), np.cos(w * t)
        m = np.column_stack([s, co, np.ones(n)])
        (a, b, c), *_ = np.linalg.lstsq(m, x, rcond=None)
        # linearise in w: d/dw (a sin + b cos) = t (a cos - b sin)
        j = np.column_stack([s, co, np.ones(n), t * (a * co - b * s)])
        sol, *_ = np.linalg.lstsq(j, x, rcond=None)
        dw = sol[3]
        f_new = f + dw / (2 * np.pi)
        if not math.isfinite(f_new) or f_new <= 0:
            break
        done = abs(f_new - f) < 1e-9 * f
        f = f_new
        if done:
            break
    w = 2 * np.pi * f
    s, co = np.sin(w * t), np.cos(w * t)
    (a, b, c), *_ = np.linalg.lstsq(np.column_stack([s, co, np.ones(n)]), x, rcond=None)
    amp = math.hypot(a, b)
    resid = float(np.sqrt(np.mean((x - a * s - b * co - c) ** 2)))
    t0 = -(n - 1) / 2 / rate
    phase = math.atan2(b, a) + w * t0
    return SineFit(float(f), float(amp), float(phase % (2 * np.pi)), float(c), resid)


def estimate_tone(x: np.ndarray, rate: float, *, silence_dbfs: float = SILENCE_DBFS,
                  max_residual: float = MAX_RESIDUAL) -> tuple[float | None, float] | None:
    """(freq_hz, level_dbfs) of a steady tone; (None, level) for silence; None if changing.

    Level is a sine's dBFS (peak 1.0 = 0 dBFS); for silence it is the RMS level as such.
    """
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 16:
        return None
    rms = float(np.sqrt(np.mean((x - x.mean()) ** 2)))
    level_rms = 20 * math.log10(rms * math.sqrt(2)) if rms > 0 else -120.0
    if level_rms < silence_dbfs:
        return None, max(level_rms, -120.0)      # finite: callers may send it as JSON
    fit = fit_sine(x, rate)
    if fit.amplitude <= 0 or fit.residual > max_residual * fit.amplitude:
        return None
    return fit.freq_hz, fit.level_dbfs


class ToneTracker:
    """Turns per-block estimates into change events (pure logic; testable without audio)."""

    def __init__(self, on_tone: Callable[[float | None, float], Any], *,
                 freq_tolerance: float = FREQ_TOLERANCE,
                 level_tolerance_db: float = LEVEL_TOLERANCE_DB) -> None:
        self.on_tone = on_tone
        self.freq_tol, self.level_tol = freq_tolerance, level_tolerance_db
        self.current: tuple[float | None, float] | None = None

    def feed(self, est: tuple[float | None, float] | None) -> bool:
        """Report ``est`` if it differs from the last report; True if reported."""
        if est is None:
            return False
        f, lv = est
        cur = self.current
        if cur is not None:
            cf, clv = cur
            if f is None and cf is None:
                return False
            if (f is not None and cf is not None and abs(f - cf) <= self.freq_tol * cf
                    and abs(lv - clv) <= self.level_tol):
                return False
        self.current = (f, lv)
        self.on_tone(f, lv)
        return True


def follow(device: str | int | None, on_tone: Callable[[float | None, float], Any], *,
           stop_event: threading.Event | None = None, block_s: float = 0.1,
           sample_rate: int | None = None, silence_dbfs: float = SILENCE_DBFS) -> None:
    """Record ``device`` and call ``on_tone(freq_hz | None, level_dbfs)`` on every change.

    Runs until ``stop_event`` is set (or forever). The loudest input channel is used, so a
    tone played on the left or right only is still heard. Raises AudioError if the device
    cannot be opened or fails mid-run.
    """
    from hostctl.portaudio import import_sd, map_open_error, pa_message, resolve_device

    sd = import_sd()
    idx, info = resolve_device(sd, device, "input")
    name = str(info["name"])
    rate = int(sample_rate or round(info.get("default_samplerate") or 0) or 48000)
    nch = min(2, int(info["max_input_channels"]))
    block = max(256, int(round(block_s * rate)))
    blocks: queue.Queue[np.ndarray] = queue.Queue(maxsize=64)

    def callback(indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        try:
            blocks.put_nowait(indata.copy())
        except queue.Full:           # the consumer is slow: drop, the next block will do
            pass

    def report(f: float | None, lv: float) -> None:
        # A follower outlives one bad report (e.g. a bench refusing a tone it cannot play).
        try:
            on_tone(f, lv)
        except Exception as e:  # noqa: BLE001
            print(f"listen: on_tone({f}, {lv:.2f}) failed: {e}", file=sys.stderr, flush=True)

    tracker = ToneTracker(report)
    try:
        stream = sd.InputStream(device=idx, channels=nch, samplerate=rate, dtype="float32",
                                blocksize=block, latency=0.2, callback=callback)
        stream.start()
    except (sd.PortAudioError, ValueError) as e:
        raise map_open_error(e, name, rate, nch) from None
    try:
        while stop_event is None or not stop_event.is_set():
            try:
                data = blocks.get(timeout=0.5)
            except queue.Empty:
                if not stream.active:
                    raise AudioError(f"audio input '{name}' stopped mid-run; "
                                     "check the device (or the sound server)") from None
                continue
            ch = int(np.argmax(np.sqrt(np.mean(data.astype(np.float64) ** 2, axis=0))))
            tracker.feed(estimate_tone(data[:, ch], rate, silence_dbfs=silence_dbfs))
    except sd.PortAudioError as e:
        raise AudioError(f"audio input '{name}': {pa_message(e)}") from None
    finally:
        try:
            stream.stop()
            stream.close()
        except sd.PortAudioError:
            pass


# ------------------------------------------------------------------------ timestamped capture
@dataclass
class _Block:
    t0: float               # time.monotonic() of the block's first sample (capture instant)
    x: np.ndarray           # mono float64 (the loudest channel of the block)


class Capture:
    """An input device recorded into a ring of blocks stamped in ``time.monotonic()``.

    What a listening virtual bench needs to answer "what was playing during my measurement
    window?": :meth:`stretch` returns the samples captured in a span of (monotonic) time,
    waiting until the capture has covered it. Each block is stamped from PortAudio's
    ``inputBufferAdcTime`` (the capture instant of its first sample; PortAudio's clock is
    mapped to the monotonic one through ``currentTime`` at the callback), or, where the host
    API gives none, from the callback time less the block length. Monotonic time is shared by
    every process on the machine, so the player's "tone settled at T" and this recorder's
    "sample captured at T" can be compared across processes.
    """

    def __init__(self, device: str | int | None = None, *, sample_rate: int | None = None,
                 keep_s: float = 10.0, block_s: float = 0.02) -> None:
        from hostctl.portaudio import import_sd, map_open_error, resolve_device

        sd = self._sd = import_sd()
        idx, info = resolve_device(sd, device, "input")
        self.name = str(info["name"])
        self.rate = int(sample_rate or round(info.get("default_samplerate") or 0) or 48000)
        nch = min(2, int(info["max_input_channels"]))
        self._blocks: list[_Block] = []
        self._cv = threading.Condition()
        self._keep_s = float(keep_s)
        self.overflows = 0
        self.adc_stamped = 0        # blocks stamped from the ADC time (else callback time)
        self._error: str | None = None
        try:
            self._stream = sd.InputStream(device=idx, channels=nch, samplerate=self.rate,
                                          dtype="float32",
                                          blocksize=max(64, int(round(block_s * self.rate))),
                                          latency="low", callback=self._callback)
        except (sd.PortAudioError, ValueError) as e:
            raise map_open_error(e, self.name, self.rate, nch) from None

    # audio thread
    def _callback(self, indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
        import time

        now = time.monotonic()
        if status.input_overflow:
            self.overflows += 1
        adc, cur = float(t.inputBufferAdcTime or 0.0), float(t.currentTime or 0.0)
        age = cur - adc
        if adc > 0 and cur > 0 and 0.0 <= age < 5.0:
            t0 = now - age
            self.adc_stamped += 1
        else:
            t0 = now - frames / self.rate
        data = indata.astype(np.float64)
        ch = int(np.argmax(np.sqrt(np.mean(data ** 2, axis=0)))) if data.shape[1] > 1 else 0
        with self._cv:
            self._blocks.append(_Block(t0, data[:, ch].copy()))
            while self._blocks and self._blocks[0].t0 < now - self._keep_s:
                self._blocks.pop(0)
            self._cv.notify_all()

    def start(self, timeout_s: float = 15.0) -> float:
        """Start; return once samples flow (a sound server may start capture seconds late)."""
        import time

        t_start = time.monotonic()
        try:
            self._stream.start()
        except self._sd.PortAudioError as e:
            from hostctl.portaudio import pa_message

            raise AudioError(f"audio input '{self.name}': {pa_message(e)}") from None
        with self._cv:
            while not self._blocks:
                left = t_start + timeout_s - time.monotonic()
                if left <= 0:
                    raise AudioError(f"audio input '{self.name}' delivered nothing in "
                                     f"{timeout_s:g} s; check the device (or the sound server)")
                self._cv.wait(min(left, 0.1))
        return time.monotonic() - t_start

    @property
    def covered_until(self) -> float:
        """Monotonic time up to which samples have been captured and delivered."""
        with self._cv:
            if not self._blocks:
                return -math.inf
            b = self._blocks[-1]
            return b.t0 + len(b.x) / self.rate

    def stretch(self, t_from: float, t_to: float, *, wait_until: float | None = None
                ) -> np.ndarray | None:
        """Samples captured in [t_from, t_to] (monotonic s), waiting for them to arrive
        until ``wait_until`` (monotonic; None: no waiting). None if not (yet) covered."""
        import time

        with self._cv:
            while True:
                last = self._blocks[-1] if self._blocks else None
                if last is not None and last.t0 + len(last.x) / self.rate >= t_to:
                    break
                if wait_until is None or time.monotonic() >= wait_until:
                    return None
                if not self._stream.active:
                    raise AudioError(f"audio input '{self.name}' stopped mid-run; check the "
                                     "device (or the sound server)")
                self._cv.wait(min(0.05, max(0.0, wait_until - time.monotonic())))
            parts = []
            for b in self._blocks:
                n = len(b.x)
                t_end = b.t0 + n / self.rate
                if t_end <= t_from or b.t0 >= t_to:
                    continue
                i0 = max(0, int(math.ceil((t_from - b.t0) * self.rate)))
                i1 = min(n, int(math.floor((t_to - b.t0) * self.rate)))
                if i1 > i0:
                    parts.append(b.x[i0:i1])
        return np.concatenate(parts) if parts else None

    def tone_during(self, t_from: float, t_to: float, *, wait_until: float | None = None,
                    silence_dbfs: float = SILENCE_DBFS
                    ) -> tuple[float | None, float] | None:
        """:func:`estimate_tone` of the stretch: (freq, dBFS), (None, dBFS) for silence,
        None if it was changing (a fade inside) or is not covered yet."""
        x = self.stretch(t_from, t_to, wait_until=wait_until)
        if x is None or len(x) < 16:
            return None
        return estimate_tone(x, self.rate, silence_dbfs=silence_dbfs)

    def close(self) -> None:
        try:
            self._stream.stop()
            self._stream.close()
        except self._sd.PortAudioError:
            pass


# ------------------------------------------------------------------------ MEASURE gating
#: Shortest / longest stretch of audio that decides the tone of one MEASURE window.
GATE_MIN_S = 0.05
GATE_MAX_S = 0.2
#: How far a stretch slides forward when it was not one steady tone (a fade still in it).
GATE_STEP_S = 0.02
#: Host bytes without a newline are passed on after this long (the host never does this).
GATE_PARTIAL_S = 0.05


class MeasureGate:
    """Holds each ``MEASURE`` command until the capture has heard what played in its window.

    A listening virtual bench computes its reply the instant the command arrives, but the
    tone the host started just before is still on its way through the sound server and the
    recorder. So every host line passes through here: other commands go straight on to
    ``write``; a MEASURE line arriving at monotonic time t waits (in real time) until the
    capture covers [t, t + W] (W = its window, 0.05..0.2 s), and the tone heard there -
    which must be one steady sine (or silence), else the stretch slides forward in 20 ms
    steps, waiting for the fade to end - is handed to ``set_tone(freq | None, dBFS)`` just
    before the line is written. The audio decides, not a guess of the latency: the player
    only has to send MEASURE once its tone has settled (hostctl's tone() does).

    If no steady tone is heard within ``budget_s`` (+ the window) the line goes on with the
    last tone heard, and a warning is printed, so the host gets its reply before its own
    timeout. Non-blocking: call :meth:`pump` from the serving loop; it says when to call again.
    """

    def __init__(self, capture: Capture, set_tone: Callable[[float | None, float], Any],
                 write: Callable[[bytes], Any], *, budget_s: float = 0.75,
                 log: Callable[[str], Any] | None = None, verbose: bool = False) -> None:
        self.capture, self.set_tone, self.write = capture, set_tone, write
        self.budget_s = float(budget_s)
        self.verbose = verbose          # log every tone heard for a MEASURE
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self._lines: list[tuple[float, bytes]] = []
        self._partial = bytearray()
        self._partial_t = 0.0
        self._slide = 0.0
        self.heard: list[tuple[float | None, float, float]] = []   # (freq, dBFS, wait s)
        self.fallbacks = 0

    def reset(self) -> None:
        """Forget queued bytes (the host closed or reopened the port)."""
        self._lines.clear()
        self._partial.clear()
        self._slide = 0.0

    def feed(self, data: bytes, t: float) -> None:
        """Host bytes that arrived at monotonic time ``t``."""
        if not self._partial:
            self._partial_t = t
        self._partial += data
        while b"\n" in self._partial:
            line, _, rest = bytes(self._partial).partition(b"\n")
            self._lines.append((self._partial_t, line + b"\n"))
            self._partial[:] = rest
            self._partial_t = t

    @staticmethod
    def measure_ms(line: bytes) -> int | None:
        """The window of a MEASURE command line, else None."""
        tok = line.split()
        if len(tok) >= 3 and tok[1] == b"MEASURE":
            try:
                return int(tok[2])
            except ValueError:
                return None
        return None

    def pump(self, now: float | None = None) -> float | None:
        """Pass on what may go; seconds until the next call is useful (None: idle)."""
        import time

        now = time.monotonic() if now is None else now
        if self._partial and not self._lines and now - self._partial_t > GATE_PARTIAL_S:
            self.write(bytes(self._partial))
            self._partial.clear()
        while self._lines:
            t_arr, line = self._lines[0]
            ms = self.measure_ms(line)
            if ms is None:
                self.write(line)
                self._lines.pop(0)
                continue
            w = min(GATE_MAX_S, max(GATE_MIN_S, ms / 1000.0))
            deadline = t_arr + self.budget_s + min(ms, 5000) / 1000.0
            while True:
                a = t_arr + self._slide
                if self.capture.covered_until < a + w:
                    if now < deadline:
                        return min(0.02, max(0.002, a + w - self.capture.covered_until))
                    est = None
                    break
                est = self.capture.tone_during(a, a + w)
                if est is not None:
                    break
                self._slide += GATE_STEP_S      # a fade in the stretch: wait it out
            if est is None:
                self.fallbacks += 1
                self.log(f"listen: no steady tone heard within {now - t_arr:.2f} s of a "
                         "MEASURE; measuring the last tone heard (is the audio playing, and "
                         "does the player wait for its tone to settle?)")
            else:
                self.heard.append((est[0], est[1], now - t_arr))
                if self.verbose:
                    what = "silence" if est[0] is None else f"{est[0]:.3f} Hz"
                    self.log(f"listen: MEASURE {ms} ms <- {what} at {est[1]:.2f} dBFS "
                             f"(waited {now - t_arr:.3f} s)")
                try:
                    self.set_tone(est[0], est[1])
                except Exception as e:  # noqa: BLE001 - e.g. above the board's sound card
                    self.log(f"listen: the bench refused {est[0]} Hz at {est[1]:.2f} dBFS "
                             f"({e}); measuring silence")
                    self.set_tone(None, est[1])
            self._slide = 0.0
            self.write(line)
            self._lines.pop(0)
        return GATE_PARTIAL_S if self._partial else None
