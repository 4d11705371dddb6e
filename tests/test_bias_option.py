"""``--bias-ohm``: the probe front end's bias resistors as wired, on fit / calibrate /
design. The board's truth comes from ngspice (the preset netlist with other bias
resistors), never from hostctl's own solver."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hostctl.circuits import CIRCUITS, PRESETS_DIR
from hostctl.cli import invoke
from hostctl.dataset import Measurement, MeasurementSet

TRUE = {"R_low": 220.0, "R_band_low": 39.0, "R_band_high": 150.0, "R_high": 33.0}


@pytest.fixture(scope="module")
def board_csv(tmp_path_factory):
    """The buffered color organ wired with 10k/10k bias resistors (the doc: 20k/20k), E24
    parts, 40 tones x 3 channels from ngspice with 0.3 % gain noise."""
    from sims import spice

    if spice.ngspice_path() is None:
        pytest.skip(spice.MISSING_MESSAGE)
    f = np.geomspace(20, 20000, 40)
    V = spice.direct(PRESETS_DIR / "color-organ.cir", f,
                     {**TRUE, "R_bias_top": 10e3, "R_bias_bot": 10e3}, ("a0", "a1", "a2", "a3"))
    H = np.abs(V[:, 1:] / V[:, :1]) * np.exp(0.003 * np.random.default_rng(3).normal(
        size=(len(f), 3)))
    rows = [Measurement(float(fk), ch, gain=float(H[k, i]))
            for k, fk in enumerate(f) for i, ch in enumerate(("low", "band", "high"))]
    path = tmp_path_factory.mktemp("bias") / "board.csv"
    MeasurementSet(rows, {}).write_csv(path)
    return str(path)


def _fit(capsys, csv: str, *extra: str) -> dict:
    code, err, out = invoke(["fit", csv, "--circuit", "color-organ", "--json", *extra])
    assert code == 0, err
    return json.loads(out)["fit"]


def test_a_board_with_other_bias_resistors_is_fitted_right_with_the_option(board_csv,
                                                                           capsys):
    preset = CIRCUITS["color-organ"]
    without = _fit(capsys, board_csv)
    given = _fit(capsys, board_csv, "--bias-ohm", "10k")
    both = _fit(capsys, board_csv, "--bias-ohm", "10k/10k")
    assert CIRCUITS["color-organ"] is preset          # the presets are back after
    err = {k: given["values"][k] / v - 1 for k, v in TRUE.items()}
    assert max(abs(e) for e in err.values()) < 0.005, err
    assert all(given["ci95"][k][0] <= v <= given["ci95"][k][1] for k, v in TRUE.items())
    assert both["values"] == pytest.approx(given["values"], rel=1e-9)
    # the doc's 20k/20k: the probe's lighter load read as a smaller R_band_high,
    # confidently (the interval excludes the truth)
    off = without["values"]["R_band_high"] / TRUE["R_band_high"] - 1
    assert off < -0.01, off
    assert without["ci95"]["R_band_high"][1] < TRUE["R_band_high"]


@pytest.mark.parametrize("argv,what", [
    (["design", "--bias-ohm", "abc"], "--bias-ohm: 'abc' is not a bias resistance"),
    (["design", "--bias-ohm", "0.1"], "--bias-ohm: '0.1' is outside 1..1e+08 ohm"),
    (["design", "--bias-ohm", "1k/2k/3k"], "is not a bias resistance"),
    (["design", "--circuit", "color-organ-ideal", "--bias-ohm", "10k"],
     "circuit 'color-organ-ideal' has no probe bias resistors"),
    (["calibrate", "--sim", "--bias-ohm", "20x"], "--bias-ohm: '20x' is not a bias"),
    (["fit", "nofile.csv", "--bias-ohm", "2.2M"], "is not a bias resistance"),
    (["fit", "nofile.csv", "--bias-ohm", "-5k"], "--bias-ohm: '-5k' is outside"),
])
def test_bad_bias_is_one_line(argv, what, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err, out = invoke(argv)
    assert list(tmp_path.iterdir()) == []          # no session folder, nothing written
    assert code != 0 and out == ""
    assert what in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_design_takes_the_bias_into_its_parts(capsys):
    """design with a heavier probe load: the same target asks for other values where the
    probe loads a section (ideal parts before rounding move)."""
    code, _, out = invoke(["design", "--json"])
    code2, _, out2 = invoke(["design", "--json", "--bias-ohm", "2k"])
    assert code == code2 == 0
    a, b = json.loads(out)["parts"], json.loads(out2)["parts"]
    moved = {k: b[k]["ideal_ohm"] / a[k]["ideal_ohm"] - 1 for k in a}
    assert max(abs(v) for v in moved.values()) > 0.01, moved
