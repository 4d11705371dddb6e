"""Sessions are never mixed: one writer, the same probe, the options the user gave.

A run stopped early (``disconnect@N`` on ``sim://``) leaves a session to resume; each
test then resumes it the wrong way (refused in one line, before a tone plays) or the
right way. Also: a port held by another program, a lost audio path, a second writer,
a stale lock, and text another process writes into the probe's pty.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_reliability import Served, data_rows, spawn, wait_rows

from hostctl.cli import invoke
from hostctl.errors import DeviceError

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--no-plot", "--json", "--max-tones", "16", "--window-ms", "50"]
URL = "sim://?board=notebook&seed={seed}"


def stopped_session(out: Path, *extra: str, seed: int = 3) -> None:
    """A session whose run stopped (probe unplugged) after its first few tones."""
    code, err, _ = invoke(["calibrate", *FAST, "--out", str(out), *extra, "--port",
                           URL.format(seed=seed) + "&faults=disconnect@6"])
    assert code == 3 and f"--resume {out}" in err, err
    assert data_rows(out / "session.csv") > 0


def one_line(code: int, err: str, expect: int) -> str:
    assert code == expect, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def header(out: Path) -> list[str]:
    return [ln for ln in (out / "session.csv").read_text().splitlines() if ln.startswith("#")]


def resume(out: Path, *extra: str, seed: int = 3) -> tuple[int, str, str]:
    return invoke(["calibrate", "--no-plot", "--json", "--resume", str(out), *extra,
                   "--port", URL.format(seed=seed)])


# ------------------------------------------------------------------ identity
def test_resume_on_another_board_is_refused_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "run"
    stopped_session(out)
    rows = data_rows(out / "session.csv")
    line = one_line(*resume(out, seed=4)[:2], 2)
    assert "recorded with another probe" in line and "seed=3" in line and "seed=4" in line
    assert data_rows(out / "session.csv") == rows          # nothing measured, nothing mixed
    code, err, stdout = resume(out, "--force", seed=4)
    assert code in (0, 1), err
    assert json.loads(stdout)["run"]["tones"] >= 4


def test_resume_of_a_sim_run_with_sim_option_is_not_blamed_on_the_user(tmp_path: Path) -> None:
    out = tmp_path / "run"
    stopped_session(out, seed=0)
    code, err, _ = invoke(["calibrate", "--no-plot", "--json", "--resume", str(out),
                           "--sim", "notebook", "--seed", "0"])
    assert code in (0, 1), err
    assert "not both" not in err


# ------------------------------------------------------------------ options on resume
def test_options_on_resume_apply_or_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "t.toml"
    target.write_text("[corners]\nlow = 800\nband = [1000, 4000]\nhigh = 5000\n")
    out = tmp_path / "run"
    stopped_session(out, "--target", str(target))
    for opt, val in (("--mode", "led"), ("--capacitance", "2.2e-6"), ("--level", "-12")):
        line = one_line(*resume(out, opt, val)[:2], 2)
        assert f"{opt} cannot change on resume" in line
    # the target file changed since: refused until it is given again (a new segment)
    target.write_text("[corners]\nlow = 700\nband = [1000, 4000]\nhigh = 5000\n")
    line = one_line(*resume(out)[:2], 2)
    assert "changed since the session started" in line and str(target) in line
    code, err, stdout = resume(out, "--target", str(target), "--max-tones", "14",
                               "--precision", "5%")
    assert code in (0, 1), err
    rep = json.loads(stdout)
    assert rep["run"]["tones"] <= 14 and rep["run"]["precision_asked"] == 0.05
    assert rep["target"]["corners_hz"]["low"] == [700.0]
    head = header(out)
    seg = head[[i for i, ln in enumerate(head) if ln.startswith("# resumed")][-1]:]
    assert "# max_tones: 14" in seg and "# precision: 0.05" in seg
    assert any(ln.startswith("# target_sha256: ") for ln in seg)


# ------------------------------------------------------------------ audio lost
def test_lost_audio_path_stops_and_resume_plays_the_tones(tmp_path: Path,
                                                          monkeypatch) -> None:
    from hostctl.errors import AudioError
    from sims.tones import SimToneOutput

    real = SimToneOutput.wait         # every tone played, queued or not, waits for its cue
    calls = {"n": 0}

    def dying(self, cue):
        calls["n"] += 1
        if calls["n"] > 4:                # the reference and 3 of the designed batch
            raise AudioError("audio device 'sim' stopped mid-run")
        return real(self, cue)

    monkeypatch.setattr(SimToneOutput, "wait", dying)
    out = tmp_path / "run"
    code, err, _ = invoke(["calibrate", *FAST, "--out", str(out), "--port",
                           URL.format(seed=0)])
    line = one_line(code, err, 4)
    assert "stopped mid-run" in line and f"--resume {out}" in line
    text = (out / "session.csv").read_text()
    assert "not-played" not in text and not (out / "report.json").exists()
    monkeypatch.setattr(SimToneOutput, "wait", real)
    code, err, stdout = resume(out, seed=0)
    assert code in (0, 1), err
    rep = json.loads(stdout)
    assert rep["run"]["tones"] >= 4 and not [p for p in rep["run"]["problems"]
                                              if "not played" in p]


# ------------------------------------------------------------------ one writer
def test_second_writer_refused_and_stale_lock_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = spawn(out)
    session = out / "session.csv"
    try:
        wait_rows(proc, session, 6)
        proc.send_signal(signal.SIGSTOP)      # alive, holding the session
        rows = data_rows(session)
        line = one_line(*resume(out, seed=0)[:2], 2)
        assert f"session is in use by process {proc.pid}" in line
        assert data_rows(session) == rows
    finally:
        proc.kill()
        proc.communicate()
    # the holder died: its lock is stale, the next resume takes it over
    assert (out / "session.lock").exists()
    code, err, _ = resume(out, seed=0)
    assert code in (0, 1), err
    rows = [ln.split(",") for ln in session.read_text().splitlines()
            if ln and not ln.startswith(("#", "frequency_hz"))]
    good = [(r[0], r[1], r[6]) for r in rows if len(r) == 10 and not r[9]]
    assert len(good) == len(set(good))         # no tone measured twice


# ------------------------------------------------------------------ the port
@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_port_held_by_another_program_is_busy() -> None:
    import serial

    from hostctl.device import open_probe

    master, slave = os.openpty()
    name = os.ttyname(slave)
    holder = serial.Serial(name, exclusive=True)
    try:
        with pytest.raises(DeviceError, match=f"port busy: {name} is busy"):
            open_probe(name, boot_timeout_s=0.5)
    finally:
        holder.close()
        os.close(master)
        os.close(slave)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_text_another_process_writes_into_the_pty_is_not_a_firmware_problem(
        tmp_path: Path) -> None:
    s = Served()
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "fh = open(sys.argv[1], 'wb', buffering=0)\n"
         "for i in range(400):\n"
         "    fh.write(b'hello from cat\\n' if i % 2 else b'2 FOO\\n')\n"
         "    time.sleep(0.03)\n", s.pty])
    try:
        time.sleep(0.1)
        code, err, stdout = invoke(["calibrate", *FAST, "--out", str(tmp_path / "run"),
                                    *s.args()])
    finally:
        writer.kill()
        writer.communicate()
        s.stop()
    assert "reflash" not in err and "firmware" not in err, err
    assert code in (0, 1), err
    assert json.loads(stdout)["run"]["tones"] >= 4
