"""Faults on the wire: `hostctl calibrate` finishes right, or stops with one line and resumes.

Every fault of sims/faults.py is run through the whole CLI in-process on ``sim://`` URLs
(simulated time: fast), the key ones through a real pseudo-terminal served by
``python -m sims.bench serve``, and Ctrl-C / kill -9 against a real subprocess.
"Right" means every fitted corner within 1% of the fault-free run's with the same
settings (itself within 2% of the notebook board's true 800, 4000, 1000, 5000 Hz at this
small 20-tone budget).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hostctl.cli import invoke

ROOT = Path(__file__).resolve().parents[1]
TRUTH = {"R_low": 800.0, "R_band_low": 4000.0, "R_band_high": 1000.0, "R_high": 5000.0}
CLEAN = "sim://?board=notebook&seed=0"
FAST = ["--no-plot", "--json", "--max-tones", "20", "--window-ms", "100"]


cli = invoke   # hostctl in-process: (exit code, stderr, stdout)


_BASELINE: dict[str, float] = {}


def baseline() -> dict[str, float]:
    """Corners of the fault-free run with the same settings (computed once)."""
    if not _BASELINE:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            code, err, out = cli(["calibrate", *FAST, "--out", f"{d}/run", "--port", CLEAN])
        assert code == 0, err
        _BASELINE.update(json.loads(out)["fit"]["corner_hz"])
        for k, f in TRUTH.items():
            assert abs(_BASELINE[k] / f - 1) < 0.02, (k, _BASELINE[k], f)
    return _BASELINE


def corners_ok(report: dict, tol: float = 0.01) -> None:
    """Each corner within 1% of the fault-free run's or of the truth."""
    got, ref = report["fit"]["corner_hz"], baseline()
    for k, f in ref.items():
        err = min(abs(got[k] / f - 1), abs(got[k] / TRUTH[k] - 1))
        assert err < tol, (k, got[k], f, TRUTH[k])


def data_rows(session: Path) -> int:
    text = session.read_text()
    return sum(1 for ln in text.splitlines()
               if ln and not ln.startswith(("#", "frequency_hz")))


def assert_one_line_stop(code: int, err: str, expect_code: int, out: Path) -> None:
    assert code == expect_code, err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("hostctl: error:")]
    assert len(errors) == 1, err
    assert f"--resume {out}" in errors[0]
    assert (out / "session.csv").exists() and not (out / "report.json").exists()


def resume_right(out: Path, port: str | None = CLEAN) -> dict:
    """``--resume DIR [--port PORT]`` finishes right; without a port, the session's own."""
    before = data_rows(out / "session.csv")
    code, err, stdout = cli(["calibrate", "--no-plot", "--json", "--resume", str(out),
                             *(["--port", port] if port else [])])
    assert code == 0, err
    rep = json.loads(stdout)
    corners_ok(rep)
    assert data_rows(out / "session.csv") >= before   # nothing recorded was lost
    return rep


# ------------------------------------------------------------------ in-process, sim://
@pytest.mark.parametrize("faults", [
    "drop:0.003", "corrupt:0.003", "dup:0.003", "drop:0.001,corrupt:0.001,dup:0.001",
    "delay:3@12", "reset@12", "reset@12,reset@13,reset@20",
    "reset@12,reset@13,reset@14,reset@15", "unplug:1@12", "mute@6", "mute@2",
])
def test_fault_finishes_right(tmp_path: Path, faults: str) -> None:
    out = tmp_path / "run"
    code, err, stdout = cli(["calibrate", *FAST, "--out", str(out),
                             "--port", f"{CLEAN}&faults={faults}"])
    assert code == 0, err
    assert "Traceback" not in err
    rep = json.loads(stdout)
    corners_ok(rep)
    if faults == "mute@6":
        # the silent window is recorded, flagged, re-measured - and never fitted
        probs = " ".join(rep["run"]["problems"])
        assert "re-measured (no-reference)" in probs
        assert "no-reference" in (out / "session.csv").read_text()


@pytest.mark.parametrize("faults,code", [
    ("disconnect@6", 3),           # unplugged for good (mid-batch)
    ("unplug:60@6", 3),            # re-plugged too late
    ("delay:10@6", 3),             # a reply later than every retry
])
def test_fault_stops_cleanly_and_resumes(tmp_path: Path, faults: str, code: int) -> None:
    out = tmp_path / "run"
    got, err, _ = cli(["calibrate", *FAST, "--out", str(out),
                       "--port", f"{CLEAN}&faults={faults}"])
    assert_one_line_stop(got, err, code, out)
    assert data_rows(out / "session.csv") > 0
    resume_right(out)


