"""Which tone next: a short log sweep (LED mode; gain and both mode start from a batch
:mod:`hostctl.gaindesign` designs), then the tone that informs most.

Gain mode: the candidate that most shrinks the summed variance of the components still
short of the precision (A-optimal design on the linearised log-model, with each channel's
noise growing as its gain falls). LED mode: bisection in log-frequency of the widest
on/off bracket, at each tone level, until the brackets are narrower than the precision.

Each window is as long as its reading needs (:func:`window_ms`): 20 cycles of the tone, and
samples that cover its phases; an LED bit's window is short (LED_WINDOW_MS), an amplitude's
the run's window. LED brackets are split beside where the LED should switch, estimated from
the amplitudes measured at the bracket's ends (:func:`switch_estimate`, :func:`split_at`):
four or five tones an edge where bisection takes seven, each a third of a second on a real
bench.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hostctl.circuits import Circuit
from hostctl.dataset import Measurement

BAND = (20.0, 20000.0)


def log_sweep(n: int, band: tuple[float, float] = BAND) -> list[float]:
    """``n`` tones evenly spaced in log-frequency across the band, ends included."""
    lo, hi = band
    return [float(f) for f in np.geomspace(lo, hi, n)]


#: cycles of the tone, and of its alias at the probe's sampling rate, a window holds
WINDOW_CYCLES = 20
#: cycles of the alias near 1x and 2x the probe's rate a window holds (the RMS error of a
#: sine falls from ~3 % at 3 cycles to ~0.5 % at 12: :func:`_well_sampled`)
ALIAS_CYCLES = 12
#: an LED bit's window: 575 samples at the probe's 5.75 kHz catch an LED lit 0.5 % of a
#: cycle 95 times in 100, and the reference amplitude that turns a switching voltage into a
#: threshold on |H| holds 100+ cycles above 1 kHz (40 ms windows: 2 of 10 low/high
#: intervals missed the truth on the bench board, --led-vf 0.3, 5 seeds; 100 ms: none)
LED_WINDOW_MS = 100


def samples_needed(freq: float, rate_hz: float | None, qmax: int = 24,
                   fills: float = 3.0) -> float:
    """Samples before the window's sample phases cover the tone evenly, by the rule
    :func:`round_tone` places tones with (:func:`_well_sampled`): ALIAS_CYCLES cycles of the
    alias near 1x and 2x the rate (q = 1, 2), ``fills`` passes through each of the q phase
    clusters of f/rate ~ p/q."""
    if not rate_hz:
        return 0.0
    x = freq / rate_hz
    d = [abs(q * x - round(q * x)) or 1e-12 for q in range(1, qmax + 1)]
    return max(ALIAS_CYCLES / d[0], ALIAS_CYCLES / d[1], *(fills / v for v in d[2:]))


def window_ms(freq: float, rate_hz: float | None, min_ms: float, max_ms: float = 5000) -> int:
    """A window of WINDOW_CYCLES of the tone, whose samples cover its phases evenly (so a
    partial cycle cannot bias the RMS, nor the samples miss the part of a cycle an LED is
    lit), and at least ``min_ms``."""
    need = WINDOW_CYCLES * 1000 / freq
    if rate_hz:
        need = max(need, 1000 * samples_needed(freq, rate_hz) / rate_hz)
    return int(min(max_ms, max(min_ms, math.ceil(need))))


def round_tone(f: float, rate_hz: float | None = None, n_samples: int = 1000,
               band: tuple[float, float] = BAND) -> float:
    """Tones to 4 significant digits, moved off frequencies the probe samples badly.

    The probe's rounds run at ``rate_hz``; if f/rate is near p/q with small q, the samples
    of one window fall on only q phases and the RMS and LED fractions are biased. With
    x = p/q + e the q phase clusters smear by n*e over a window, so we need |q*x - p| of at
    least a few 1/n for every q up to 24 — the tone is nudged (by well under 1%) until so.
    A tone inside ``band`` stays inside it: the card refuses 20.01 kHz.
    """
    f0 = float(f"{f:.4g}")
    if not rate_hz:
        return f0
    lo, hi = band
    inside = lo <= f0 <= hi
    for k in range(0, 60):
        for sign in (1, -1):
            cand = float(f"{f * (1 + sign * k * 0.0007):.4g}")
            if inside and not lo <= cand <= hi:
                continue
            if _well_sampled(cand / rate_hz, n_samples):
                return cand
    return f0


def _well_sampled(x: float, n: int, qmax: int = 24, fills: float = 3.0) -> bool:
    """Samples of a window spread over the tone's phases (x = f / rate, n samples).

    The window holds at least 20 cycles, so n >= 20/x. Near 1x and 2x a multiple of the rate
    (q = 1, 2) a sine's RMS is biased most, so those need a wider berth (12/n: the measured
    worst RMS error falls from ~3% at 3/n to ~0.5%).
    """
    n = max(n, int(20 / x) if x > 0 else n)
    d = [abs(q * x - round(q * x)) for q in range(1, qmax + 1)]
    return all(v >= fills / n for v in d) and min(d[0], d[1]) >= ALIAS_CYCLES / n


@dataclass(frozen=True)
class Tone:
    frequency_hz: float
    level_dbfs: float


def _log_response(circ: Circuit, freqs: np.ndarray, values: Mapping[str, float],
                  capacitance: float | Mapping[str, float]) -> dict[str, np.ndarray]:
    out = circ.response(freqs, values, capacitance)
    return {k: np.log(np.maximum(v.detach().numpy(), 1e-300)) for k, v in out.items()}


def jacobian_log(circ: Circuit, freqs: np.ndarray, values: Mapping[str, float],
                 capacitance: float | Mapping[str, float]
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """d log|H| / d log R per channel (central differences; cheap and exact enough)."""
    base = _log_response(circ, freqs, values, capacitance)
    jac = {ch: np.zeros((len(freqs), len(circ.resistors))) for ch in circ.channels}
    h = 1e-5
    for j, r in enumerate(circ.resistors):
        up = dict(values, **{r: values[r] * math.exp(h)})
        dn = dict(values, **{r: values[r] * math.exp(-h)})
        lu = _log_response(circ, freqs, up, capacitance)
        ld = _log_response(circ, freqs, dn, capacitance)
        for ch in circ.channels:
            jac[ch][:, j] = (lu[ch] - ld[ch]) / (2 * h)
    return base, jac


def gain_sigma(log_gain: np.ndarray, ref_rms_counts: float, noise_counts: float = 0.5,
               n_samples: int = 1000) -> np.ndarray:
    """Standard deviation of a measured log-gain: ADC noise over the signal, plus a floor."""
    sig = np.exp(log_gain) * max(ref_rms_counts, 1.0)
    rel = noise_counts / np.sqrt(max(n_samples, 1)) / np.maximum(sig, 1e-9)
    # quantisation of small signals and model error: never trust a gain below ~2 counts
    rel = np.where(sig < 2.0, 1e3, rel)
    return np.sqrt(rel ** 2 + 1e-3 ** 2)


def next_gain_tone(circ: Circuit, values: Mapping[str, float],
                   capacitance: float | Mapping[str, float], done: Sequence[float],
                   wanted: Iterable[str], ref_rms_counts: float, noise_counts: float,
                   n_samples: int, band: tuple[float, float] = BAND) -> float:
    """The tone that most shrinks the variance of the ``wanted`` components."""
    cand = np.geomspace(band[0], band[1], 241)
    idx = [circ.resistors.index(r) for r in wanted]
    done_arr = np.asarray(sorted(done), dtype=float)
    base_d, jac_d = jacobian_log(circ, done_arr, values, capacitance) if len(done_arr) else ({}, {})
    p = len(circ.resistors)
    info = np.eye(p) * 1e-6
    for ch in circ.channels:
        if len(done_arr):
            w = 1 / gain_sigma(base_d[ch], ref_rms_counts, noise_counts, n_samples) ** 2
            info += (jac_d[ch] * w[:, None]).T @ jac_d[ch]
    base_c, jac_c = jacobian_log(circ, cand, values, capacitance)
    best, best_score = float(cand[len(cand) // 2]), math.inf
    for k, f in enumerate(cand):
        if len(done_arr) and np.min(np.abs(np.log(done_arr / f))) < 0.003:
            continue
        m = info.copy()
        for ch in circ.channels:
            row = jac_c[ch][k]
            w = 1 / gain_sigma(base_c[ch][k:k + 1], ref_rms_counts, noise_counts, n_samples)[0] ** 2
            m += w * np.outer(row, row)
        try:
            cov = np.linalg.inv(m)
        except np.linalg.LinAlgError:
            continue
        score = float(sum(cov[i, i] for i in idx))
        if score < best_score:
            best, best_score = float(f), score
    return best


@dataclass(frozen=True)
class Bracket:
    channel: str
    level_dbfs: float
    lo_hz: float
    hi_hz: float

    @property
    def log_width(self) -> float:
        return math.log(self.hi_hz / self.lo_hz)


def led_brackets(rows: Iterable[Measurement]) -> list[Bracket]:
    """Every on/off switch between neighbouring tones, per channel and level."""
    groups: dict[tuple[str, float], list[Measurement]] = {}
    for m in rows:
        if m.led_usable and m.level_dbfs is not None:
            groups.setdefault((m.channel, m.level_dbfs), []).append(m)
    out = []
    for (ch, lvl), ms in groups.items():
        ms.sort(key=lambda m: m.frequency_hz)
        for a, b in zip(ms, ms[1:], strict=False):
            if a.led != b.led and b.frequency_hz > a.frequency_hz:
                out.append(Bracket(ch, lvl, a.frequency_hz, b.frequency_hz))
    return out


def widest_bracket(rows: Iterable[Measurement]) -> Bracket | None:
    """The widest on/off bracket of these rows (None: the LED never switched)."""
    return max(led_brackets(rows), key=lambda b: b.log_width, default=None)


def amplitude_width(b: Bracket, rows: Iterable[Measurement]) -> float:
    """|log| of the ratio of the channel's measured amplitudes at the bracket's ends: how
    far apart they put the LED's threshold (inf when an end has no amplitude)."""
    ends = {m.frequency_hz: m.vout_v for m in rows if m.channel == b.channel
            and m.level_dbfs == b.level_dbfs and m.frequency_hz in (b.lo_hz, b.hi_hz)}
    lo, hi = ends.get(b.lo_hz), ends.get(b.hi_hz)
    if not lo or not hi:
        return math.inf
    return abs(math.log(hi / lo))


