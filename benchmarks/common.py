"""Shared pieces of the benchmarks: synthetic colour-organ data and small statistics."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from hostctl.circuits import LED_THRESHOLD, get_circuit
from hostctl.dataset import Measurement, MeasurementSet

#: the synthetic sections (efficiency, led, scale) study the estimator on the notebook's own
#: model, the one the analytic Jacobian of bench_efficiency is written for; the netlist
#: models (probe front end, ESR nuisances) are timed in bench_netlist.py
CIRCUIT = "color-organ-ideal"
#: the E24 values the virtual bench board is built from (sims/boards/bench.toml)
BENCH_NOMINAL = {"R_low": 200.0, "R_band_low": 39.0, "R_band_high": 160.0, "R_high": 33.0}


def circuit():
    return get_circuit(CIRCUIT)


def log_response(freqs: np.ndarray, values: Mapping[str, float], capacitance: float = 1e-6
                 ) -> dict[str, np.ndarray]:
    """|H| per channel (numpy) at ``freqs`` for resistor ``values``."""
    out = circuit().response(np.asarray(freqs, dtype=float), values, capacitance)
    return {k: v.detach().numpy() for k, v in out.items()}


def gain_set(freqs: Sequence[float], values: Mapping[str, float], sigma: float,
             rng: np.random.Generator) -> MeasurementSet:
    """Gains of every channel at every tone, times exp(sigma * N(0, 1)) (log-gain sd sigma)."""
    f = np.asarray(freqs, dtype=float)
    H = log_response(f, values)
    chans = circuit().channels
    z = rng.normal(0.0, 1.0, (len(chans), len(f))) if sigma > 0 else np.zeros((len(chans), len(f)))
    return MeasurementSet([
        Measurement(float(fi), c, gain=float(H[c][i] * math.exp(sigma * z[j, i])))
        for j, c in enumerate(chans) for i, fi in enumerate(f)])


def led_rows(freqs: Sequence[float], values: Mapping[str, float], level_dbfs: float | None = None,
             threshold: float = LED_THRESHOLD) -> list[Measurement]:
    """Noise-free LED observations (lit iff |H| > threshold) of every channel at every tone."""
    f = np.asarray(freqs, dtype=float)
    H = log_response(f, values)
    return [Measurement(float(fi), c, led=int(H[c][i] > threshold), level_dbfs=level_dbfs)
            for c in circuit().channels for i, fi in enumerate(f)]


def bench_like_values(rng: np.random.Generator, tol: float = 0.05) -> dict[str, float]:
    """A board built from the bench's E24 values with ``tol`` resistors (uniform, like sims)."""
    return {k: v * (1 + tol * float(rng.uniform(-1, 1))) for k, v in BENCH_NOMINAL.items()}


def worst_corner_error(corner_hz: Mapping[str, float], true_corner_hz: Mapping[str, float]
                       ) -> float:
    """max over resistors of |fitted corner / true corner - 1|."""
    return max(abs(corner_hz[k] / true_corner_hz[k] - 1) for k in true_corner_hz)


def true_corners(values: Mapping[str, float], caps: Mapping[str, float] | float = 1e-6
                 ) -> dict[str, float]:
    c = caps if isinstance(caps, Mapping) else {k: caps for k in values}
    return {k: 1.0 / (2 * math.pi * v * c[k]) for k, v in values.items()}


def median_seconds(fn: Callable[[], object], repeats: int,
                   clock: Callable[[], float] = time.perf_counter) -> tuple[float, object]:
    """Median seconds of ``fn`` on ``clock`` over ``repeats`` calls, after one warm-up call
    (the first builds caches and kernels), and its last result; ``time.process_time`` as the
    clock gives the process's CPU seconds, steadier than wall time on a shared machine."""
    out = fn()
    ts = []
    for _ in range(repeats):
        t = clock()
        out = fn()
        ts.append(clock() - t)
    return statistics.median(ts), out
