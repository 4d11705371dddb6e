"""`hostctl fit` from the outside: table and JSON shapes, and one clear line per bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from make_notebook_data import notebook_sets

from hostctl.circuits import NOTEBOOK_VALUES
from hostctl.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ex:
        main(argv)
    out, err = capsys.readouterr()
    return int(ex.value.code or 0), out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fitcli")
    gain, led = notebook_sets("color-organ")
    gain.write_csv(d / "gain.csv")
    led.write_csv(d / "led.csv")
    lp = notebook_sets("lowpass")[0]
    lp.meta = {}
    lp.write_csv(d / "lowpass_nometa.csv")
    return d


def test_table(files, capsys):
    code, out, err = run(["fit", str(files / "gain.csv"), "--circuit", "color-organ"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("part "))
    assert "fitted R, 95%" in lines[head] and "buy E24" in lines[head]
    rows = {ln.split()[0]: ln.split() for ln in lines[head + 1:head + 5]}
    assert set(rows) == set(NOTEBOOK_VALUES)
    assert rows["R_low"][1] == "198.94" and rows["R_low"][-2] == "200"
    assert "800.0" in " ".join(rows["R_low"])


def test_json_gain(files, capsys):
    code, out, err = run(["fit", str(files / "gain.csv"), "--json", "--series", "e96"], capsys)
    assert code == 0, err  # circuit and capacitance come from the file's meta lines
    d = json.loads(out)
    assert d["circuit"] == "color-organ"
    assert set(d) >= {"circuit", "fit", "recommended", "capacitance", "target_check", "pass"}
    f = d["fit"]
    assert f["schema"] == "hostctl-fit/1"
    for r, v in NOTEBOOK_VALUES.items():
        assert abs(f["values"][r] / v - 1) < 1e-9
        lo, hi = f["ci95"][r]
        assert lo <= f["values"][r] <= hi
        assert abs(f["corner_hz"][r] * 2 * math.pi * v * 1e-6 - 1) < 1e-9
        assert d["recommended"]["parts"][r]["series"] == "E96"
    assert d["recommended"]["series"] == "E96" and d["pass"] is True
    assert f["converged"] is True and f["method"] == "gauss-newton"
    assert isinstance(f["iterations"], int) and f["seconds"] > 0 and f["warnings"] == []


def test_json_led(files, capsys):
    """The notebook's LED states (the buffered preset's): its own netlist named, every
    part; as the color-organ family, the builds (buffered, passive) all reproduce the
    states with band-pass values 20-30 % apart, so those parts are withheld, the intervals
    covering every build."""
    cir = Path(__file__).parent.parent / "hostctl/circuits/presets/color-organ.cir"
    code, out, err = run(["fit", str(files / "led.csv"), "--netlist", str(cir), "--json"],
                         capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["fit"]["method"] == "led-interval"
    assert set(d["recommended"]["parts"]) == set(NOTEBOOK_VALUES)
    for r, v in NOTEBOOK_VALUES.items():
        lo, hi = d["fit"]["ci95"][r]
        assert lo <= v <= hi and d["fit"]["ci_method"][r] == "data-consistent"
    code, out, err = run(["fit", str(files / "led.csv"), "--circuit", "color-organ", "--json"],
                         capsys)
    d = json.loads(out)
    assert code == 1 and {"R_band_low", "R_band_high"} <= set(d["recommended"]["withheld"])
    for r, v in NOTEBOOK_VALUES.items():
        lo, hi = d["fit"]["ci95"][r]
        assert lo <= v <= hi


def test_prior_and_notebook_loss_options(files, capsys, tmp_path):
    pf = tmp_path / "prior.toml"
    pf.write_text('[prior]\nR_low = "220@5%"\nR_high = {value = 33, sigma = 0.05}\n')
    code, out, err = run(["fit", str(files / "gain.csv"), "--prior", "R_band_low=39@5%",
                          "--prior-file", str(pf), "--json"], capsys)
    assert code == 0, err
    assert abs(json.loads(out)["fit"]["values"]["R_low"] / 198.94 - 1) < 1e-3
    code, out, err = run(["fit", str(files / "lowpass_nometa.csv"), "--circuit", "lowpass",
                          "--loss", "notebook-mse", "--lr", "1e5", "--steps", "3000", "--json"],
                         capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["fit"]["method"] == "notebook-mse"
    assert abs(d["fit"]["values"]["R_low"] / 198.94 - 1) < 0.02


def _write(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


BAD_FILES = [
    # (name, content, expected fragment incl. line, extra args)
    ("nan_freq", "frequency_hz,channel,gain\n100,low,0.5\nnan,low,0.3\n", ":3: column "
     "'frequency_hz'", []),
    ("neg_freq", "frequency_hz,channel,gain\n100,low,0.5\n-5,low,0.3\n", ":3: column "
     "'frequency_hz'", []),
    ("zero_freq", "# circuit: lowpass\nfrequency_hz,channel,gain\n0,low,0.3\n",
     ":3: column 'frequency_hz'", []),
    ("inf_gain", "frequency_hz,channel,gain\n100,low,inf\n", ":2: column 'gain'", []),
    ("led_2", "frequency_hz,channel,led\n100,low,1\n200,low,2\n", ":3: column 'led'", []),
    ("bad_channel", "frequency_hz,channel,gain\n100,low,0.5\n\n200,treble,0.3\n",
     ":4: column 'channel'", []),
    ("missing_col", "freq,channel,gain\n100,low,0.5\n", ":1: missing required column", []),
    ("no_rows", "frequency_hz,channel\n100,low\n", "no usable rows", []),
    ("not_csv", b"\x00\x01\x02PK\x03\x04", "not a CSV", []),
    ("empty", "", "empty", []),
    ("no_level", "frequency_hz,channel,led\n100,low,1\n", ":2: column 'level_dbfs'",
     ["--led-threshold", "estimate"]),
    ("one_level", "frequency_hz,channel,led,level_dbfs\n100,low,1,-6\n900,low,0,-6\n",
     "two or more tone levels", ["--led-threshold", "estimate"]),
]


@pytest.mark.parametrize("name,content,frag,extra", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_one_line_exit_2(tmp_path, capsys, name, content, frag, extra):
    p = _write(tmp_path / f"{name}.csv", content)
    args = ["fit", p] + (["--circuit", "lowpass"] if "circuit" not in str(content) else [])
    code, out, err = run(args + extra, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert p in lines[0] and frag in lines[0], lines[0]
    assert "Traceback" not in err


BAD_ARGS = [
    (["--circuit", "nope"], "unknown circuit"),
    (["--circuit", "lowpass", "--series", "E7"], "unknown series"),
    (["--circuit", "lowpass", "--capacitance", "0"], "capacitance"),
    (["--circuit", "lowpass", "--capacitance", "-1e-6"], "capacitance"),
    (["--circuit", "lowpass", "--loss", "mae"], "unknown loss"),
    (["--circuit", "lowpass", "--prior", "R_low=220"], "--prior"),
    (["--circuit", "lowpass", "--prior", "R_nope=220@5%"], "not a resistor"),
    (["--circuit", "lowpass", "--led-threshold", "-1"], "--led-threshold"),
    (["--circuit", "lowpass", "--prior-file", "/nonexistent/p.toml"], "no such file"),
    (["--circuit", "lowpass", "--lr", "fast"], "--lr"),
    (["--circuit", "lowpass", "--steps", "0"], "--steps"),
    (["--circuit", "lowpass", "--fixed", "R_low=abc"], "--fixed"),
]


@pytest.mark.parametrize("args,frag", BAD_ARGS, ids=[a[1] for a in BAD_ARGS])
def test_bad_arguments_one_line_exit_2(files, capsys, args, frag):
    code, out, err = run(["fit", str(files / "lowpass_nometa.csv")] + args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and frag in lines[0], err


def test_no_circuit_takes_the_family_of_the_channels(files, capsys, tmp_path):
    """No --circuit: low-only data are a low-pass; channels no family has are refused."""
    code, out, err = run(["fit", str(files / "lowpass_nometa.csv"), "--json"], capsys)
    assert code in (0, 1), err
    assert json.loads(out)["circuit"].startswith("lowpass")
    p = _write(tmp_path / "mid.csv", "frequency_hz,channel,gain\n100,mid,0.5\n200,mid,0.4\n")
    code, out, err = run(["fit", p], capsys)
    assert code == 2 and "match no preset family" in err and len(err.strip().splitlines()) == 1


def test_missing_file(capsys, tmp_path):
    p = str(tmp_path / "nope.csv")
    code, out, err = run(["fit", p, "--circuit", "lowpass"], capsys)
    assert code == 2 and err.strip() == f"hostctl: error: {p}: no such file"


def test_whole_process_no_traceback(tmp_path, files):
    """The real entry point: exit 2, one line on stderr, nothing on stdout."""
    p = _write(tmp_path / "bad.csv", "frequency_hz,channel,gain\n100,low,0.5\n200,low,x\n")
    cp = subprocess.run([sys.executable, "-m", "hostctl", "fit", p, "--circuit", "lowpass"],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 2 and cp.stdout == ""
    assert cp.stderr.strip().splitlines() == [
        f"hostctl: error: {p}:3: column 'gain': 'x' is not a number"]
    cp = subprocess.run([sys.executable, "-m", "hostctl", "fit", str(files / "gain.csv"),
                         "--json"], capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0 and json.loads(cp.stdout)["fit"]["converged"]
