"""The gain design (issue 18): tones chosen by expected information, measured as one batch.

The plan's properties are checked on the plan itself (every corner bracketed, the precision
predicted, fewer bench seconds than the fixed log sweep it replaced, by the same cost
model); its noise model against the probe's own figures; and a whole run on the virtual
bench against the bench's clock (state, never wall time) and the board's true corners.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hostctl import gaindesign as gd
from hostctl import plan
from hostctl.circuits import get_circuit
from hostctl.circuits.registry import family
from hostctl.noise import gain_se, phase_cover_var

RATE = 5751.0           # the probe's rounds per second (firmware/README.md)
INSTALLED = {"R_low": 200.0, "R_band_low": 39.0, "R_band_high": 160.0, "R_high": 33.0}
BENCH = gd.Bench(ref_rms=70.0, noise_rms=0.6, rate_hz=RATE, min_window_ms=200)


def _place(f: float) -> float:
    return plan.round_tone(f, RATE, 1150)


def _design(circuit: str = "color-organ", values=INSTALLED, done=(1001.0,)) -> gd.Design:
    first = get_circuit(circuit)
    circs = [first] + [c for c in family(circuit) if c.name != first.name]
    return gd.gain_batch(circs, values, 1e-6, BENCH, 0.01, list(done), _place)


def _sweep_cost() -> float:
    fs = [_place(f) for f in plan.log_sweep(12)]
    return sum(plan.window_ms(f, RATE, 200) / 1000 + gd.TONE_OVERHEAD_S for f in fs)


@pytest.mark.parametrize("circuit", ["color-organ", "color-organ-passive"])
def test_the_design_brackets_every_corner_and_predicts_the_precision(circuit) -> None:
    d = _design(circuit)
    circ = get_circuit(circuit)
    for r, v in INSTALLED.items():
        fc = circ.corner_hz(r, v, 1e-6)
        assert min(d.freqs) <= fc / gd.BRACKET and max(d.freqs) >= fc * gd.BRACKET, (r, d)
    assert 2 <= len(d.freqs) <= gd.MAX_TONES
    assert max(d.half_width.values()) <= 0.01 * gd.PRECISION_MARGIN, d.half_width
    # under 3/4 of the fixed 12-tone sweep's bench seconds (windows + per-tone cost)
    assert d.bench_s < 0.75 * _sweep_cost(), (d.bench_s, _sweep_cost())
    assert all(f == _place(f) for f in d.freqs)          # as played: off the bad ratios


def test_the_design_holds_across_the_parts_tolerances() -> None:
    """Parts 10 % off nominal: still every corner bracketed and the precision predicted."""
    off = {k: v * (1.1 if i % 2 else 0.9) for i, (k, v) in enumerate(INSTALLED.items())}
    d = _design(values=off)
    circ = get_circuit("color-organ")
    for r, v in off.items():
        fc = circ.corner_hz(r, v, 1e-6)
        assert min(d.freqs) <= fc / gd.BRACKET and max(d.freqs) >= fc * gd.BRACKET
    assert max(d.half_width.values()) <= 0.01 * gd.PRECISION_MARGIN


def test_reading_noise_is_the_probes_own_figure() -> None:
    """The design weighs a reading as hostctl.noise.gain_se will report it."""
    for f, g in ((300.0, 0.9), (2001.0, 0.4), (5688.0, 0.15), (12990.0, 0.95)):
        n = BENCH.samples(200)
        var = gd.reading_var(np.array([[g]]), np.array([f]), np.array([200.0]), BENCH)[0, 0]
        noise = BENCH.noise_rms ** 2
        se = gain_se((g * 70) ** 2, 70.0 ** 2, noise, noise, n, phase_cover_var(f, RATE, n))
        want = (se / g) ** 2 + gd.READING_FLOOR ** 2
        assert var == pytest.approx(want, rel=0.02), (f, var, want)
    # below 4 x the floor's RMS a reading is flagged and never fitted: it informs nothing
    tiny = gd.reading_var(np.array([[0.02]]), np.array([100.0]), np.array([200.0]), BENCH)
    assert math.isinf(tiny[0, 0])


def test_blind_start_brackets_any_corner_in_the_band() -> None:
    """With no installed parts: the fewest log-spaced tones, a decade apart, ends included."""
    fs = plan.log_sweep(gd.BLIND_TONES)
    assert fs[0] == plan.BAND[0] and fs[-1] == plan.BAND[1]
    assert all(b / a <= 10.0 + 1e-9 for a, b in zip(fs, fs[1:], strict=False))


def test_a_gain_run_on_the_virtual_bench_plays_one_designed_batch(tmp_path) -> None:
    """A whole gain calibration (board ``bench``, seed 3): the reference reading is the
    session's first row, the designed tones bracket every true corner, the precision is met
    without adaptive tones, and the bench's clock (its state, not the wall's) shows well
    under the 9.0 s of windows and waits the fixed 12-tone sweep took on it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from common import true_corners, worst_corner_error

    from hostctl import calibrate
    from hostctl.device import open_probe
    from hostctl.sessionlog import read_session
    from sims.tones import SimToneOutput

    with open_probe("sim://?board=bench&seed=3") as probe:
        bench = probe.serial.bench
        out = SimToneOutput(bench)
        cfg = calibrate.RunConfig(installed=dict(bench.board.resistors),
                                  capacitance=dict(bench.board.capacitance_f))
        res = calibrate.run(probe, out, cfg, tmp_path)
        out.close()
    rows = list(read_session(res.session).rows)
    assert abs(rows[0].frequency_hz / calibrate.REF_HZ - 1) < 0.01 and rows[0].gain
    freqs = sorted({m.frequency_hz for m in rows})
    truth = true_corners(bench.true_values, bench.true_capacitances)
    for fc in truth.values():
        assert freqs[0] < fc / 2 and freqs[-1] > fc * 2, (fc, freqs)
    assert res.tones == len(freqs) <= gd.MAX_TONES + 1 and not res.unmet
    # the bench's own seconds (windows, fades, latency, settle): the host's share here
    # includes this process's first imports
    assert res.bench_time_s - res.host_time_s < 6.0, (res.bench_time_s, res.host_time_s)
    assert worst_corner_error(res.fit.corner_hz, truth) < 0.005
    for k, (lo, hi) in res.fit.ci95.items():
        true = bench.true_values[k] * bench.true_capacitances[k] / res.fit.capacitance[k]
        assert lo <= true <= hi, (k, lo, true, hi)
