"""The measurement chain on sines of known gain: bias of the gains and their standard error.

Exact sampled sines (ADC ``floor(v + noise)``, the probe's round timing, a random tone phase
per window) go through the firmware's integer statistics (sims.device_core, a real MEASURE
reply), the protocol parser and hostctl.measure, exactly as a bench run; only the circuit is
replaced by a known gain (and phase) per output channel, so the truth is exact and the
result does not depend on any circuit model::

    python -m sims.studies.noise_chain            # bias: the old floor subtraction vs now
    python -m sims.studies.noise_chain --se       # empirical sd of the gain vs gain_se
    python -m sims.studies.noise_chain --coverage 50 [--board B]   # calibrate --sim B
        (default bench), seeds 0..49: do the 95 % intervals hold the true RC products?

``old`` is the gain hostctl computed before the quantisation model: each RMS with the
silent floor's RMS removed in quadrature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hostctl.measure import Floor, readings_from
from hostctl.protocol import encode_command, parse_measure, parse_reply
from sims.device_core import MAX_ROUNDS, DeviceCore, Window

RATE_HZ = 5751.0             # rounds per second, as the firmware achieves (firmware/README.md)
REF_AMP = 102.6              # counts: 0.5 V peak (-6 dBFS of 1 V) on a 5 V, 10-bit ADC
INFO = {"adc_bits": "10", "vref_mv": "5000"}


@dataclass
class Case:
    """One tone: frequency, the outputs' gains and phases (A1..A3), ADC noise, window."""

    freq_hz: float
    gains: tuple[float, float, float]
    noise_lsb: float = 0.5
    ms: int = 200
    phases: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bias: float = 512.0      # DC level in counts (512.0 = 2.5 V, exactly on a code edge)
    ref_amp: float = REF_AMP
    rate_hz: float = RATE_HZ