def test_resume_of_a_sim_run_reopens_its_url(tmp_path: Path) -> None:
    """The session's `port` is the sim URL; resume reuses it and the board's installed R."""
    out = tmp_path / "run"
    code, err, _ = cli(["calibrate", *FAST, "--out", str(out),
                        "--port", f"{CLEAN}&faults=disconnect@6"])
    assert code == 3
    # drop the rest of the faulty URL's budget by resuming on the clean board (no --port
    # would replay the faults on a fresh bench: still fine, but slower to converge)
    rep = resume_right(out)
    installed = dict(kv.split("=") for kv in
                     rep_meta(out)["installed"].split(","))
    assert math.isclose(float(installed["R_low"]), 198.94367886486918)
    assert rep["capacitance"]["source"].startswith("measured")


def rep_meta(out: Path) -> dict[str, str]:
    from hostctl.sessionlog import read_session

    return read_session(out / "session.csv").meta


@pytest.mark.parametrize("bad,flag", [
    ({"channel": 2, "min": 0, "max": 1023}, "adc-rail"),       # a channel stuck at the rails
    ({"channel": 0, "min": 0, "max": 1023}, "ref-clipping"),   # the reference clipping
    ({"led": 1}, "led-inconsistent"),                           # LED lit with no signal
])
def test_suspect_reading_is_flagged_and_remeasured(tmp_path: Path, monkeypatch, bad: dict,
                                                   flag: str) -> None:
    """One reading is doctored; it is recorded with its flag, re-measured, never fitted."""
    import dataclasses

    from hostctl.device import Probe

    orig, calls = Probe.measure, {"n": 0}

    def measure(self: Probe, ms: int = 200):
        r = orig(self, ms)
        calls["n"] += 1
        if calls["n"] == 4:     # silence (the rate, the floor), 1 kHz, the design's lowest
            if "led" in bad:
                lit = list(r.led_lit)
                lit[2] = r.n // 3         # the high LED lit there: its gain is under 0.05
                return dataclasses.replace(r, led_lit=tuple(lit))
            a = list(r.analog)
            a[bad["channel"]] = dataclasses.replace(a[bad["channel"]], min=bad["min"],
                                                    max=bad["max"])
            return dataclasses.replace(r, analog=tuple(a))
        return r

    monkeypatch.setattr(Probe, "measure", measure)
    out = tmp_path / "run"
    code, err, stdout = cli(["calibrate", *FAST, "--out", str(out), "--port", CLEAN])
    assert code == 0, err
    rep = json.loads(stdout)
    corners_ok(rep)
    assert any("re-measured" in p and flag in p for p in rep["run"]["problems"])
    lines = [ln for ln in (out / "session.csv").read_text().splitlines()
             if ln[:1].isdigit()]
    first = sorted({float(ln.split(",")[0]) for ln in lines})[0]   # the doctored tone
    rows = [ln for ln in lines if float(ln.split(",")[0]) == first]
    assert len(rows) == 6 and sum(flag in ln for ln in rows) >= 1


def test_tone_the_sound_card_cannot_play_is_flagged(tmp_path: Path) -> None:
    board = (ROOT / "sims/boards/notebook.toml").read_text().replace(
        "[audio]\n", "[audio]\nmax_hz = 14000\n")
    bpath = tmp_path / "capped.toml"
    bpath.write_text(board)
    out = tmp_path / "run"
    code, err, stdout = cli(["calibrate", *FAST, "--out", str(out), "--sim", str(bpath)])
    assert code in (0, 1), err
    rep = json.loads(stdout)
    corners_ok(rep)
    # the design's top tone (15 kHz: 3x beyond the upper corners) is refused: flagged in
    # the report and the session
    refused = [p for p in rep["run"]["problems"] if "not played" in p]
    assert len(refused) == 1 and float(refused[0].split(" Hz")[0]) > 14000
    assert re.search(r"^(1\d{4}|20000)(\.\d+)?,low,,,,,-6\.0,,,not-played,$",
                     (out / "session.csv").read_text(), re.M)


