"""`hostctl calibrate` against the virtual bench: the issue's acceptance numbers.

Corners are judged against the simulated board's *true* parts (drawn from its tolerances),
never against what hostctl was told.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hostctl import calibrate
from hostctl.device import open_probe
from hostctl.sessionlog import read_session
from sims import spice
from sims.boards import CHANNEL_ORDER, netlist_nodes
from sims.tones import SimToneOutput

#: The bench board is the passive build with the probe front end and a source resistance,
#: simulated by ngspice. The fit models it (its capacitors as nuisances, issue 12), so its
#: corners are held to 1 % strictly. Its LEDs switch on the volts at the filter outputs,
#: under the sound card's source resistance: their switching levels are compared in volts,
#: and the recommended parts are built in ngspice and looked at (:func:`spice_bands`).
#: bench-ideal (the old bench board: the closed forms' circuit, with tolerances and noise)
#: keeps the fit's accuracy on noisy boards checked strictly too.
BOARDS = ([("notebook", 0)] + [("bench-ideal", s) for s in range(3)]
          + [("bench", s) for s in range(10)])
#: LED data alone cannot tell the passive build's band-pass from the buffered one (nor its
#: capacitors apart): there the band sections are withheld or NOT TRUSTED, not within 1 %
LED_BOARDS = [("notebook", 0)] + [("bench-ideal", s) for s in range(3)]
def run(tmp_path, board, seed, mode, **kw):
    with open_probe(f"sim://?board={board}&seed={seed}") as p:
        b = p.serial.bench
        cfg = calibrate.RunConfig(mode=mode, circuit=b.circuit.name,
                                  installed=dict(b.board.resistors),
                                  capacitance=dict(b.board.capacitance_f), **kw)
        out = tmp_path / f"{os.path.basename(str(board))}-{seed}-{mode}"
        res = calibrate.run(p, SimToneOutput(b), cfg, out)
    return res, b


def corner_errors(res, b):
    return {r: res.fit.corner_hz[r] * 2 * math.pi * b.true_values[r] * b.true_capacitances[r] - 1
            for r in res.fit.values}


def true_threshold(b, level_dbfs):
    """The board's LED threshold as a fraction of the tone at that level."""
    return b.led_threshold_v(0) / b.amplitude_v(level_dbfs)


def true_vf(b, channel):
    """The volts at its filter output where the board's LED on ``channel`` switches."""
    return b.led_threshold_v(CHANNEL_ORDER.index(channel))


def spice_bands(res, b):
    """ngspice's verdict on the recommended parts: the board's netlist with them put in
    (everything else as built: its true capacitors, source resistance, probe front end),
    played at the run's level; channel -> lit all over its on-bands and dark all over
    its off-bands, on the board's own switching voltages."""
    nodes = netlist_nodes(open(b.board.netlist).read())[1]
    chans = [c for c in CHANNEL_ORDER if c in nodes and c in res.config.target.bands]
    params = {**b.true_params, **res.design.values}
    ac = spice.ac_response(b.board.netlist, params, tuple(nodes[c] for c in chans))
    level = float(read_session(res.session).meta.get("level_dbfs_used", res.config.level_dbfs))
    a = b.amplitude_v(level)
    out = {}
    for c in chans:
        ok = True
        for kind, bands in res.config.target.bands[c].items():
            for lo, hi in bands:
                lit = a * np.abs(ac(np.geomspace(lo, hi, 60))[nodes[c]]) > true_vf(b, c)
                ok &= bool(lit.all() if kind == "on" else not lit.any())
        out[c] = ok
    return out


#: a FAIL for want of knowledge (a section the data left open, an LED never seen to
#: switch) claims nothing about the build: ngspice is not asked to agree with it
UNKNOWING = ("not determined", "unknown", "never switched", "cannot tell")