class Chain:
    """A probe whose inputs are exact sines; MEASURE replies as the firmware prints them."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.case: Case | None = None
        self.core = DeviceCore(self._window, nominal_rate_hz=5700)
        self._id = 0

    def _window(self, ms: int) -> Window:
        c = self.case
        assert c is not None
        n = max(1, min(MAX_ROUNDS, math.ceil(ms * 1e-3 * c.rate_hz - 1e-9)))
        k = np.arange(n, dtype=np.float64)
        t0 = float(self.rng.uniform(0, 1))
        phi = float(self.rng.uniform(0, 2 * math.pi))
        amps = (c.ref_amp, *(c.ref_amp * g for g in c.gains))
        phases = (0.0, *c.phases)
        w = 2 * math.pi * c.freq_hz
        analog = []
        for ch in range(4):
            t = t0 + (k + ch / 5) / c.rate_hz        # conversion ch of each round
            x = c.bias + amps[ch] * np.sin(w * t + phi + phases[ch])
            if c.noise_lsb:
                x = x + self.rng.normal(0.0, c.noise_lsb, n)
            analog.append(np.clip(np.floor(x), 0, 1023).astype(np.int64))
        us = round(n / c.rate_hz * 1e6)
        return Window(analog, [0, 0, 0], int(us // 1000), us, led_counts=True)

    def measure(self, case: Case, ms: int):
        self.case = case
        self._id = self._id % 65535 + 1
        line = self.core.feed(encode_command(self._id, "MEASURE", ms))[0]
        return parse_measure(parse_reply(line))

    def floor(self, case: Case, ms: int = 5000, times: int = 20) -> Floor:
        """The silent pre-flight reading, ``times`` windows pooled: long, so that its own
        scatter (which shifts every small gain of a channel alike) stays out of the way."""
        silent = Case(case.freq_hz, (0.0, 0.0, 0.0), case.noise_lsb, ms, bias=case.bias,
                      ref_amp=0.0, rate_hz=case.rate_hz)
        rs = [self.measure(silent, ms).analog for _ in range(times)]
        rms = tuple(math.sqrt(sum(r[c].rms ** 2 for r in rs) / times) for c in range(4))
        mean = tuple(round(sum(r[c].mean for r in rs) / times, 3) for c in range(4))
        return Floor(rms=tuple(round(x, 3) for x in rms), mean=mean)


@dataclass
class Result:
    case: Case
    windows: int
    gain: np.ndarray        # (windows, 3) gains as hostctl computes them now
    old: np.ndarray         # (windows, 3) the old quadrature floor subtraction
    se: np.ndarray          # (windows, 3) gain_se

    def bias(self, old: bool = False) -> np.ndarray:
        """Mean relative error of the gain, per output channel."""
        g = self.old if old else self.gain
        return g.mean(0) / np.asarray(self.case.gains) - 1

    def bias_se(self) -> np.ndarray:
        """Standard error of :meth:`bias` (Monte Carlo)."""
        return self.gain.std(0, ddof=1) / math.sqrt(self.windows) / np.asarray(self.case.gains)

    def sd_ratio(self) -> np.ndarray:
        """Empirical sd of the gain over the rms of the predicted gain_se, per channel."""
        return self.gain.std(0, ddof=1) / np.sqrt((self.se ** 2).mean(0))


def run_case(case: Case, windows: int = 1000, seed: int = 0) -> Result:
    ch = Chain(seed)
    fl = ch.floor(case)
    g, old, se = (np.empty((windows, 3)) for _ in range(3))
    for w in range(windows):
        res = ch.measure(case, case.ms)
        rd = readings_from(res, case.freq_hz, -6.0, 0.0, fl, INFO)
        ref = math.sqrt(max(res.analog[0].rms ** 2 - fl.rms[0] ** 2, 0.0))
        for i, row in enumerate(rd.rows):
            g[w, i], se[w, i] = row.gain, row.gain_se
            a = res.analog[i + 1]
            old[w, i] = math.sqrt(max(a.rms ** 2 - fl.rms[i + 1] ** 2, 0.0)) / ref
    return Result(case, windows, g, old, se)


BIAS_GAINS = (0.01, 0.03, 0.1)


def bias_table(windows: int = 1000, seed: int = 0) -> list[tuple[str, Result]]:
    """Bias of small gains, old vs now: the bench's noisy ADC and a noiseless one."""
    out = []
    for noise in (0.5, 0.0):
        for f in (1000.0, round(3.4925 * RATE_HZ)):
            case = Case(f, BIAS_GAINS, noise_lsb=noise)
            out.append((f"noise {noise} LSB, {f:g} Hz", run_case(case, windows, seed)))
    return out


#: (label, case): gains 0.01-1, windows 20 ms-1 s, tones that cover their phases, tones with
#: few cycles, and tones near the round rate's multiples and half-multiples.
SE_CASES = [
    ("1 kHz 200 ms", Case(1000.0, (1.0, 0.1, 0.01))),
    ("1 kHz 200 ms", Case(1000.0, (0.3, 0.03, 0.02))),
    ("1 kHz 20 ms", Case(1000.0, (1.0, 0.1, 0.03), ms=20)),
    ("1 kHz 1000 ms", Case(1000.0, (1.0, 0.1, 0.01), ms=1000)),
    ("1 kHz 0.3 LSB", Case(1000.0, (1.0, 0.1, 0.03), noise_lsb=0.3)),
    ("1 kHz 1 LSB", Case(1000.0, (1.0, 0.3, 0.03), noise_lsb=1.0)),
    ("20 Hz 1000 ms", Case(20.0, (1.0, 0.3, 0.1), ms=1000)),
    ("100 Hz 200 ms", Case(100.0, (1.0, 0.1, 0.01))),
    ("0.502 x rate", Case(round(0.502 * RATE_HZ), (1.0, 0.3, 0.03))),
    ("0.989 x rate", Case(round(0.989 * RATE_HZ), (1.0, 0.3, 0.1))),
    ("3.4925 x rate", Case(round(3.4925 * RATE_HZ), (1.0, 0.1, 0.01))),
]


