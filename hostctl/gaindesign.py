"""The first gain tones, chosen by expected information instead of a fixed sweep.

A tone is worth what it shrinks the components' 95 % intervals, per second of bench time it
costs. The model is the fit's own, linearised: d log|H| / d log p for every resistor and
every nuisance the netlist holds by a prior (ESR, the capacitors' scale), so the design
knows what no tone can pin down (a film capacitor's ESR moves R_band_low by ~0.1 % whatever
is played). Each reading's noise is the probe's own figure (:mod:`hostctl.noise`: white
noise over the window's samples plus the phase-cover term near the probe's aliases), so a
tone the probe samples badly, or a long low-frequency window, is weighed at its worth. The
design holds over the circuit's family (a passive band-pass reads differently from a
buffered one) and over the parts' tolerances. Its predictions match the fit: for the old
12-tone sweep on the bench board it predicts 95 % half-widths of 0.14/0.33/0.23/0.16 %, the
fit reported 0.13/0.36/0.20/0.13 % (seed 1).

What the linear model does not see, measured on the virtual bench (seeds 1-10,
benchmarks/calibrate_variants.py): three tones with none beyond 2x the two upper corners
(nothing above 6.3 kHz) missed a corner by 0.195 % on average against 0.164 % with a 10 kHz
tone (0.23 against 0.13 % in an earlier run), at about the same predicted precision; hence
every corner is bracketed by a tone BRACKET times beyond it on both sides, on its
asymptotes, where the RC product shows apart from the nuisances.

The tones are chosen together (greedy A-optimal, variance removed per bench second) and
measured as one batch: a real sound card then pays its output latency once for them all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from hostctl.circuits import Circuit
from hostctl.noise import phase_cover_var

#: what a planned tone costs beyond its window once tones play back to back: the fades
#: (2 x 10 ms), the settle (50 ms) and a guard for the serial round trip
TONE_OVERHEAD_S = 0.07
#: log-spread of the parts the design must hold for (5 % resistors, 10 % capacitors)
PART_SPREAD = 0.11
#: a reading's relative error no window averages away (the model's own, the card's drift)
READING_FLOOR = 2e-4
#: candidate tones across the band (log-spaced; the probe's bad ratios dropped by the cost)
N_CANDIDATES = 49
#: stop adding tones once the best one shrinks the summed variance by less than this
#: fraction per second of bench time (diminishing returns), the precision being met, or at
#: MAX_TONES. Measured on the bench board, seeds 1-30, with tones back to back and a 20 ms
#: settle (benchmarks/calibrate_variants.py: tones with the reference, bench s, worst corner
#: error, intervals covering the truth): gain 0.5 and 6 -> 7 tones, 2.32 s, 0.114 %,
#: 120/120; 0.2 and 7 -> 8, 2.58 s, 0.116 %, 119/120; 0.05 and 11 -> 12, 3.71 s, 0.105 %,
#: 119/120; the old 12-tone sweep 5.16 s, 0.131 %, 116/120. Both mode (its LED threshold
#: tones read gains too) at 0.5 and 6: 21.5 tones, 5.56 s, 0.096 %, 117/120; at 0.2 and 7:
#: 5.71 s, 0.101 %, 114/120; the sweep 7.92 s, 0.117 %, 116/120. Both modes take 0.5 and 6.
MIN_GAIN_PER_S = 0.5
MAX_TONES = 6
#: the predicted 95 % half-width the design reaches, as a fraction of the asked precision
PRECISION_MARGIN = 0.5
#: a corner is bracketed by a tone at least this factor below it and one this far above
BRACKET = 3.0
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Bench:
    """What the pre-flight measured: the reference's RMS, each channel's noise, the rate."""

    ref_rms: float
    noise_rms: float
    rate_hz: float | None
    min_window_ms: int

    def samples(self, window_ms: float) -> int:
        return max(int((self.rate_hz or 5700.0) * window_ms / 1000), 1)


@dataclass(frozen=True)
class Design:
    freqs: list[float]
    #: predicted 95 % half-width (relative) of each resistor, worst over the scenarios
    half_width: dict[str, float]
    bench_s: float


def params(circ: Circuit) -> list[str]:
    return list(circ.resistors) + list(circ.nuisance)


def nominal(circ: Circuit, values: Mapping[str, float]) -> dict[str, float]:
    out = {k: float(values.get(k, circ.params.get(k, 1.0))) for k in circ.resistors}
    out.update({k: n.nominal for k, n in circ.nuisance.items()})
    return out


def prior_info(circ: Circuit) -> np.ndarray:
    """Information the fit's priors hold: nuisances by their tolerance, resistors none."""
    d = [1e-8] * len(circ.resistors)
    d += [1.0 / max(n.relative, 1e-6) ** 2 for n in circ.nuisance.values()]
    return np.diag(d)


