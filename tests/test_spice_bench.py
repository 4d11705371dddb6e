"""ngspice as the virtual bench's physics (sims/spice.py, sims/physics.py, sims/breadboards.py).

The bench's truth must come from outside hostctl: these tests hold ngspice's responses
against hostctl's closed forms on the ideal boards (where both must agree), check the
sweep interpolation against direct ngspice points, the cache, the fallback without
ngspice, and the drawn breadboards the fit's acceptance tests build on.
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from hostctl.circuits import get_circuit
from hostctl.cli import invoke
from sims import breadboards, physics, spice
from sims.bench import BOARDS_DIR, list_boards, make_bench

HAVE_NGSPICE = spice.ngspice_path() is not None
needs_ngspice = pytest.mark.skipif(not HAVE_NGSPICE, reason=spice.MISSING_MESSAGE)
TONES = np.geomspace(20.0, 20000.0, 61)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets an empty disk cache and memory cache (counts of runs are exact)."""
    monkeypatch.setenv("HOSTCTL_SPICE_CACHE", str(tmp_path / "spice-cache"))
    spice.clear_memory_cache()
    yield
    spice.clear_memory_cache()


def _closed_form(circuit: str, values: dict, caps: dict) -> dict[str, np.ndarray]:
    """The notebook's hand-written |H| of the ideal circuit (hostctl.circuits.closed_forms)."""
    import torch

    from hostctl.circuits.closed_forms import CLOSED_FORMS

    name = circuit if circuit.endswith("-ideal") else f"{circuit}-ideal"
    t = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in values.items()}
    c = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in caps.items()}
    h = CLOSED_FORMS[name](torch.from_numpy(2 * math.pi * np.asarray(TONES, float)), t, c)
    return {k: v.numpy() for k, v in h.items()}


@needs_ngspice
@pytest.mark.parametrize("board", ["notebook", "lowpass", "rgb"])
def test_ideal_boards_match_the_closed_form(board):
    """No front end, ideal source: ngspice's |V(aK)/V(a0)| is hostctl's |H| to 1e-6."""
    b = make_bench(board, seed=4)
    want = _closed_form(b.circuit.name, b.true_values, b.true_capacitances)
    for i, f in enumerate(TONES):
        g = b.gains(f)
        for k, ch in enumerate(("low", "band", "high")):
            if ch in want:
                assert g[k + 1] == pytest.approx(want[ch][i], rel=1e-6), (board, f, ch)


def _hostctl_solver_or_skip() -> None:
    import hostctl.circuits

    if not hasattr(hostctl.circuits, "load_netlist"):
        pytest.skip("hostctl's own netlist solver is not there yet (issue 12)")


def _agreement(netlist, params) -> float:
    """Worst relative difference of every probe and LED node, ngspice vs hostctl's solver."""
    from sims.boards import netlist_nodes

    pins, leds = netlist_nodes(open(netlist, encoding="utf-8").read())
    nodes = tuple(dict.fromkeys([*pins.values(), *leds.values()]))
    ours = physics.solver_response(str(netlist), params, nodes)(TONES)
    truth = spice.ac_response(netlist, params, nodes)(TONES)
    return max(float(np.max(np.abs(ours[n] - truth[n]) / np.abs(truth[n]))) for n in nodes)


@needs_ngspice
@pytest.mark.parametrize("board", list_boards())
def test_hostctls_solver_agrees_with_ngspice_on_every_board(board):
    """Acceptance (issue 12): 20 Hz-20 kHz, every probe and LED node, <= 1e-6."""
    _hostctl_solver_or_skip()
    b = make_bench(board, seed=4)
    assert _agreement(b.board.netlist, b.true_params) <= 1e-6


@needs_ngspice
@pytest.mark.parametrize("topology,esr", [("passive", (0.02, 0.1)), ("buffered", (0.02, 0.1)),
                                          ("passive", (2.0, 5.0)), ("buffered", (2.0, 5.0))])
def test_hostctls_solver_agrees_with_ngspice_on_drawn_boards(topology, esr):
    _hostctl_solver_or_skip()
    rng = np.random.default_rng(31)
    for _ in range(3):
        b = breadboards.draw_board(rng, topology=topology, esr=esr)
        assert _agreement(b.netlist, b.params) <= 1e-6