def next_led_tone(rows: Iterable[Measurement], precision: float,
                  place: Callable[[float], float] = round_tone,
                  bracket: Bracket | None = None, past_ends: bool = False) -> Tone | None:
    """A tone in the widest bracket still wider than the precision allows: where the LED
    should switch (:func:`switch_estimate`), stepped so that the next tone can close the
    bracket (:func:`split_at`); the geometric midpoint when there is no estimate.

    A bracket of log-width w pins a first-order corner to within about w/2 either way,
    so brackets are split until w < precision (with margin for the threshold's share).
    """
    rows = list(rows)
    brackets = [b for b in led_brackets(rows) if b.log_width > precision]
    if not brackets:
        return None
    b = bracket or max(brackets, key=lambda b: b.log_width)
    mid = math.sqrt(b.lo_hz * b.hi_hz)
    for f in (split_at(b, switch_estimate(b, rows, past_ends), precision), mid):
        f = place(f)
        if b.lo_hz < f < b.hi_hz:
            return Tone(f, b.level_dbfs)
    return None


def next_led_tones(rows: Iterable[Measurement], precision: float,
                   place: Callable[[float], float] = round_tone, past_ends: bool = False
                   ) -> list[Tone]:
    """One tone for every bracket still wider than the precision, widest first: brackets of
    different channels or levels do not depend on each other's next bit, so their tones can
    be played back to back and read in one go (:func:`next_led_tone` for the choice inside a
    bracket)."""
    rows = list(rows)
    brackets = sorted((b for b in led_brackets(rows) if b.log_width > precision),
                      key=lambda b: -b.log_width)
    out: list[Tone] = []
    for b in brackets:
        t = next_led_tone([m for m in rows if m.channel == b.channel
                           and m.level_dbfs == b.level_dbfs], precision, place, b, past_ends)
        if t is not None and t not in out:
            out.append(t)
    return out


