"""One answer everywhere: the same session gives the same parts through every command.

calibrate, `hostctl fit SESSION` (and `hostctl report DIR`) go through
hostctl.advice.advise with the session's installed parts, capacitors, target and series.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostctl.cli import invoke

TARGET = """[corners]
low = 700
band = [1100, 3800]
high = 5500

[bands.low]
on = [[20, 600]]
off = [[820, 20000]]
"""


def parts(report: dict) -> dict[str, float]:
    return {r: p["value_ohm"] for r, p in report["recommended"]["parts"].items()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A gain-mode run on the bench-ideal board (one the closed-form fit can model, so
    parts are recommended; the passive bench board needs the netlist fit, issue 12) with a
    target file that is deleted afterwards (the session header must carry it) and
    installed parts unlike the board's."""
    d = tmp_path_factory.mktemp("one")
    tgt = d / "target.toml"
    tgt.write_text(TARGET)
    out = d / "run"
    code, err, _ = invoke(["calibrate", "--sim", "bench-ideal", "--seed", "3", "--out", str(out),
                           "--target", str(tgt), "--series", "E12", "--no-plot", "--json",
                           "--installed", "R_low=200,R_band_low=39,R_band_high=160,R_high=33"])
    assert code in (0, 1), err
    tgt.unlink()
    return out


def test_fit_session_gives_calibrates_parts(run_dir: Path) -> None:
    rep = json.loads((run_dir / "report.json").read_text())
    assert rep["capacitance"]["inferred"] is True
    assert rep["recommended"]["series"] == "E12"
    assert rep["target"]["corners_hz"]["low"] == [700.0]
    code, err, out = invoke(["fit", str(run_dir / "session.csv"), "--json"])
    assert code in (0, 1), err
    again = json.loads(out)
    assert parts(again) == parts(rep)
    assert again["fit"] == {**rep["fit"], "seconds": again["fit"]["seconds"]}
    for key in ("capacitance", "target", "target_check", "pass", "predicted_led_bands_hz",
                "installed_ohm"):
        assert again[key] == rep[key], key
    assert again["recommended"]["chosen_for"] == rep["recommended"]["chosen_for"] == "led"


def test_fit_session_table_names_the_same_parts(run_dir: Path) -> None:
    rep = json.loads((run_dir / "report.json").read_text())
    code, err, out = invoke(["fit", str(run_dir / "session.csv")])
    assert code in (0, 1), err
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("R_")]
    from hostctl.recommend import format_ohm

    assert {r[0]: r[5] for r in rows} == {k: format_ohm(v) for k, v in parts(rep).items()}
    assert all(r[1] == format_ohm(rep["installed_ohm"][r[0]]) for r in rows)
    assert "fitted C, 95%" in out and "LED switches mid-gap" in out


def test_fit_session_overrides(run_dir: Path) -> None:
    """--installed on the command line wins over the header's: the inferred capacitors
    scale with it, and so do the parts."""
    code, err, out = invoke(["fit", str(run_dir / "session.csv"), "--json", "--installed",
                             "R_low=400,R_band_low=78,R_band_high=320,R_high=66"])
    assert code in (0, 1), err
    rep = json.loads((run_dir / "report.json").read_text())
    d = json.loads(out)
    for r, c in d["capacitance"]["value_f"].items():
        assert c == pytest.approx(rep["capacitance"]["value_f"][r] / 2, rel=1e-9)
    assert parts(d) != parts(rep)


def test_report_dir_rebuilds_the_same_run(run_dir: Path, tmp_path: Path) -> None:
    """`hostctl report DIR` from the session alone (report.json deleted, bode.png new)."""
    import shutil

    rep = json.loads((run_dir / "report.json").read_text())
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "report.json").unlink()
    code, err, out = invoke(["report", str(copy), "--json"])
    assert code in (0, 1), err
    again = json.loads(out)
    assert again == json.loads((copy / "report.json").read_text())
    assert parts(again) == parts(rep)
    assert again["fit"] == {**rep["fit"], "seconds": again["fit"]["seconds"]}
    assert again["pass"] == rep["pass"] and again["target_check"] == rep["target_check"]
    assert (copy / "bode.png").stat().st_size > 10_000
    assert again["provenance"]["command"].startswith("hostctl report ")


def test_report_json_provenance_and_mode(run_dir: Path) -> None:
    import os
    import platform

    rep = json.loads((run_dir / "report.json").read_text())
    prov = rep["provenance"]
    import numpy
    import torch

    import hostctl

    assert prov["hostctl"] == hostctl.__version__
    assert prov["torch"] == torch.__version__ and prov["numpy"] == numpy.__version__
    assert prov["command"].startswith("hostctl calibrate --sim bench-ideal --seed 3")
    assert prov["audio_device"] == "virtual bench" and prov["port"].startswith("sim://")
    assert prov["probe"]["fw"].startswith("hostctl-probe/") and prov["host_os"]
    assert platform.system() in prov["host_os"]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("report.json", "session.csv"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_compare_two_runs(run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    other = tmp_path / "other"
    code, err, _ = invoke(["-q", "calibrate", "--sim", "bench-ideal", "--seed", "5", "--out",
                           str(other), "--no-plot"])
    assert code in (0, 1), err
    monkeypatch.setenv("COLUMNS", "80")
    code, err, out = invoke(["compare", str(run_dir), str(other)])
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(ln) <= 80 for ln in lines), lines
    rows = {ln.split()[0] + ("" if " buy" not in ln else " buy"): ln for ln in lines[1:]}
    assert rows["circuit"].count("color-organ") == 2
    a, b = (json.loads((d / "report.json").read_text()) for d in (run_dir, other))
    from hostctl.recommend import format_ohm

    for r in parts(a):
        row = rows[f"{r} buy"]
        assert format_ohm(parts(a)[r]) in row and format_ohm(parts(b)[r]) in row
        mark = row[len("R_band_high buy") + 1]       # labels are padded to the longest
        assert (mark == "*") == (parts(a)[r] != parts(b)[r]), row
    assert any(parts(a)[r] != parts(b)[r] for r in parts(a))    # two different boards
