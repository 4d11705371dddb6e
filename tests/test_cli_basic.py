"""The CLI shell: fast help, one-line errors, `hostctl design`."""

import json
import subprocess
import sys

import pytest


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hostctl", *args], capture_output=True,
                          text=True, timeout=120, **kw)


def test_help_does_not_import_torch():
    code = ("import sys\nfrom hostctl.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported by --help'\n"
            "for c in ('calibrate','fit','design','devices','probe','tone'):\n"
            "    try:\n        main([c, '--help'])\n    except SystemExit:\n        pass\n"
            "    assert 'torch' not in sys.modules, c\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_design_table_and_json():
    # the notebook's math (no probe loading): the corners are 1/(2 pi R C)
    r = run("design", "--circuit", "color-organ-ideal")
    assert r.returncode == 0, r.stderr
    assert "R_low" in r.stdout and "795.8 Hz" in r.stdout
    r = run("design", "--json", "--series", "e96", "--circuit", "color-organ-ideal")
    d = json.loads(r.stdout)
    assert d["series"] == "E96"
    assert d["parts"]["R_band_high"]["value_ohm"] == 158.0


def test_design_from_target_file(tmp_path):
    t = tmp_path / "t.toml"
    t.write_text("[corners]\nlow = 1000\nband = [500, 2000]\nhigh = 8000\n")
    r = run("design", "--target", str(t), "--json", "--capacitance", "1e-7",
            "--circuit", "color-organ-ideal")
    d = json.loads(r.stdout)
    assert d["parts"]["R_low"]["ideal_ohm"] == pytest.approx(1591.549, rel=1e-6)
    assert d["parts"]["R_low"]["value_ohm"] == 1600.0


@pytest.mark.parametrize("args,msg", [
    (["design", "--capacitance", "-1"], "positive number of farads"),
    (["design", "--capacitance", "abc"], "not a number"),
    (["design", "--series", "E7"], "unknown series 'E7'"),
    (["design", "--circuit", "nope"], "unknown circuit 'nope'"),
    (["design", "--target", "/nonexistent.toml"], "/nonexistent.toml"),
])
def test_bad_values_are_one_line_exit_2(args, msg):
    r = run(*args)
    assert r.returncode == 2
    assert msg in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_bad_toml_target(tmp_path):
    t = tmp_path / "t.toml"
    t.write_bytes(b"[corners\nlow = ")
    r = run("design", "--target", str(t))
    assert r.returncode == 2 and "not valid TOML" in r.stderr and str(t) in r.stderr
