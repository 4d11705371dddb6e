"""LEDs of different colors: one threshold per LED, given or measured, and a shared estimate
that says so when the LEDs do not share it (instead of printing wrong resistor values)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from make_notebook_data import tones

from hostctl import calibrate
from hostctl.circuits import NOTEBOOK_VALUES, get_circuit
from hostctl.cli import invoke
from hostctl.dataset import Measurement, MeasurementSet
from hostctl.device import open_probe
from hostctl.errors import FitError, InputError
from hostctl.fit import FitResult, SwitchVoltage, fit
from hostctl.recommend import check_bands
from hostctl.sessionlog import read_session
from sims.tones import SimToneOutput

RGB = {"low": 0.25, "band": 0.3, "high": 0.4}   # thresholds at 0 dBFS, as on sims/boards/rgb
NB = "color-organ-ideal"    # the notebook's color organ: no probe, no source resistance


def _led_rows(levels, thresholds, gains=False, n=400, dense=False):
    """Noise-free LED (and optionally gain) rows of the notebook's color organ; ``dense``:
    a 0.5 % grid over 20 Hz-20 kHz, as fine as a calibration's bisections."""
    circ = get_circuit(NB)
    f = np.geomspace(20.0, 20000.0, 1400) if dense else tones(3, n)
    H = {k: v.numpy() for k, v in circ.response(f, NOTEBOOK_VALUES).items()}
    rows = []
    for lv in levels:
        for c in circ.channels:
            for i, fi in enumerate(f):
                lit = int(H[c][i] * 10 ** (lv / 20) > thresholds[c])
                rows.append(Measurement(float(fi), c, led=lit, level_dbfs=lv,
                                        gain=float(H[c][i]) if gains else None))
    return MeasurementSet(rows)


def test_given_threshold_per_led_recovers_every_resistor():
    ms = _led_rows([0.0], RGB)
    res = fit(ms, NB, led_threshold=RGB)
    assert res.led_thresholds == RGB and res.led_threshold is None and res.trusted
    for r, v in NOTEBOOK_VALUES.items():
        lo, hi = res.ci95[r]
        assert lo <= v <= hi and hi / lo < 1.1, (r, lo, v, hi)
    # one threshold for all three LEDs misplaces the low and high sections
    one = fit(ms, NB, led_threshold=0.3)
    assert abs(one.values["R_low"] / NOTEBOOK_VALUES["R_low"] - 1) > 0.15
    assert FitResult.from_json(json.loads(json.dumps(res.to_json()))).led_thresholds == RGB


@pytest.mark.parametrize("thr,msg", [
    ({"low": 0.3, "band": 0.3}, "no LED threshold for channel high"),
    ({**RGB, "mid": 0.3}, "'mid': not a channel"),
    ({**RGB, "low": -1.0}, "low must be a positive")])
def test_bad_threshold_per_led_is_named(thr, msg):
    with pytest.raises(InputError, match=msg):
        fit(_led_rows([0.0], RGB, n=50), NB, led_threshold=thr)


def test_shared_estimate_flags_leds_that_differ():
    # coarse data cannot tell (the switches at two levels move by 1 % between a 0.25 and a
    # 0.3 threshold); the answer is then conditional on one shared threshold, and says so
    coarse = fit(_led_rows([0.0, -2.0], RGB), NB, led_threshold="estimate")
    assert any("shared by every LED" in n for n in coarse.notes), coarse.notes
    res = fit(_led_rows([0.0, -2.0], RGB, dense=True), NB, led_threshold="estimate")
    assert not res.trusted
    assert any("do not switch at one common threshold" in w and "switching voltage" in w
               for w in res.warnings), res.warnings
    same = {c: 0.3 for c in RGB}
    ok = fit(_led_rows([0.0, -2.0], same, dense=True), NB, led_threshold="estimate")
    assert ok.trusted and not ok.warnings
    lo, hi = ok.led_threshold_ci95
    assert lo <= 0.3 <= hi
    for r, v in NOTEBOOK_VALUES.items():
        assert abs(ok.values[r] / v - 1) < 0.01, r