#: how sure the first level's lit fraction must be of a tone's bit at the second before no
#: tone is played there to find out: its amplitude this many times the switching level
#: (lit), or under it by as much (dark). A sine of peak A is above V for acos(V/A)/pi of
#: a cycle, so the lit fraction tells A/V.
SURE_LIT = 1.2


def second_level_tones(rows: Iterable[Measurement], first: float, second: float,
                       grid: Sequence[float]) -> list[Tone]:
    """The sweep tones the second (lower) level needs to bracket its switches, from what
    the first level's sweep saw: an LED dark at the first level is dark at the second, so
    only its lit runs can hold a switch there, on the lit side of each first-level one.

    From each side of every lit run of the ``grid`` (per channel) inward, past the tones
    sure to be dark (the run's dark neighbour; those whose lit fraction says so,
    :data:`SURE_LIT`): the last of them, then the run's tones up to the first lit at the
    second level or sure to be. A run dark all over there is read at its brightest tone.
    Called each round with the rows so far (a wrong guess is walked past); empty when
    every switch there is bracketed. On the bench board 7-8 of the sweep's 12 tones, and
    none of its slow low ones (1.9 s of windows at 20-70 Hz)."""
    step = 10 ** ((second - first) / 20)
    seen: dict[tuple[str, float], dict[float, Measurement]] = {}
    for m in rows:
        if m.led_usable and m.level_dbfs in (first, second):
            seen.setdefault((m.channel, m.level_dbfs), {})[m.frequency_hz] = m
    out: set[float] = set()
    for (ch, lvl), at1 in seen.items():
        if lvl != first:
            continue
        at2 = seen.get((ch, second), {})
        on = [f for f in grid if f in at1]

        def lit2(f: float, at1: dict[float, Measurement] = at1,
                 at2: dict[float, Measurement] = at2) -> bool | None:
            """Lit at the second level: as read there, or as sure as the first says."""
            if f in at2 or not at1[f].led:
                return bool(f in at2 and at2[f].led)
            frac = at1[f].led_fraction
            c = math.cos(math.pi * frac) if frac is not None else math.nan   # V / A
            return True if step > SURE_LIT * c else False if step * SURE_LIT < c else None

        for i, f in enumerate(on):
            if not at1[f].led or (i and at1[on[i - 1]].led):
                continue
            run = on[i:]
            run = run[:next((k for k, g in enumerate(run) if not at1[g].led), len(run))]
            if all(lit2(g) is False for g in run):
                out |= {max(run, key=lambda g: at1[g].led_fraction or 0.0)} - set(at2)
                continue
            after = on[i + len(run)] if i + len(run) < len(on) else None
            for side, end in ((run, on[i - 1] if i else None), (run[::-1], after)):
                seq = [end, *side] if end is not None else side
                k = next(j for j, g in enumerate(seq) if lit2(g) is not False)
                out |= {seq[k - 1]} - set(at2) if k else set()
                dark = k > 0                  # a dark tone before: a switch on this side
                for g in seq[k:]:
                    state = lit2(g)
                    if state is True and not dark:
                        break
                    out |= {g} - set(at2)
                    if state is True:
                        break
                    dark = dark or state is False
    return [Tone(f, second) for f in sorted(out)]