def assert_build_meets_target(res, b, *, expect_pass=True):
    """Where hostctl says PASS, the recommended parts light as targeted in ngspice; where it
    says FAIL (for a reason about the build), ngspice agrees. ``expect_pass``: hostctl must
    say PASS on every channel (not on the bench boards: there a band edge within the
    capacitors' uncertainty, 5 % through the installed resistors, is said to be unsure)."""
    truth = spice_bands(res, b)
    assert truth, "no channel with target bands"
    for c, v in res.bands.items():
        if v["pass"]:
            assert truth[c], (c, "PASS but ngspice misses the bands", res.bands, truth)
        elif v.get("unsure"):     # claims nothing about the build; says what would decide
            assert v["why"].startswith("cannot be sure: ") and v["decide"], (c, v)
        elif not any(w in v.get("why", "") for w in UNKNOWING):
            assert not truth[c], (c, "FAIL but ngspice meets the bands", res.bands, truth)
    if expect_pass:
        assert all(v["pass"] for v in res.bands.values()), res.bands


@pytest.mark.parametrize("board,seed", BOARDS)
def test_gain_mode_recovers_true_corners_within_1pct_in_40_tones(tmp_path, board, seed):
    res, b = run(tmp_path, board, seed, "gain", precision=0.007, max_tones=40,
                 led_vf=b_led(board))
    errs = corner_errors(res, b)
    assert res.tones <= 40
    assert max(abs(e) for e in errs.values()) < 0.01, errs
    assert res.fit.trusted and res.fit.converged, res.fit.warnings
    if board == "bench":   # the data chose the passive build, without any ESR (film parts)
        assert res.fit.circuit == "color-organ-passive", res.fit.notes
        assert not any("ESR fitted" in n for n in res.fit.notes), res.fit.notes
    assert_build_meets_target(res, b, expect_pass=board != "bench")
    # the session holds every tone measured, all channels
    data = read_session(res.session)
    assert len({m.frequency_hz for m in data}) == res.tones
    assert res.bench_time_s > 0.2 * res.tones


def b_led(board):
    """What a student knows of the LEDs: the bench boards' 0.3 V switching voltage."""
    return None if board == "notebook" else 0.3


@pytest.mark.parametrize("board,seed", LED_BOARDS)
def test_led_mode_recovers_true_corners_within_1pct_in_80_tones(tmp_path, board, seed):
    kw = ({"led_threshold": 1 / math.sqrt(2)} if board == "notebook" else {"led_vf": 0.3})
    res, b = run(tmp_path, board, seed, "led", max_tones=80, **kw)
    errs = corner_errors(res, b)
    assert res.tones <= 80
    assert max(abs(e) for e in errs.values()) < 0.01, errs
    assert res.threshold == pytest.approx(true_threshold(b, -6.0), rel=0.005)
    assert "reference amplitude" in res.threshold_source or board == "notebook"
    assert_build_meets_target(res, b, expect_pass=board != "bench")


@pytest.mark.slow        # two whole LED-mode runs, each ~25-50 s CPU (profiled thresholds)
@pytest.mark.parametrize("seed", [0, 4])
def test_led_mode_measures_the_threshold_itself(tmp_path, seed):
    """LED mode with no switching voltage given estimates one shared V_f on volts. Its range
    must hold the board's 0.3 V although LED states cannot pin the passive band-pass's
    capacitor ratio (once, held at nominal: 0.3066..0.3133 V; now the range covers the
    ratio's 95 % spread), and stay useful (within +-10 %). Seeds whose LED rows the ratio
    moves beyond NUISANCE_SHAPE_TOL (the note names it; since the pre-flight's 20 ms rate
    window, seed 1's readings no longer do)."""
    res, b = run(tmp_path, "bench", seed, "led", max_tones=80)
    assert "switching volt" in res.threshold_source
    lo, hi = res.fit.led_threshold_ci95
    for c, v in res.fit.led_vf.items():    # on volts, as the board's LEDs switch
        assert lo <= true_vf(b, c) <= hi and lo <= v <= hi, (c, v, lo, hi)
    assert hi / lo < 1.2, (lo, hi)
    assert any("S_band_low" in n and "S_band_high" in n for n in res.fit.notes), res.fit.notes
    judged = judge_run(res, b)
    assert all(cov for _, _, cov in judged.values()), judged
    levels = {m.level_dbfs for m in read_session(res.session)}
    assert levels == {-6.0, -8.0}