def test_gains_give_each_led_its_own_threshold():
    res = fit(_led_rows([-6.0], RGB, gains=True, n=200), NB, led_threshold="estimate")
    assert set(res.led_thresholds) == set(RGB)
    for c, t in RGB.items():  # the gap between dark and lit tones: a few percent
        assert abs(res.led_thresholds[c] / t - 1) < 0.05, (c, res.led_thresholds)
    same = fit(_led_rows([-6.0], {c: 0.3 for c in RGB}, gains=True, n=200), NB,
               led_threshold="estimate")
    assert same.led_thresholds is None and abs(same.led_threshold / 0.3 - 1) < 0.02


def test_estimate_each_led_from_gains():
    ms = _led_rows([-6.0], RGB, gains=True, n=600)
    res = fit(ms, NB, led_threshold="estimate-each")
    assert res.led_threshold is None and res.led_threshold_estimated
    for c, t in RGB.items():
        lo, hi = res.led_thresholds_ci95[c]
        assert lo <= t <= hi and lo <= res.led_thresholds[c] <= hi and hi / lo < 1.1, c
    for r, v in NOTEBOOK_VALUES.items():        # the components come from the gains alone
        assert abs(res.values[r] / v - 1) < 1e-6
    back = FitResult.from_json(json.loads(json.dumps(res.to_json())))
    # per channel: pytest.approx takes no dict of tuples (an error since pytest 9.2)
    assert back.led_thresholds_ci95.keys() == res.led_thresholds_ci95.keys()
    for c, ci in res.led_thresholds_ci95.items():
        assert tuple(back.led_thresholds_ci95[c]) == pytest.approx(tuple(ci)), c
    # an LED that never switched at the measured tones is only bounded, and said so
    dark = fit(_led_rows([-6.0], {**RGB, "high": 5.0}, gains=True, n=200), NB,
               led_threshold="estimate-each")
    assert dark.led_thresholds_ci95["high"][1] == math.inf
    assert any("LED high was never lit" in w for w in dark.warnings), dark.warnings
    with pytest.raises(FitError, match="needs gain data"):
        fit(_led_rows([-6.0], RGB, n=100), NB, led_threshold="estimate-each")


# --- against the virtual bench's RGB board -------------------------------------------------

def _run(tmp_path, mode, **kw):
    with open_probe("sim://?board=rgb&seed=4") as p:
        b = p.serial.bench
        cfg = calibrate.RunConfig(mode=mode, circuit=b.circuit.name,
                                  installed=dict(b.board.resistors),
                                  capacitance=dict(b.board.capacitance_f), **kw)
        res = calibrate.run(p, SimToneOutput(b), cfg, tmp_path / mode)
    true_thr = {c: b.led_threshold_v(i) / b.amplitude_v(res.config.level_dbfs)
                for i, c in enumerate(b.circuit.channels)}
    errs = [res.fit.corner_hz[r] * 2 * math.pi * b.true_values[r] * b.true_capacitances[r] - 1
            for r in res.fit.values]
    built = check_bands(b.circuit, res.design.values, b.true_capacitances, true_thr,
                        res.config.target)
    return res, true_thr, max(abs(e) for e in errs), built


def test_rgb_board_led_mode_with_each_leds_voltage(tmp_path):
    res, true_thr, err, built = _run(tmp_path, "led", led_vf=dict(RGB), max_tones=80)
    assert res.tones <= 80 and err < 0.01
    assert set(res.threshold) == set(RGB)
    for c, t in true_thr.items():
        assert res.threshold[c] == pytest.approx(t, rel=0.005)
    assert res.passed and all(v["pass"] for v in built.values()), built
    # the session header carries the per-LED voltages: an offline refit agrees exactly
    code, err, out = invoke(["fit", res.session, "--json"])
    assert code == 0, err
    refit = json.loads(out)["fit"]
    # each LED judged on volts against its tone's own reference amplitude
    assert refit["led_vf"] == pytest.approx(dict(RGB))
    assert refit["values"] == pytest.approx(res.fit.values, rel=1e-9)


