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
    from hostctl.audio import _import_sd, _map_open_error, _pa_message, resolve_device

    sd = _import_sd()
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
        raise _map_open_error(e, name, rate, nch) from None
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
        raise AudioError(f"audio input '{name}': {_pa_message(e)}") from None
    finally:
        try:
            stream.stop()
            stream.close()
        except sd.PortAudioError:
            pass