@pytest.mark.parametrize("board,seed", BOARDS)
def test_both_mode_recovers_corners_and_each_leds_threshold(tmp_path, board, seed):
    res, b = run(tmp_path, board, seed, "both")
    errs = corner_errors(res, b)
    assert res.tones <= 60
    assert max(abs(e) for e in errs.values()) < 0.01, errs
    assert isinstance(res.threshold, dict) and "each LED" in res.threshold_source
    # each LED's switching level in volts at its filter output, as the board's LEDs switch
    assert "switching volt" in res.threshold_source and res.fit.trusted, res.fit.warnings
    for c, v in res.fit.led_vf.items():
        assert v == pytest.approx(true_vf(b, c), rel=0.015), (c, res.fit.led_vf)
    assert res.advice.drive is not None and res.advice.drive.volts == res.fit.led_vf
    assert_build_meets_target(res, b, expect_pass=board != "bench")


def drawn_board(tmp_path, k):
    """Acceptance board ``k`` (sims.breadboards): passive for even ``k``, buffered for odd,
    a source drawn from 0-32 ohm (board 8: none at all), each LED its own switching
    voltage; the bench draws the parts' tolerances from seed ``k``."""
    from sims.breadboards import bench_board_toml

    text, drawn = bench_board_toml(np.random.default_rng([13, k]),
                                   topology="passive" if k % 2 == 0 else "buffered",
                                   source=(0.0, 0.0) if k == 8 else (0.0, 32.0),
                                   name=f"drawn-{k}")
    path = tmp_path / f"drawn-{k}.toml"
    path.write_text(text)
    return str(path), drawn


def judge_run(res, b):
    """The issue's rule on one run, resistor by resistor: within 2 % of the truth, or not
    trusted (the fit NOT TRUSTED, its precision not reached, or its part withheld: each
    says why); never trusted beyond 3 %. Returns resistor -> (error, trusted, covered)."""
    out = {}
    for r, e in corner_errors(res, b).items():
        trusted = res.fit.trusted and r not in res.unmet and r not in res.advice.held
        true = b.true_values[r] * b.true_capacitances[r] / res.fit.capacitance[r]
        lo, hi = res.fit.ci95[r]
        out[r] = (e, trusted, lo <= true <= hi)
        assert abs(e) <= 0.02 or not trusted, (r, e, res.fit.warnings)
    if not res.fit.trusted:
        assert res.fit.warnings, "NOT TRUSTED without a reason"
    return out


def accept(tmp_path, mode, k):
    """One acceptance run: ``--mode led`` is told each LED's switching voltage, ``--mode
    both`` measures them. The recommended parts are then built in ngspice."""
    board, drawn = drawn_board(tmp_path, k)
    kw = ({"led_vf": {c: drawn[f"vf_{c}"] for c in CHANNEL_ORDER}} if mode == "led" else {})
    res, b = run(tmp_path, board, k, mode, **kw)
    got = judge_run(res, b)
    assert_build_meets_target(res, b, expect_pass=False)
    return got


@pytest.mark.parametrize("mode,k", [("both", 2), ("led", 1)])
def test_acceptance_one_board(tmp_path, mode, k):
    """One passive and one buffered board of the acceptance below, every check of it."""
    got = accept(tmp_path, mode, k)
    assert all(cov for _, _, cov in got.values()), got


@pytest.mark.slow                   # 10 calibrations through ngspice per mode
@pytest.mark.parametrize("mode", ["led", "both"])
def test_acceptance_over_10_boards(tmp_path, mode):
    """Issue 13's acceptance: 10 boards (5 passive, 5 buffered, source 0-32 ohm, LEDs
    switching at their own voltages): every resistor within 2 % or not trusted with the
    reason named, never trusted beyond 3 %, intervals covering >= 90 % of the resistors,
    and ngspice agreeing with every PASS and every FAIL about the build."""
    got = {(k, r): v for k in range(10) for r, v in accept(tmp_path, mode, k).items()}
    covered = sum(cov for _, _, cov in got.values())
    assert covered / len(got) >= 0.90, {kr: v for kr, v in got.items() if not v[2]}
    if mode == "both":   # the gains tell the builds apart: nearly every part is trusted
        # (measured: 39 of 40, the one a never-lit LED leaves unmeasured withheld)
        assert sum(t for _, t, _ in got.values()) >= 36, got