def se_check(case: Case, windows: int = 1000, seed: int = 0, spread: int = 16
             ) -> tuple[np.ndarray, np.ndarray]:
    """(empirical sd, rms predicted gain_se) per channel, pooled over what the probe cannot
    tell: the outputs' phase against A0 (spread over 0..pi) and the round rate within the
    1/s it is reported to. Each sub-case is a fixed circuit; only the variances are pooled.
    """
    emp, pred = np.zeros(3), np.zeros(3)
    for j in range(spread):
        sub = Case(case.freq_hz, case.gains, case.noise_lsb, case.ms,
                   tuple(p + math.pi * j / spread for p in case.phases), case.bias,
                   case.ref_amp, case.rate_hz - 1.0 + ((5 * j) % spread + 0.5) / spread)
        r = run_case(sub, max(2, windows // spread), seed + j)
        emp += r.gain.var(0, ddof=1) / spread
        pred += (r.se ** 2).mean(0) / spread
    return np.sqrt(emp), np.sqrt(pred)


def coverage(seeds: int, board: str = "bench", out: str | None = None) -> dict[str, dict]:
    """``hostctl calibrate --sim BOARD --seed N`` for N < seeds (gain mode, defaults), each
    resistor's fitted RC product over its capacitance against the board's true one."""
    import tempfile
    from pathlib import Path

    from hostctl import calibrate
    from hostctl.device import open_probe
    from sims.backend import install
    from sims.tones import SimToneOutput

    install()                      # opt in to the virtual bench's sim:// ports

    stats: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for seed in range(seeds):
            with open_probe(f"sim://?board={board}&seed={seed}") as p:
                b = p.serial.bench
                cfg = calibrate.RunConfig(circuit=b.circuit.name,
                                          installed=dict(b.board.resistors),
                                          capacitance=dict(b.board.capacitance_f))
                res = calibrate.run(p, SimToneOutput(b), cfg, Path(tmp) / str(seed))
            for r, v in res.fit.values.items():
                true = b.true_values[r] * b.true_capacitances[r] / res.fit.capacitance[r]
                lo, hi = res.fit.ci95[r]
                z = (v / true - 1) / ((hi - lo) / 2 / v / 1.96)
                st = stats.setdefault(r, {"covered": 0, "runs": 0, "z": []})
                st["covered"] += int(lo <= true <= hi)
                st["runs"] += 1
                st["z"].append(z)
    return stats


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sims.studies.noise_chain")
    ap.add_argument("--se", action="store_true", help="sd of the gain vs gain_se")
    ap.add_argument("--windows", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coverage", type=int, default=0, metavar="SEEDS")
    ap.add_argument("--board", default="bench", help="virtual bench board for --coverage")
    a = ap.parse_args(argv)
    if a.coverage:
        st = coverage(a.coverage, a.board)
        n = sum(v["covered"] for v in st.values())
        print(f"95 % intervals holding the true value: {n}/{sum(v['runs'] for v in st.values())}")
        for r, v in st.items():
            z = np.asarray(v["z"])
            print(f"{r:12s} {v['covered']}/{v['runs']}  error/(interval/1.96): mean "
                  f"{z.mean():+.2f} sd {z.std():.2f}")
        return 0
    if not a.se:
        print("mean gain / true gain - 1, in % (+- Monte Carlo se), A1..A3 at gains "
              + ", ".join(f"{g:g}" for g in BIAS_GAINS))
        for label, r in bias_table(a.windows, a.seed):
            now, old, e = r.bias() * 100, r.bias(old=True) * 100, r.bias_se() * 100
            print(f"{label:24s} old " + " ".join(f"{x:+7.3f}" for x in old)
                  + "   now " + " ".join(f"{x:+7.3f}+-{s:.3f}" for x, s in zip(now, e,
                                                                             strict=True)))
        return 0
    print("empirical sd of the gain / predicted gain_se (rms), per channel, pooled over the "
          "outputs' phase and the rate's rounding")
    for label, case in SE_CASES:
        emp, pred = se_check(case, a.windows, a.seed)
        print(f"{label:20s} gains {str(case.gains):17s} sd/se "
              + " ".join(f"{x:.3f}" for x in emp / pred)
              + "   se/gain % " + " ".join(f"{x:.3f}" for x in pred / case.gains * 100))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