def test_rgb_board_both_mode_measures_each_threshold(tmp_path):
    res, true_thr, err, built = _run(tmp_path, "both")
    assert err < 0.01 and res.fit.trusted
    assert isinstance(res.threshold, dict)
    for c, t in true_thr.items():  # bisected until each LED's range is within 1 %
        assert res.threshold[c] == pytest.approx(t, rel=0.015), (c, res.threshold)
        lo, hi = res.fit.led_thresholds_ci95[c]
        assert lo <= t * 10 ** (res.config.level_dbfs / 20) <= hi
        assert 0.5 * math.log(hi / lo) <= 0.01
    assert res.tones <= 60
    assert {m.level_dbfs for m in read_session(res.session)} == {-6.0}  # one level is enough
    assert res.passed and all(v["pass"] for v in built.values()), built


def test_cli_per_led_voltage_errors_are_one_line(tmp_path):
    for arg, msg in (("low=0.3,band=0.2", "no value for channel high"),
                     ("low=0.3,band=x,high=0.2", "'x' is not a number"),
                     ("low=0.3,mid=0.2,high=0.2", "'mid' is not a channel"),
                     ("low=0.3,low=0.2", "given twice")):
        code, err, out = invoke(["calibrate", "--sim", "rgb", "--led-vf", arg, "--out",
                                 str(tmp_path / "x")])
        assert code == 2 and not out, (code, out)
        lines = [s for s in err.splitlines() if s.strip()]
        assert len(lines) == 1 and msg in lines[0], err
        assert not (tmp_path / "x").exists()


@pytest.mark.slow                   # a whole CLI run end to end
def test_rgb_board_led_mode_estimate_refuses_to_pass(tmp_path):
    """One shared threshold cannot fit these LEDs: the values are wrong, and the run says
    so (NOT TRUSTED, the LED named, exit 1) instead of passing."""
    code, err, out = invoke(["calibrate", "--sim", "rgb", "--seed", "4", "--mode", "led",
                             "--no-plot", "--out", str(tmp_path / "run")])
    assert code == 1, err
    assert "NOT TRUSTED" in out and "one common threshold (low alone" in out
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["pass"] is False and rep["fit"]["trusted"] is False
    assert any("switching voltage (low=V" in w for w in rep["fit"]["warnings"])
    with open_probe("sim://?board=rgb&seed=4") as p:
        b = p.serial.bench
        errs = [rep["fit"]["corner_hz"][r] * 2 * math.pi * b.true_values[r]
                * b.true_capacitances[r] - 1 for r in b.true_values]
    assert max(abs(e) for e in errs) > 0.05, errs      # the warning is not a false alarm
    # the run recorded amplitudes too: re-fitting its session with one threshold per LED
    # gives the right parts and each LED's threshold
    code, err, out = invoke(["fit", str(tmp_path / "run" / "session.csv"), "--led-threshold",
                             "estimate-each", "--json"])
    assert code == 0, err
    d = json.loads(out)
    for r, corner in d["fit"]["corner_hz"].items():
        rc = b.true_values[r] * b.true_capacitances[r]
        assert corner * 2 * math.pi * rc == pytest.approx(1, abs=0.01), r
    # the session carries each tone's reference amplitude: the thresholds are switching
    # volts against it (as --led-vf judges), not fractions of the 0 dBFS tone
    for i, ch in enumerate(b.circuit.channels):
        assert d["fit"]["led_vf"][ch] == pytest.approx(b.led_threshold_v(i), rel=0.01)
    assert d["led_drive"]["led_vf"] == d["fit"]["led_vf"]