def test_cap_tolerance_is_recorded_and_the_offline_refit_judges_as_the_run(tmp_path):
    """``--cap-tolerance`` feeds the verdict's box and goes into the session header, so
    ``hostctl fit SESSION`` gives the run's verdict, word for word; the default box (5 %
    through the installed resistors) is not written (old sessions read the same)."""
    from hostctl.sessionfit import advise_session

    res, b = run(tmp_path, "bench", 0, "both", cap_tolerance=0.02)
    data = read_session(res.session)
    assert data.meta["cap_tolerance"] == "0.02"
    _, cfg, adv = advise_session(data)
    assert cfg.cap_tolerance == 0.02
    assert adv.to_json()["target_check"] == res.advice.to_json()["target_check"]
    assert adv.verdict == res.advice.verdict
    assert not any(v.get("unsure") and "+-5%" in v["why"] for v in res.bands.values())
    assert_build_meets_target(res, b, expect_pass=False)
    assert "cap_tolerance" not in calibrate.RunConfig().to_meta()


def test_capacitors_are_inferred_from_installed_values(tmp_path):
    res, b = run(tmp_path, "bench", 4, "gain", precision=0.005)
    for r, c in res.actual_capacitance.items():
        # fitted RC over the *nominal* resistor: off by the resistor's own tolerance only
        expect = b.true_capacitances[r] * b.true_values[r] / b.board.resistors[r]
        assert c == pytest.approx(expect, rel=0.01)
    assert "measured" in res.capacitance_source


def test_a_fit_that_did_not_converge_is_not_trusted(tmp_path, monkeypatch):
    """Values the optimiser stopped at before its stop rule are no answer: NOT TRUSTED, the
    reason named, no part recommended."""
    from hostctl.fit import engine
    from hostctl.fit.lm import _lm

    def one_step(fun, theta0, **kw):
        return _lm(fun, theta0, **{**kw, "max_iter": 1})

    monkeypatch.setattr(engine, "_lm", one_step)
    res, b = run(tmp_path, "bench-ideal", 0, "gain", max_tones=14)
    assert not res.fit.converged and not res.fit.trusted
    assert any("did not converge" in w for w in res.fit.warnings), res.fit.warnings
    assert res.advice.withheld


@pytest.mark.slow                   # 20 calibrate runs (~1 min of CPU)
def test_bench_intervals_cover_the_truth_over_20_seeds(tmp_path):
    """Gain mode on the passive bench board: every corner within 1 % (or the run says the
    precision was not met), and the 95 % intervals hold the true RC products at ~95 %."""
    hits = total = 0
    for seed in range(20):
        res, b = run(tmp_path, "bench", seed, "gain")
        for r, v in res.fit.values.items():
            true = b.true_values[r] * b.true_capacitances[r] / res.fit.capacitance[r]
            lo, hi = res.fit.ci95[r]
            hits += lo <= true <= hi
            total += 1
            assert abs(v / true - 1) < 0.01 or r in res.unmet, (seed, r, v, true)
    assert 0.90 <= hits / total <= 1.0, (hits, total)


def hostctl(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hostctl", *args], capture_output=True,
                          text=True, timeout=300, **kw)