@needs_ngspice
@pytest.mark.parametrize("circuit", ["highpass", "bandpass", "bandpass-unbuffered"])
def test_ideal_preset_netlists_match_the_closed_form(circuit):
    vals = {"R_band_low": 41.0, "R_band_high": 150.0, "R_high": 36.0}
    caps = {"R_band_low": 1.1e-6, "R_band_high": 0.9e-6, "R_high": 1.05e-6}
    circ = get_circuit(circuit)
    v = {r: vals[r] for r in circ.resistors}
    params = {**v, **{"C" + r[1:]: caps[r] for r in circ.resistors}}
    ch = circ.channels[0]
    pin = {"band": "a2", "high": "a3"}[ch]
    got = spice.ac_response(BOARDS_DIR / f"ideal-{circuit}.cir", params, ("a0", pin))(TONES)
    want = _closed_form(circuit, v, {r: caps[r] for r in circ.resistors})[ch]
    np.testing.assert_allclose(np.abs(got[pin] / got["a0"]), want, rtol=1e-6)


@needs_ngspice
@pytest.mark.parametrize("board", ["bench", "bench-buffered"])
def test_sweep_interpolation_matches_direct_ngspice_points(board):
    """The spline through the dense sweep vs ngspice run at exactly these tones: <= 1e-7."""
    b = make_bench(board, seed=11)
    nodes = ("a0", "a1", "a2", "a3", "low", "band", "high")
    tones = np.exp(np.random.default_rng(1).uniform(np.log(5.0), np.log(1e6), 40))
    ac = spice.ac_response(b.board.netlist, b.true_params, nodes)
    got = ac(tones)
    want = spice.direct(b.board.netlist, tones, b.true_params, nodes)
    for i, n in enumerate(nodes):
        rel = np.abs(got[n] - want[:, i]) / np.abs(want[:, i])
        assert rel.max() <= 1e-7, (n, rel.max())


@needs_ngspice
def test_cache_second_call_runs_no_ngspice():
    b = make_bench("bench-buffered", seed=2)
    nodes = ("a0", "a1")
    before = spice.RUNS
    first = spice.ac_response(b.board.netlist, b.true_params, nodes)(1234.5)
    assert spice.RUNS == before + 1
    again = spice.ac_response(b.board.netlist, b.true_params, nodes)(1234.5)  # memory
    spice.clear_memory_cache()
    disk = spice.ac_response(b.board.netlist, b.true_params, nodes)(1234.5)   # disk
    assert spice.RUNS == before + 1
    assert again["a1"] == first["a1"] and disk["a1"] == first["a1"]
    other = dict(b.true_params, R_low=b.true_params["R_low"] * 1.01)
    changed = spice.ac_response(b.board.netlist, other, nodes)(1234.5)
    assert spice.RUNS == before + 2 and changed["a1"] != first["a1"]


@needs_ngspice
def test_parameter_overrides_reach_the_probe_subcircuit():
    """C_couple lives in probe.cir's .param line; an override must change V(a0)."""
    net = BOARDS_DIR / "bench.cir"
    lo = spice.ac_response(net, {"C_couple": 1e-6}, ("a0",))(30.0)["a0"]
    hi = spice.ac_response(net, {"C_couple": 100e-6}, ("a0",))(30.0)["a0"]
    assert abs(lo) < 0.98 < abs(hi)


@needs_ngspice
def test_bad_netlist_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.cir"
    bad.write_text("* a broken board\nVs in 0 DC 0 AC 1\nX1 in a0 no_such_subckt\n.end\n")
    with pytest.raises(spice.SpiceError) as ei:
        spice.ac_response(bad, {}, ("a0",))
    msg = str(ei.value)
    assert str(bad) in msg and "\n" not in msg and "subckt" in msg.lower()


@needs_ngspice
def test_a_board_whose_netlist_ngspice_refuses_stops_before_anything_is_written(tmp_path):
    (tmp_path / "broken.cir").write_text("* broken\nVs src 0 DC 0 AC 1\nRs src in 10\n"
                                         "X1 in a0 no_such_subckt\n.end\n")
    board = tmp_path / "b.toml"
    board.write_text((BOARDS_DIR / "bench.toml").read_text()
                     .replace('netlist = "bench.cir"', 'netlist = "broken.cir"'))
    out = tmp_path / "run"
    code, err, _ = invoke(["calibrate", "--sim", str(board), "--out", str(out)])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert str(tmp_path / "broken.cir") in lines[0] and "subckt" in lines[0]
    assert not out.exists()


def test_without_ngspice_the_bench_says_so_once_and_falls_back(monkeypatch, capsys):
    monkeypatch.setattr(spice.shutil, "which", lambda name: None)
    monkeypatch.setitem(physics._warned, "missing", False)
    runs = spice.RUNS
    b = make_bench("notebook", seed=1)
    g = b.gains(800.0)
    make_bench("bench", seed=1).gains(1000.0)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [spice.MISSING_MESSAGE]
    assert "apt-get install ngspice" in err[0] and "not an independent truth" in err[0]
    # hostctl's own solver (or, before it existed, the closed form): exact, not interpolated
    assert g[1] == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    assert spice.RUNS == runs
    with pytest.raises(spice.NgspiceMissing):
        spice.ac_response(BOARDS_DIR / "bench.cir", {}, ("a0",))