def test_design_for_leds_of_different_colors():
    thr = {"low": 0.5, "band": 0.6, "high": 0.8}
    code, err, out = invoke(["design", "--led-threshold", "low=0.5,band=0.6,high=0.8",
                             "--json"])
    assert code == 0, err
    d = json.loads(out)
    assert d["led_threshold"] == thr
    assert all(v["pass"] for v in d["target_check"].values()), d["target_check"]
    # the parts really give those bands (checked here, not taken from the command)
    circ = get_circuit("color-organ")
    parts = {r: p["value_ohm"] for r, p in d["parts"].items()}
    from hostctl.target import default_target
    assert all(v["pass"] for v in check_bands(circ, parts, 1e-6, thr, default_target()).values())
    # the corner design (LEDs at 1/sqrt(2)) misses with these LEDs: the option matters
    code, _, out = invoke(["design", "--json"])
    corner = {r: p["value_ohm"] for r, p in json.loads(out)["parts"].items()}
    checks = check_bands(circ, corner, 1e-6, thr, default_target())
    assert not all(v["pass"] for v in checks.values()), checks
    code, err, _ = invoke(["design", "--led-threshold", "low=0.5"])
    assert code == 2 and "no value for channel band, high" in err


def test_estimate_each_names_leds_on_the_wrong_pins():
    ms = _led_rows([-6.0], RGB, gains=True, n=300)
    swap = {"low": "high", "high": "low"}
    rows = [m if m.led is None else Measurement(m.frequency_hz, m.channel, gain=m.gain) for m in
            ms.rows]
    rows += [Measurement(m.frequency_hz, swap.get(m.channel, m.channel), led=m.led,
                         level_dbfs=m.level_dbfs) for m in ms.rows]
    res = fit(MeasurementSet(rows), NB, led_threshold="estimate-each")
    assert not res.trusted
    w = [w for w in res.warnings if "contradict the fitted gains" in w]
    assert len(w) == 1 and "low: " in w[0] and "high: " in w[0] and "band: " not in w[0], w
    assert fit(ms, NB, led_threshold="estimate-each").trusted


# --- an estimated switching voltage's range against ngspice boards ---------------------------

needs_spice = pytest.mark.skipif(shutil.which("ngspice") is None,
                                 reason="ngspice not installed (apt-get install ngspice)")


@needs_spice
def test_estimated_switching_voltage_range_allows_for_the_measured_reference():
    """A drawn passive board (ngspice), its LED rows as a finished LED-mode run holds them
    (switches bracketed 0.45 % apart at -6 and -8 dBFS), each reference amplitude with the
    bench's scatter: with every row taken as exact the V_f range was 0.2973..0.2989 V and
    R_low's, R_high's excluded the truth; each row's reference known to its scatter holds
    0.3 V and every resistor."""
    from sims.breadboards import draw_board
    from sims.studies.led_vf_coverage import VF, offline_rows

    rng = np.random.default_rng([13, 2, 2])
    board = draw_board(rng, topology="passive", source=(0.0, 32.0))
    res = fit(MeasurementSet(offline_rows(board, rng)), "color-organ-passive",
              capacitance=1e-6, led_threshold=SwitchVoltage("estimate"))
    lo, hi = res.led_threshold_ci95
    assert lo <= VF <= hi and hi / lo < 1.04, (lo, hi)
    # LED states cannot pin the band-pass's capacitor ratio (it shapes the band's peak):
    # the ranges hold its 95 % ends, the two capacitors moved opposite ways
    spread = [n for n in res.notes if "cannot pin" in n]
    assert len(spread) == 1 and "S_band_low" in spread[0] and "S_band_high" in spread[0], \
        res.notes
    for r, v in board.resistors.items():
        truth = v * board.capacitances["C" + r[1:]] / 1e-6
        a, b = res.ci95[r]
        assert a <= truth <= b and b / a < 1.15, (r, a, truth, b)