def test_cli_json_report_files_and_offline_refit(tmp_path):
    out = tmp_path / "run"
    # bench-ideal: a board the closed-form fit can model, so the run is trusted and
    # recommends parts (the passive bench board needs the netlist fit, issue 12)
    r = hostctl("calibrate", "--sim", "bench-ideal", "--seed", "2", "--out", str(out),
                "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep == json.loads((out / "report.json").read_text())
    assert rep["schema"] == "hostctl-report/2" and rep["fit"]["schema"] == "hostctl-fit/1"
    assert set(rep["recommended"]["parts"]) == {"R_low", "R_band_low", "R_band_high", "R_high"}
    assert rep["run"]["tones"] <= 40 and rep["pass"] is True
    assert (out / "bode.png").stat().st_size > 10_000
    refit = hostctl("fit", str(out / "session.csv"), "--json")
    assert refit.returncode == 0, refit.stderr
    again = json.loads(refit.stdout)
    for r, v in rep["fit"]["values"].items():
        assert again["fit"]["values"][r] == pytest.approx(v, rel=1e-6)   # same fit as the run
    assert ({r: p["value_ohm"] for r, p in again["recommended"]["parts"].items()}
            == {r: p["value_ohm"] for r, p in rep["recommended"]["parts"].items()})


def test_runs_without_matplotlib_and_says_how_to_plot(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from hostctl.cli import main\n"
            f"main(['calibrate', '--sim', '--out', {str(tmp_path / 'r')!r}])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "pip install 'hostctl[plot]'" in r.stderr
    assert (tmp_path / "r" / "report.json").exists()
    assert not (tmp_path / "r" / "bode.png").exists()


@pytest.mark.slow                   # a whole CLI run end to end
def test_killed_run_resumes_to_the_same_answer(tmp_path):
    # bench-ideal: a board the closed-form fit can model (the passive bench board needs the
    # netlist fit, issue 12), so both runs can be held against the truth
    ref = hostctl("calibrate", "--sim", "bench-ideal", "--seed", "7", "--out", str(tmp_path / "a"),
                  "--json")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-m", "hostctl", "calibrate", "--sim", "bench-ideal",
                             "--seed", "7", "--out", str(out), "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session = out / "session.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if session.exists() and session.read_text().count("\n") > 30:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_session(session)
    assert 0 < len(before)
    r = hostctl("calibrate", "--resume", str(out), "--json")
    assert r.returncode == 0, r.stderr
    after = read_session(session)
    # nothing measured twice: the recorded rows are kept and come first
    assert after.rows[:len(before)] == before.rows
    tones = [(m.frequency_hz, m.level_dbfs) for m in after.rows if m.channel == "low"]
    assert len(tones) == len(set(tones))
    # both runs land within 1% of the board's true RC products (they are two independent
    # noisy estimates, so they are compared with the truth, not with each other)
    from sims.bench import make_bench

    bench = make_bench("bench-ideal", 7)
    for rep in (json.loads(ref.stdout), json.loads(r.stdout)):
        for k, v in rep["fit"]["values"].items():
            true_rc = bench.true_values[k] * bench.true_capacitances[k]
            assert v * 1e-6 == pytest.approx(true_rc, rel=0.01), (k, v)


@pytest.mark.parametrize("args,msg", [
    (["--sim", "--precision", "0"], "precision"),
    (["--sim", "--precision", "abc"], "precision"),
    (["--sim", "--mode", "loud"], "mode"),
    (["--sim", "--capacitance", "-1e-6"], "positive"),
    (["--sim", "--circuit", "nope"], "unknown circuit"),
    (["--sim", "--series", "E5"], "unknown series"),
    (["--sim", "--installed", "R_nope=5"], "R_nope"),
    (["--sim", "--max-tones", "3"], "max-tones"),
    ([], "no probe"),
])
def test_bad_cli_values_one_line_exit_2_nothing_written(tmp_path, args, msg):
    out = tmp_path / "o"
    r = hostctl("calibrate", *args, "--out", str(out))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert msg in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (out / "report.json").exists()


@pytest.mark.parametrize("mode", ["gain", "both", "led"])
def test_an_led_that_never_lights_is_reported(tmp_path, mode):
    """A board whose band LED needs more than the band-pass can give: said plainly (and in
    both mode its threshold is only bounded, never invented)."""
    board = tmp_path / "dim.toml"
    from sims.bench import load_board

    src = load_board("bench").path
    text = open(src).read().replace("threshold_v = 0.3 ", "threshold_v = [0.3, 0.45, 0.3] ")
    # built as the notebook draws it (ideal source, no front end) and played at 1 V peak,
    # as the bench board was before it became the passive build (issue 12)
    text = text.replace('netlist = "bench.cir"', 'netlist = "ideal-color-organ.cir"')
    text = text.replace("peak_v_at_0dbfs = 2.0", "peak_v_at_0dbfs = 1.0")
    board.write_text(text)
    with open_probe(f"sim://?board={board}&seed=1") as p:
        b = p.serial.bench
        assert b.led_threshold_v(1) == 0.45
        cfg = calibrate.RunConfig(mode=mode, circuit=b.circuit.name,
                                  installed=dict(b.board.resistors),
                                  capacitance=dict(b.board.capacitance_f))
        res = calibrate.run(p, SimToneOutput(b), cfg, tmp_path / "run")
    assert any("D3 (band) never went HIGH" in pr for pr in res.problems), res.problems
    assert not any("D2" in pr or "D4" in pr for pr in res.problems if "never" in pr)
    if mode == "both":
        lo, hi = res.fit.led_thresholds_ci95["band"]
        assert hi == math.inf and lo < 0.45 / b.amplitude_v(0.0)
        assert any("LED band was never lit" in w for w in res.fit.warnings)
        assert not res.passed          # the band LED cannot meet its target band
    if mode == "led":   # LED data alone then say nothing of the band-pass section
        assert res.bands["band"] == {"pass": False,
                                     "why": "R_band_high is not determined by the data"}
        assert not res.design.parts["R_band_low"].measured and not res.passed
        assert res.design.to_json()["parts"]["R_band_high"]["measured"] is False
        assert res.design.parts["R_low"].measured and res.bands["low"]["pass"]
    if mode == "gain":  # the gains determine every section
        assert all(p.measured for p in res.design.parts.values())


def test_an_implausible_installed_value_is_pointed_out(tmp_path):
    """A mistyped --installed (2000 for 200) would make a 0.1 uF capacitor out of the
    measured corner: the run says so; right values (10 % capacitors) raise nothing."""
    # bench-ideal: the closed-form fit measures its RC products to well under 1 % (on the
    # passive bench board it cannot yet, issue 12), so the message's figure can be checked
    ok, _ = run(tmp_path, "bench-ideal", 3, "gain")
    assert not [p for p in ok.problems if "capacitor" in p], ok.problems
    with open_probe("sim://?board=bench-ideal&seed=3") as p:
        b = p.serial.bench
        cfg = calibrate.RunConfig(mode="gain", circuit=b.circuit.name,
                                  installed={**b.board.resistors, "R_low": 2000.0},
                                  capacitance=dict(b.board.capacitance_f))
        res = calibrate.run(p, SimToneOutput(b), cfg, tmp_path / "typo")
    notes = [p for p in res.problems if "capacitor" in p]
    assert len(notes) == 1 and notes[0].startswith("R_low: installed 2000 ohm"), res.problems
    rc = b.true_values["R_low"] * b.true_capacitances["R_low"]
    assert f"{rc / 2000 / 1e-6:.2g}x the nominal" in notes[0]


def test_sim_with_another_circuit_takes_the_boards_parts_for_it(tmp_path):
    """`--sim --circuit lowpass` on the color organ board: the board's R_low and C, only."""
    from hostctl.cli import invoke

    code, err, out = invoke(["calibrate", "--sim", "bench", "--seed", "2", "--circuit",
                             "lowpass", "--no-plot", "--json", "--out", str(tmp_path / "run")])
    assert code in (0, 1), err
    rep = json.loads(out)
    assert list(rep["fit"]["values"]) == ["R_low"] and rep["circuit"] == "lowpass"
    with open_probe("sim://?board=bench&seed=2") as p:
        b = p.serial.bench
        rc = b.true_values["R_low"] * b.true_capacitances["R_low"]
    assert rep["fit"]["corner_hz"]["R_low"] * 2 * math.pi * rc == pytest.approx(1, abs=0.01)