@needs_ngspice
def test_bench_pins_have_their_own_phase_and_leds_see_the_output_node():
    b = make_bench("bench-buffered", seed=5)
    ph = b.phasors(2000.0)
    phases = [math.degrees(np.angle(p)) for p in ph.pins]
    assert max(phases) - min(phases) > 30             # the channels are not in phase
    # LED 'low' sees the filter output (before the probe), not the pin a1: below the
    # coupling capacitor's corner (~1.6 Hz) the two differ
    v = spice.ac_response(b.board.netlist, b.true_params, ("low", "a1"))(2000.0)
    assert ph.leds[0] == pytest.approx(complex(v["low"][()]), rel=1e-12)
    slow = b.phasors(1.0)
    assert abs(slow.pins[1]) < 0.8 * abs(slow.leds[0])


@needs_ngspice
def test_calibrate_sim_bench_runs_end_to_end(tmp_path):
    """The passive bench board: the run completes and prints its table (accuracy of the
    closed-form fit on it is not asserted: issue 12 changes the fit's model)."""
    code, err, out = invoke(["calibrate", "--sim", "bench", "--seed", "3",
                             "--out", str(tmp_path / "run")])
    text = out + err
    assert code in (0, 1), text
    assert "R_low" in text and "R_high" in text
    assert (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- breadboards
@needs_ngspice
def test_drawn_board_parts_within_their_tolerances():
    rng = np.random.default_rng(3)
    for topology in ("passive", "buffered"):
        for _ in range(5):
            b = breadboards.draw_board(rng, topology=topology, esr=(2.0, 5.0))
            for s in breadboards.SECTIONS:
                r = b.params[f"R_{s}"] / b.nominal[f"R_{s}"] - 1
                c = b.params[f"C_{s}"] / 1e-6 - 1
                assert abs(r) <= 0.05 and abs(c) <= 0.10
                assert 2.0 <= b.params[f"ESR_{s}"] <= 5.0
            assert abs(b.params["C_couple"] / 10e-6 - 1) <= 0.20
            assert 0 < b.params["R_source"] <= 75
            assert b.nominal["R_low"] in (180.0, 200.0, 220.0)   # E24 near 198.9


@needs_ngspice
def test_measure_gives_noisy_gain_rows_from_ngspice():
    rng = np.random.default_rng(5)
    b = breadboards.draw_board(rng)
    tones = np.geomspace(20, 20000, 80)
    data = breadboards.measure(b, tones, noise=0.003, rng=rng)
    assert len(data) == 240 and data.channels == ["band", "high", "low"]
    true = b.gains(tones)
    rel = [m.gain / true[m.channel][list(tones).index(m.frequency_hz)] - 1 for m in data]
    assert 0.002 < float(np.std(rel)) < 0.004                # the 0.3 % noise, nothing else
    vin = breadboards.amplitude_v(-6.0) * np.abs(b.response(tones)["a0"])
    assert [m.vin_v for m in data.rows[::3]] == pytest.approx(list(vin), rel=1e-12)
    clean = breadboards.measure(b, tones, noise=0.0, rng=rng)
    assert all(m.gain_usable for m in clean)


@needs_ngspice
def test_source_resistance_cancels_in_gains_but_not_at_the_leds():
    """A0 taps the filters' common input: V(aK)/V(a0) does not depend on R_source; the
    LEDs (output node volts) do."""
    b = breadboards.draw_board(np.random.default_rng(9), source=(1.0, 1.0))
    far = b.with_values(R_source=75.0)
    for ch, g in b.gains(TONES).items():
        np.testing.assert_allclose(far.gains(TONES)[ch], g, rtol=1e-7)
    led_near = breadboards.led_voltages(b, [1000.0])["low"][0]
    led_far = breadboards.led_voltages(far, [1000.0])["low"][0]
    assert led_far < 0.9 * led_near


@needs_ngspice
def test_drawn_netlist_text_runs_unchanged_in_ngspice(tmp_path):
    b = breadboards.draw_board(np.random.default_rng(2), topology="buffered")
    text = b.netlist_text()
    path = tmp_path / "board.cir"
    path.write_text(text.replace(".end\n", ".control\noption numdgt=15\nac lin 1 1500 1500\n"
                                 "print v(a2)\nquit\n.endc\n.end\n"))
    r = subprocess.run(["ngspice", "-b", str(path)], capture_output=True, text=True, check=True)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("v(a2)"))
    re_, im = (float(x) for x in line.split("=")[1].split(","))
    assert complex(re_, im) == pytest.approx(complex(b.response([1500.0])["a2"][0]), rel=1e-7)