@pytest.mark.slow
def test_soak_small(benchmark_script) -> None:
    """benchmarks/soak.py with 15 random fault mixes: none wrong, none crashed."""
    soak = benchmark_script("soak")
    res = soak.soak(15, seed=3)
    c = res["counts"]
    bad = [r for r in res["runs"] if r["outcome"] in ("wrong", "crashed")]
    assert c["wrong"] == 0 and c["crashed"] == 0, bad
    assert c["finished"] + c["resumed"] == 15
    assert c["resumed"] > 0 and c["finished"] > 0     # both paths were exercised


# ------------------------------------------------------------------ Ctrl-C and kill -9
def _ctrl_c_as_at_a_terminal() -> None:
    """A suite started in the background by a non-interactive shell inherits SIGINT ignored,
    and Python then keeps ignoring it: give the child what a terminal gives it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hostctl", "calibrate", "--sim", "--out", str(out),
         *FAST[:1], "--max-tones", "30", "--window-ms", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        preexec_fn=_ctrl_c_as_at_a_terminal)


def wait_rows(proc: subprocess.Popen, session: Path, n: int, timeout: float = 300) -> None:
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        if session.exists() and data_rows(session) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no measurements recorded in time")


def test_ctrl_c_stops_with_one_line_then_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = spawn(out)
    wait_rows(proc, out / "session.csv", 9)          # three tones
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert last.startswith("hostctl: error: interrupted") and f"--resume {out}" in last
    # no --port: the session's own `port` (the --sim URL) is reopened, with the sim
    # board's installed values from the session header
    assert rep_meta(out)["port"] == CLEAN
    rep = resume_right(out, port=None)
    assert rep["capacitance"]["source"].startswith("measured")


def test_kill_9_at_random_points_then_resume(tmp_path: Path) -> None:
    rng = random.Random(7)
    for i in range(2):
        out = tmp_path / f"run{i}"
        proc = spawn(out)
        wait_rows(proc, out / "session.csv", rng.randrange(1, 19))   # of 7 tones x 3 rows
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
        resume_right(out)


# ------------------------------------------------------------------ real pseudo-terminal
class Served:
    """`python -m sims.bench serve` as a process: its pty and control socket."""

    def __init__(self, faults: str = "", link: Path | None = None) -> None:
        cmd = [sys.executable, "-m", "sims.bench", "serve", "--board", "notebook",
               "--seed", "0"]
        if link is not None:    # the port by a name of its own: an unplug removes it, so a
            cmd += ["--link", str(link)]    # re-open never finds another test's new pty
        if faults:
            cmd += ["--faults", faults]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        self.pty = self.control = ""
        assert self.proc.stdout is not None
        while not (self.pty and self.control):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"serve did not start: {self.proc.stderr.read()}")
            key, _, val = line.strip().partition(" ")
            if key == "PTY":
                self.pty = val
            elif key == "CONTROL":
                self.control = val

    def args(self) -> list[str]:
        return ["--port", self.pty, "--audio-device", f"sim:{self.control}"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def served():
    started: list[Served] = []

    def start(faults: str = "") -> Served:
        s = Served(faults, Path(tempfile.mkdtemp(prefix="hostctl-tty-")) / "ttyACM0")
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
        shutil.rmtree(Path(s.pty).parent, ignore_errors=True)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("faults", ["drop:0.001,corrupt:0.001,dup:0.001", "reset@12",
                                    "delay:1.5@12"])
def test_pty_fault_finishes_right(tmp_path: Path, served, faults: str) -> None:
    s = served(faults)
    code, err, stdout = cli(["calibrate", *FAST, "--out", str(tmp_path / "run"), *s.args()])
    assert code == 0, err
    corners_ok(json.loads(stdout))


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_pty_unplug_stops_cleanly_and_resumes(tmp_path: Path, served, monkeypatch) -> None:
    import hostctl.device as device

    monkeypatch.setattr(device, "RECONNECT_S", 1.0)   # do not wait 5 s for a re-plug
    out = tmp_path / "run"
    s = served("disconnect@6")
    code, err, _ = cli(["calibrate", *FAST, "--out", str(out), *s.args()])
    assert_one_line_stop(code, err, 3, out)
    assert not os.path.lexists(s.pty), "the unplugged port's name is still there"
    clean = served()
    code, err, stdout = cli(["calibrate", "--no-plot", "--json", "--resume", str(out),
                             *clean.args()])
    assert code == 0, err
    corners_ok(json.loads(stdout))
