"""E-series snapping, pairs, targets and designs."""

import math

import pytest

from hostctl import recommend as rc
from hostctl.circuits import NOTEBOOK_VALUES, get_circuit
from hostctl.errors import InputError
from hostctl.target import default_target, parse_target


def test_series_have_their_sizes_and_are_log_spaced():
    for name, n in (("E12", 12), ("E24", 24), ("E96", 96)):
        vals = rc.standard_values(name, 1.0, 9.99)
        assert len(vals) == n
        steps = [math.log(b / a) for a, b in zip(vals, vals[1:], strict=False)]
        # every step is close to the nominal 10**(1/n) ratio (E-series rounding allows ~±50%)
        assert max(steps) < 1.6 * math.log(10) / n
        assert min(steps) > 0.4 * math.log(10) / n


@pytest.mark.parametrize("value,series,expect", [
    (198.94, "E24", 200.0), (31.83, "E24", 33.0), (39.79, "E24", 39.0),
    (159.15, "E96", 158.0), (198.94, "E12", 180.0), (9.5, "E24", 9.1),
    (9.6, "E24", 10.0), (9.7, "E24", 10.0),
    (4.64e6, "E96", 4.64e6),
])
def test_snap_is_nearest_by_ratio(value, series, expect):
    assert rc.snap(value, series) == expect


def test_snap_nearest_by_ratio_not_difference():
    # ratio: ln(1.05/1.0)=0.0488, ln(1.1/1.05)=0.0465 -> 1.1
    assert rc.snap(105.0, "E24") == 110.0


def test_unknown_series_is_a_clear_error():
    with pytest.raises(InputError, match="unknown series 'E7'"):
        rc.snap(100, "E7")


def test_best_pair_beats_single_and_is_exact_arithmetic():
    for target in (198.94, 31.83, 1234.0, 47.3e3):
        for series in ("E12", "E24"):
            p = rc.best_pair(target, series)
            a, b = p.parts
            v = a + b if p.kind == "series" else a * b / (a + b)
            assert v == pytest.approx(p.value_ohm)
            assert abs(math.log(p.value_ohm / target)) <= abs(math.log(rc.snap(target, series)
                                                                   / target))
            assert abs(p.value_ohm / target - 1) < 0.02


def test_pair_offered_only_when_single_misses_by_more_than_tolerance():
    circ = get_circuit("lowpass")
    # 198.94 in E12: 180 misses by 10.5% > 10% -> pair offered
    c = rc.choose(circ, "R_low", 198.94, "E12", 1e-6)
    assert c.value_ohm == 180.0 and c.pair is not None
    assert abs(c.pair.value_ohm / 198.94 - 1) < 0.01
    # in E24 200 misses by 0.5% -> no pair
    assert rc.choose(circ, "R_low", 198.94, "E24", 1e-6).pair is None


def test_design_notebook_target_gives_notebook_values_and_real_corners():
    circ = get_circuit("color-organ-ideal")   # the notebook's math: no probe loading
    d = rc.design(circ, default_target(), 1e-6, "E24")
    ideal = {r: p.ideal_ohm for r, p in d.parts.items()}
    for r, v in NOTEBOOK_VALUES.items():
        assert ideal[r] == pytest.approx(v, rel=1e-12)
    assert d.values == {"R_low": 200.0, "R_band_low": 39.0, "R_band_high": 160.0, "R_high": 33.0}
    assert d.parts["R_low"].corner_hz == pytest.approx(1 / (2 * math.pi * 200 * 1e-6))
    assert d.parts["R_high"].corner_error == pytest.approx(31.830988618 / 33 - 1, rel=1e-6)


def test_design_with_per_section_capacitance():
    circ = get_circuit("color-organ-ideal")   # the notebook's math: no probe loading
    d = rc.design(circ, default_target(), {"C_low": 2.2e-6, "*": 1e-6}, "E96")
    assert d.parts["R_low"].ideal_ohm == pytest.approx(1 / (2 * math.pi * 800 * 2.2e-6))
    assert d.parts["R_high"].ideal_ohm == pytest.approx(NOTEBOOK_VALUES["R_high"])


def test_led_design_moves_parts_with_the_threshold_and_passes_bands():
    circ = get_circuit("color-organ")
    tgt = default_target()
    for thr in (0.55, 0.6, 1 / math.sqrt(2)):
        d = rc.design_for_led(circ, tgt, 1e-6, thr, "E24")
        checks = rc.check_bands(circ, d.values, 1e-6, thr, tgt)
        assert all(c["pass"] for c in checks.values()), (thr, d.values, checks)
    # a lower threshold lights the low LED further up: a bigger R_low keeps it at ~800 Hz
    assert (rc.design_for_led(circ, tgt, 1e-6, 0.6, "E24").values["R_low"]
            > rc.design_for_led(circ, tgt, 1e-6, 0.707, "E24").values["R_low"])


def test_led_map_matches_the_notebook_band():
    circ = get_circuit("color-organ-ideal")   # the notebook's math: no probe loading
    m = rc.led_map(circ, NOTEBOOK_VALUES, 1e-6, 1 / math.sqrt(2))
    (lo, hi), = m["band"]
    assert lo == pytest.approx(1075, rel=0.01) and hi == pytest.approx(3721, rel=0.01)
    assert m["low"][0][1] == pytest.approx(800, rel=0.01)


def test_target_from_bands_and_errors():
    t = parse_target({"bands": {"low": {"on": [[20, 700]], "off": [[900, 20000]]}}}, "t.toml")
    assert t.corners["low"][0] == pytest.approx(math.sqrt(700 * 900))
    for bad, msg in [
        ({"corners": {"low": -5}}, "positive"),
        ({"corners": {"low": "x"}}, "number"),
        ({"corners": {"band": [4000, 1000]}}, "below"),
        ({"cornerz": {}}, "unknown table"),
        ({"bands": {"low": {"on": [[700, 20]]}}}, "below"),
        ({"corners": {"low": float("nan")}}, "finite"),
    ]:
        with pytest.raises(InputError, match=msg):
            parse_target(bad, "t.toml")