def switch_estimate(b: Bracket, rows: Sequence[Measurement], past_ends: bool = False
                    ) -> float | None:
    """Where in the bracket its channel's amplitude crosses the LED's switching level:
    log-linear between the amplitudes at the bracket's ends, the level from the lit tone
    nearest to switching (a sine of peak A is above V for acos(V/A)/pi of a cycle). A
    guess to place a tone by, never data: the LED bits alone decide the bracket.

    ``past_ends``: an estimate up to a bracket's width past an end (the level is read off
    a few lit samples) is taken at that end, not given up for the midpoint: LED mode with
    the threshold estimated, bench seeds 1-20, 55.6 -> 52.5 tones a run at the same
    coverage. With V_f given it tipped test_acceptance_over_10_boards[led] under its 90 %
    coverage floor (35/40 intervals), so there the midpoint stays."""
    mine = [m for m in rows if m.channel == b.channel and m.level_dbfs == b.level_dbfs
            and m.led_usable and m.vout_v]
    ends = {m.frequency_hz: m for m in mine if m.frequency_hz in (b.lo_hz, b.hi_hz)}
    lit = [m for m in mine if m.led and m.led_fraction is not None and m.led_fraction < 0.5]
    if len(ends) < 2 or not lit:
        return None
    near = min(lit, key=lambda m: m.led_fraction or 0.0)
    v_switch = float(near.vout_v or 0.0) * math.cos(math.pi * float(near.led_fraction or 0.0))
    a, c = math.log(float(ends[b.lo_hz].vout_v or 1)), math.log(float(ends[b.hi_hz].vout_v or 1))
    if v_switch <= 0 or a == c:
        return None
    x = (math.log(v_switch) - a) / (c - a)
    if past_ends and -1 < x < 2:
        x = min(max(x, 0.0), 1.0)
    elif not 0 < x < 1:
        return None
    return b.lo_hz * (b.hi_hz / b.lo_hz) ** x


def split_at(b: Bracket, estimate: float | None, precision: float) -> float:
    """The next tone in a bracket: beside the estimated switch, so that if the estimate is
    right one more tone leaves a bracket of 0.9 x ``precision``; at least a tenth of the
    bracket in from either end, so a poor estimate still shrinks it. The midpoint without
    an estimate."""
    if estimate is None:
        return math.sqrt(b.lo_hz * b.hi_hz)
    lo, hi, x = math.log(b.lo_hz), math.log(b.hi_hz), math.log(estimate)
    reach = 0.9 * precision
    if x - lo <= reach:
        t = lo + reach
    elif hi - x <= reach:
        t = hi - reach
    else:
        t = x - reach / 2 if x - lo < hi - x else x + reach / 2
    edge = b.log_width / 10
    return math.exp(min(max(t, lo + edge), hi - edge))
