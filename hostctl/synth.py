"""What a tone is: the safe band and level cap, and its samples (pure numpy, no device).

Every tone output checks with :func:`check_tone` (refused, never clamped: a quietly clamped
level would corrupt level-dependent LED data) and the sound card renders :class:`ToneSynth`,
whose ``history`` and :func:`replay` reproduce exactly what was played.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from hostctl.errors import AudioError, ToneRefused

FADE_S = 0.010
DEFAULT_LEVEL_CAP_DBFS = -6.0
DEFAULT_SAMPLE_RATE = 48000
MIN_FREQ_HZ = 20.0
MAX_FREQ_HZ = 20000.0
MAX_FRACTION_OF_RATE = 0.45


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


# --------------------------------------------------------------------------------------------
# Synthesis (pure numpy)


@dataclass
class _Ramp:
    target: float          # amplitude at the end
    n: int                 # samples
    freq: float | None     # oscillator frequency set when the ramp starts (None: keep)
    start: float = 0.0     # amplitude when it started (filled in then)
    done: int = 0
    hold: bool = False     # a constant stretch before a change (cut short by cancel)


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
        self.history: deque[tuple] = deque(maxlen=10000)

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

    def set_tone(self, freq_hz: float, level_dbfs: float, at: int = 0) -> int:
        """Schedule a change to this tone; return the sample position where it is reached.

        ``at`` > 0: what plays now holds until absolute sample position ``at`` first, so a
        tone queued behind another starts where that one's planned length ends (the output
        latency is then paid once for a whole run of tones, not once per tone).
        """
        amp = check_tone(freq_hz, level_dbfs, sample_rate=self.sample_rate,
                         level_cap_dbfs=self.level_cap_dbfs)
        amp = min(amp, self.cap_amplitude)   # float rounding only; check_tone refused above
        f = float(freq_hz)
        with self._lock:
            self.history.append((self.position, f, float(level_dbfs), int(at)))
            end_f, end_a = self._end_state()
            self._hold_until(int(at), end_a)
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
                self._hold_until(int(at), end_a)
                self._ramps.append(_Ramp(0.0, self.fade_n, None))
            return self._settled_at()

    def _hold_until(self, at: int, amp: float) -> None:
        """What plays at the end of the queue goes on until sample ``at`` (lock held)."""
        if at - self._settled_at() > 0:
            self._ramps.append(_Ramp(amp, at - self._settled_at(), None, hold=True))

    def cancel(self) -> None:
        """Drop every change not yet begun and end a hold now (silence() mid-run, Ctrl-C):
        a ramp already under way completes, so the output never jumps."""
        with self._lock:
            while len(self._ramps) > 1 or (self._ramps and self._ramps[-1].done == 0):
                self._ramps.pop()
            for r in self._ramps:
                if r.hold:
                    r.n = max(r.done, 1)

    @property
    def silent(self) -> bool:
        """Nothing playing and nothing queued."""
        with self._lock:
            return self._amp == 0.0 and not self._ramps

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


def replay(history: list[tuple], n: int, sample_rate: int, *,
           level_cap_dbfs: float = DEFAULT_LEVEL_CAP_DBFS, fade_s: float = FADE_S) -> np.ndarray:
    """The first ``n`` samples a :class:`ToneSynth` produced, from its ``history``."""
    syn = ToneSynth(sample_rate, level_cap_dbfs=level_cap_dbfs, fade_s=fade_s)
    parts = []
    for pos, f, lv, *at in history:
        parts.append(syn.render(max(0, min(pos, n) - syn.position)))
        if f is None:
            syn.set_silence(int(lv))         # silence entries keep the hold-until position
        else:
            syn.set_tone(f, lv, *at)
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
