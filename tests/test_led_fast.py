"""The LED fit's fast path for consistent data (hostctl/fit/ledfast.py, issue 18): the
same exact intervals as the annealed probit, values inside them, and the annealing still
deciding wherever the data contradict every value."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hostctl.fit.engine as engine
from hostctl.circuits import LED_THRESHOLD, get_circuit
from hostctl.dataset import Measurement, MeasurementSet
from hostctl.fit import fit

TRUTH = {"R_low": 200.0, "R_band_low": 39.0, "R_band_high": 160.0, "R_high": 33.0}


def led_set(circ_name: str, seed: int, n: int, flip_far: bool = False) -> MeasurementSet:
    """Noise-free LED states at ``n`` log-uniform tones (the notebook's way of drawing)."""
    circ = get_circuit(circ_name)
    rng = np.random.default_rng(seed)
    tv = {r: TRUTH[r] * math.exp(rng.normal(0, 0.2)) for r in circ.resistors}
    f = np.sort(10 ** rng.uniform(1, 5, n))
    H = {k: np.asarray(v) for k, v in circ.response(f, tv).items()}
    rows = [Measurement(float(fi), c, led=int(H[c][i] > LED_THRESHOLD))
            for c in circ.channels for i, fi in enumerate(f)]
    if flip_far:   # the low LED's lowest tone misread: no value reproduces every row
        rows[0] = Measurement(rows[0].frequency_hz, rows[0].channel, led=1 - rows[0].led)
    return MeasurementSet(rows)


def fit_both(ms: MeasurementSet, circ: str, monkeypatch: pytest.MonkeyPatch
             ) -> tuple[object, object, list[bool]]:
    """(default fit, annealing-only fit, whether the fast path answered)."""
    fast = engine._fit_leds_consistent
    used: list[bool] = []

    def spy(run, led_only):
        out = fast(run, led_only)
        used.append(out is not None)
        return out
    monkeypatch.setattr(engine, "_fit_leds_consistent", spy)
    a = fit(ms, circ)
    monkeypatch.setattr(engine, "_fit_leds_consistent", lambda run, led_only: None)
    b = fit(ms, circ)
    return a, b, used


@pytest.mark.parametrize("circ,seed,n", [("color-organ-ideal", 1, 150),
                                         ("color-organ", 2, 100), ("bandpass-ideal", 2, 60)])
def test_consistent_data_take_the_fast_path_with_the_same_intervals(
        circ: str, seed: int, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, used = fit_both(led_set(circ, seed, n), circ, monkeypatch)
    assert used and all(used)   # (a family: each member fitted)
    assert a.method == b.method == "led-interval"
    assert a.trusted and b.trusted
    assert a.circuit == b.circuit
    for r in get_circuit(circ).resistors:
        assert a.ci95[r] == pytest.approx(b.ci95[r], rel=1e-9)
        assert a.ci95[r][0] <= a.values[r] <= a.ci95[r][1]
        assert a.ci_method[r] == "data-consistent"


def test_an_open_region_goes_to_the_annealing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A band LED that never lit at these 60 tones: the region is open, and the estimate's
    placement inside it is the annealing's (the same answer as without the fast path)."""
    a, b, used = fit_both(led_set("bandpass-ideal", 3, 60), "bandpass-ideal", monkeypatch)
    assert used and not any(used)
    assert a.ci95["R_band_low"] == (0.0, math.inf)
    assert a.values == b.values


def test_contradictory_data_go_to_the_annealing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misread LED: no value reproduces every row, so the annealed probit decides which
    observation is noise (one rejected), exactly as without the fast path."""
    a, b, used = fit_both(led_set("color-organ-ideal", 4, 200, flip_far=True),
                          "color-organ-ideal", monkeypatch)
    assert used and not any(used)
    assert any("1 LED observation(s) disagree" in n for n in a.notes)
    for r in TRUTH:
        assert a.values[r] == b.values[r]
        assert a.ci95[r] == b.ci95[r]