def jacobian(circ: Circuit, freqs: np.ndarray, values: Mapping[str, float],
             capacitance: float | Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """|H| (F x C) and d log|H| / d log p (F x C x P) by central differences, every
    perturbed part set solved in one broadcast call (numpy, no autograd)."""
    names = params(circ)
    h = 1e-4
    m = 1 + 2 * len(names)
    grid = {k: np.full(m, float(values[k])) for k in names}
    for j, k in enumerate(names):
        grid[k][1 + 2 * j] *= math.exp(h)
        grid[k][2 + 2 * j] *= math.exp(-h)
    vals = dict(values, **{k: v[None, :] for k, v in grid.items()})
    out = circ.magnitude(np.asarray(freqs, dtype=float)[:, None], vals, capacitance)
    logs = np.stack([np.log(np.maximum(out[c], 1e-300)) for c in circ.channels], axis=1)
    gains = np.exp(logs[:, :, 0])
    jac = (logs[:, :, 1::2] - logs[:, :, 2::2]) / (2 * h)
    return gains, jac


def reading_var(gains: np.ndarray, freqs: np.ndarray, windows_ms: np.ndarray,
                bench: Bench) -> np.ndarray:
    """Variance of each measured log-gain (F x C): the probe's noise figure
    (:func:`hostctl.noise.gain_se`'s terms) plus READING_FLOOR; a reading below the floor's
    4 x RMS (flagged, never fitted) informs nothing."""
    n = np.array([bench.samples(w) for w in windows_ms], dtype=float)[:, None]
    s_ref = bench.ref_rms ** 2
    s_out = (gains * bench.ref_rms) ** 2
    noise = max(bench.noise_rms, 0.3) ** 2
    var_o = (4 * s_out * noise + 2 * noise ** 2) / n
    var_r = (4 * s_ref * noise + 2 * noise ** 2) / n
    cover = np.array([_cover(float(f), bench.rate_hz, int(k)) if bench.rate_hz else 0.0
                      for f, k in zip(freqs, n[:, 0], strict=True)])[:, None]
    rel = var_o / (4 * np.maximum(s_out, 1e-12) ** 2) + var_r / (4 * s_ref ** 2) + cover
    rel = rel + READING_FLOOR ** 2
    return np.where(gains * bench.ref_rms < 4 * max(bench.noise_rms, 0.25), np.inf, rel)


@lru_cache(maxsize=4096)
def _cover(freq: float, rate_hz: float, n: int) -> float:
    """The phase-cover term, once per tone (every case of a design asks for it)."""
    return phase_cover_var(freq, rate_hz, n)


def tone_info(jac: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Fisher information of each candidate tone (F x P x P): all its channels' readings."""
    w = 1.0 / var
    w[~np.isfinite(w)] = 0.0
    return np.einsum("fcp,fc,fcq->fpq", jac, w, jac)


def half_widths(info: np.ndarray, n_r: int) -> np.ndarray:
    """Predicted relative 95 % half-width of the resistors from an information matrix."""
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        return np.full(n_r, np.inf)
    return Z95 * np.sqrt(np.maximum(np.diag(cov)[:n_r], 0.0))


def scenarios(values: Mapping[str, float], resistors: Sequence[str],
              spread: float) -> list[dict[str, float]]:
    """The nominal parts and the parts at their tolerance's edges (all up, all down,
    alternating): the corners move, and a design must hold wherever they went."""
    out = [dict(values)]
    alt = [(-1) ** i for i in range(len(resistors))]
    signs = [[1] * len(resistors), [-1] * len(resistors), alt, [-a for a in alt]]
    for s in signs:
        out.append(dict(values, **{r: values[r] * math.exp(spread * si)
                                   for r, si in zip(resistors, s, strict=True)}))
    return out


@dataclass
class _Case:
    """One hypothesis the design must hold for: a circuit with its parts, and what the
    candidate tones (and the tones already measured) would tell about them."""

    n_r: int
    info: np.ndarray          # information so far (P x P)
    cand: np.ndarray          # per candidate (F x P x P)

    def phi(self, extra: np.ndarray | None = None) -> np.ndarray:
        """Summed variance of the resistors: now, or with each candidate added (A-optimal)."""
        m = self.info if extra is None else self.info[None] + extra
        return np.trace(np.linalg.inv(m)[..., :self.n_r, :self.n_r], axis1=-2, axis2=-1)


def _cases(circuits: Sequence[Circuit], values: Mapping[str, float],
           capacitance: float | Mapping[str, float], bench: Bench, freqs: np.ndarray,
           windows: np.ndarray, done: Sequence[tuple[float, float]]) -> list[_Case]:
    """The first circuit at its nominal parts and at the tolerance's edges; the rest of
    its family at the nominal parts."""
    out = []
    done_f = np.array([f for f, _ in done], dtype=float)
    done_w = np.array([w for _, w in done], dtype=float)
    for i, circ in enumerate(circuits):
        base = nominal(circ, values)
        for vals in scenarios(base, circ.resistors, PART_SPREAD) if i == 0 else [base]:
            # the candidates and the tones measured in one solve
            g, jac = jacobian(circ, np.concatenate([freqs, done_f]), vals, capacitance)
            m = tone_info(jac, reading_var(
                g, np.concatenate([freqs, done_f]), np.concatenate([windows, done_w]), bench))
            info = prior_info(circ) + m[len(freqs):].sum(0)
            cand = m[:len(freqs)]
            out.append(_Case(len(circ.resistors), info, cand))
    return out


def _unbracketed(corners: Sequence[float], chosen: Sequence[float]) -> list[tuple[float, int]]:
    """Corners without a tone beyond the parts' spread on a side: (corner, side -1 / +1)."""
    lo, hi = 1 / BRACKET, BRACKET
    out = []
    for fc in corners:
        if not any(f <= fc * lo for f in chosen):
            out.append((fc, -1))
        if not any(f >= fc * hi for f in chosen):
            out.append((fc, 1))
    return out


def design(circuits: Sequence[Circuit], values: Mapping[str, float],
           capacitance: float | Mapping[str, float], bench: Bench, precision: float,
           freqs: Sequence[float], windows_ms: Sequence[float],
           done: Sequence[tuple[float, float]] = (), max_tones: int | None = None,
           min_gain: float | None = None) -> Design:
    """A batch of tones from ``freqs`` (placed, with their windows): greedy by the summed
    variance they remove per bench second over every case, until every corner is bracketed,
    the predicted precision is met with PRECISION_MARGIN and the next tone would pay less
    than MIN_GAIN_PER_S; ``done`` = (frequency, window ms) already measured."""
    circ = circuits[0]
    f = np.asarray(freqs, dtype=float)
    w = np.asarray(windows_ms, dtype=float)
    cost = w / 1000 + TONE_OVERHEAD_S
    cases = _cases(circuits, values, capacitance, bench, f, w, done)
    base = nominal(circ, values)
    corners = [circ.corner_hz(r, base[r], capacitance) for r in circ.resistors]
    chosen: list[int] = []
    have = [fd for fd, _ in done]
    while len(chosen) < (max_tones or MAX_TONES):
        now = [c.phi() for c in cases]
        gain = np.mean([(p - c.phi(c.cand)) / p for p, c in zip(now, cases, strict=True)],
                       axis=0) / cost
        gain[chosen] = -np.inf
        for fd in have:
            gain[np.abs(np.log(f / fd)) < 0.003] = -np.inf
        need = _unbracketed(corners, have + [float(f[k]) for k in chosen])
        met = max(_worst(cases)) <= precision * PRECISION_MARGIN
        if need:   # only tones that close a bracket, the most informative of those
            ok = np.zeros(len(f), dtype=bool)
            for fc, side in need:
                ok |= (f <= fc / BRACKET) if side < 0 else (f >= fc * BRACKET)
            gain = np.where(ok, gain, -np.inf)
        elif met and float(gain.max()) < (min_gain or MIN_GAIN_PER_S):
            break
        k = int(np.argmax(gain))
        if not np.isfinite(gain[k]):
            break
        chosen.append(k)
        for c in cases:
            c.info = c.info + c.cand[k]
    hw = np.max(np.stack([_worst_each(c) for c in cases if c.n_r == len(circ.resistors)]),
                axis=0)
    return Design(sorted(float(f[k]) for k in chosen),
                  {r: float(v) for r, v in zip(circ.resistors, hw, strict=True)},
                  float(sum(cost[k] for k in chosen)))


def _worst_each(case: _Case) -> np.ndarray:
    return half_widths(case.info, case.n_r)


def _worst(cases: Sequence[_Case]) -> list[float]:
    return [float(np.max(_worst_each(c))) for c in cases]


#: with no installed parts: the fewest log-spaced tones that put one on each side of any
#: corner in the band (a decade apart), before the design is made from their fit
BLIND_TONES = 4


def candidates(bench: Bench, place) -> tuple[list[float], list[int]]:
    """Candidate tones as they would be played (placed off the probe's bad ratios) and
    their windows (:func:`hostctl.plan.window_ms` at the run's floor)."""
    from hostctl import plan

    fs = sorted({place(f) for f in np.geomspace(*plan.BAND, N_CANDIDATES)})
    return fs, [plan.window_ms(f, bench.rate_hz, bench.min_window_ms) for f in fs]


def gain_batch(circuits: Sequence[Circuit], values: Mapping[str, float],
               capacitance: float | Mapping[str, float], bench: Bench, precision: float,
               done: Sequence[float], place, max_tones: int | None = None,
               min_gain: float | None = None) -> Design:
    """The batch of gain tones for a run whose pre-flight gave ``bench``; ``done`` are the
    frequencies already measured at the run's level (windows by the same rule)."""
    from hostctl import plan

    fs, ws = candidates(bench, place)
    prior = [(f, plan.window_ms(f, bench.rate_hz, bench.min_window_ms)) for f in done]
    return design(circuits, values, capacitance, bench, precision, fs, ws, prior, max_tones,
                  min_gain)


def for_run(circ: Circuit, cfg: Any, values: Mapping[str, float], floor_rms: Sequence[float],
            ref_rms: float, rate_hz: float | None, done: Sequence[float], place) -> list[float]:
    """A calibration's gain batch: its circuit first, then the rest of its family; the
    noise the pre-flight measured; ``done`` the frequencies measured at the run's level."""
    from hostctl.circuits.registry import family

    circs = [circ] + [c for c in family(cfg.circuit) if c.name != circ.name]
    bench = Bench(ref_rms, max(max(floor_rms[1:], default=0.5), 0.3), rate_hz, cfg.window_ms)
    return gain_batch(circs, values, cfg.capacitance, bench, cfg.precision, done, place).freqs
