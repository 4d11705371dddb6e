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


@pytest.mark.parametrize("circ,seed", [("color-organ-ideal", 5), ("color-organ-passive", 6)])
def test_groups_in_one_batch_give_each_group_alone(circ: str, seed: int) -> None:
    """The regions of every channel group solved in one Newton batch (a one-resistor group
    padded by a face holding another resistor) are each group's region solved alone, at
    the estimate and across a threshold profile's thresholds."""
    from hostctl.circuits import capacitances
    from hostctl.fit.led import _led_regions
    from hostctl.fit.problem import build_problem
    from hostctl.fit.starts import _groups

    c = get_circuit(circ)
    ms = led_set(circ, seed, 120)
    prob = build_problem(ms, c, capacitances(c, 1e-6), LED_THRESHOLD, None, None)
    groups = _groups(prob)
    assert sorted(len(ks) for ks, _ in groups) == [1, 1, 2]   # padding is exercised
    est = fit(ms, c).values
    theta = np.log([est[r] for r in prob.free])
    closed = 0
    for taus in (None, prob.log_t + np.linspace(-0.3, 0.3, 7)):
        for accept_all in (True, False):
            together = _led_regions(prob, theta, groups, taus, accept_all)
            for g, reg in zip(groups, together, strict=True):
                alone = _led_regions(prob, theta, [g], taus, accept_all)[0]
                assert reg[2] == alone[2]                       # rejected rows
                np.testing.assert_array_equal(reg[3], alone[3])  # empty regions
                finite = np.isfinite(alone[0])
                closed += int(finite.sum())
                np.testing.assert_array_equal(np.isfinite(reg[0]), finite)
                np.testing.assert_allclose(reg[0][finite], alone[0][finite], rtol=0,
                                           atol=1e-12)
                finite = np.isfinite(alone[1])
                np.testing.assert_array_equal(np.isfinite(reg[1]), finite)
                np.testing.assert_allclose(reg[1][finite], alone[1][finite], rtol=0,
                                           atol=1e-12)
    assert closed >= 24   # regions exist at most thresholds, their ends set by the data
