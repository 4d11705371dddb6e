"""The bench profile: user file < ./hostctl.toml < HOSTCTL_* < the command line; the
session header records the resolved bench and --resume reuses it."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hostctl.errors import InputError
from hostctl.profile import load
from hostctl.sessionlog import read_session

ROOT = Path(__file__).parent.parent


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """(user config dir, working dir), with the environment cleared of HOSTCTL_*."""
    xdg, cwd = tmp_path / "xdg", tmp_path / "work"
    (xdg / "hostctl").mkdir(parents=True)
    cwd.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    for k in list(os.environ):
        if k.startswith("HOSTCTL_"):
            monkeypatch.delenv(k)
    return xdg / "hostctl" / "config.toml", cwd


def test_precedence_user_file_project_file_env(dirs) -> None:
    user, cwd = dirs
    user.write_text('port = "/dev/user"\nseries = "E12"\nsettle = 0.2\naudio_rate = 44100\n')
    (cwd / "hostctl.toml").write_text('port = "/dev/project"\nseries = "E96"\n'
                                      'target = "organ.toml"\n'
                                      'installed = {R_low = 200, R_high = 33}\n')
    p = load(cwd, env={})
    assert p.values == {"port": "/dev/project", "series": "E96", "settle": 0.2,
                        "audio_rate": 44100, "target": str(cwd / "organ.toml"),
                        "installed": "R_low=200,R_high=33"}
    assert p.source["settle"] == str(user) and p.source["port"] == str(cwd / "hostctl.toml")
    p = load(cwd, env={"HOSTCTL_PORT": "/dev/env", "HOSTCTL_SETTLE": "0.3"})
    assert p.values["port"] == "/dev/env" and p.values["settle"] == 0.3
    assert p.source["port"] == "$HOSTCTL_PORT"
    assert p.default_map()["calibrate"]["settle_s"] == 0.3
    assert p.default_map()["tone"] == {"sample_rate": 44100}


@pytest.mark.parametrize("text,frag", [('colour = "red"\n', "unknown key 'colour'"),
                                       ("audio_rate = 0.5\n", "audio_rate"),
                                       ("settle = true\n", "settle"),
                                       ("port = [1\n", "not valid TOML")])
def test_bad_profile_is_one_line(dirs, text: str, frag: str) -> None:
    _, cwd = dirs
    (cwd / "hostctl.toml").write_text(text)
    with pytest.raises(InputError, match=frag) as e:
        load(cwd, env={})
    assert "hostctl.toml" in str(e.value)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "hostctl", "design"], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert frag in r.stderr


def _calibrate(cwd: Path, env: dict[str, str], *args: str) -> dict[str, str]:
    out = cwd / f"run{len(list(cwd.glob('run*')))}"
    r = subprocess.run([sys.executable, "-m", "hostctl", "-q", "calibrate", "--sim", "bench",
                        "--seed", "3", "--out", str(out), "--no-plot", "--max-tones", "12",
                        *args], cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 1), r.stderr
    return read_session(out / "session.csv").meta


def test_calibrate_takes_file_then_env_then_command_line(dirs) -> None:
    user, cwd = dirs
    user.write_text('series = "E12"\nsettle = 0.07\n')
    # a real bench's port and sound card in the profile do not hijack --sim
    (cwd / "hostctl.toml").write_text('series = "E96"\nport = "/dev/ttyNOPE"\n'
                                      'audio_device = "no such card"\n'
                                      'installed = "R_low=200,R_band_low=39,R_band_high=160,'
                                      'R_high=33"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTCTL_")}
    meta = _calibrate(cwd, env)
    assert meta["series"] == "E96" and meta["settle_s"] == "0.07"
    assert meta["installed"].startswith("R_low=200.0,R_band_low=39.0")
    assert meta["audio_device"] == "" and meta["port"].startswith("sim://")
    meta = _calibrate(cwd, {**env, "HOSTCTL_SERIES": "E24", "HOSTCTL_SETTLE": "0.09"})
    assert meta["series"] == "E24" and meta["settle_s"] == "0.09"
    meta = _calibrate(cwd, {**env, "HOSTCTL_SERIES": "E24"}, "--series", "E12",
                      "--settle", "0.01")
    assert meta["series"] == "E12" and meta["settle_s"] == "0.01"


def _banner(proc: subprocess.Popen, timeout_s: float = 60) -> dict[str, str]:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    got: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < 2 and time.monotonic() < deadline:
        try:
            word, _, rest = lines.get(timeout=0.5).strip().partition(" ")
        except queue.Empty:
            assert proc.poll() is None, proc.stderr.read()
            continue
        if word in ("PTY", "CONTROL"):
            got[word] = rest
    assert len(got) == 2, got
    return got


def test_resume_reuses_the_sessions_audio_device(tmp_path: Path) -> None:
    """A run through a virtual bench's control socket, cut after 3 tones (as a kill would
    leave it), resumed with no --port and no --audio-device: the tones must reach the same
    bench again (the default sound card would give no reference, or no card at all)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOSTCTL_") and k != "PULSE_SERVER"}
    env["PYTHONPATH"] = str(ROOT)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "none")
    # bench-ideal: the closed-form fit is trusted on it (exit 0); the passive bench board
    # needs the netlist fit (issue 12)
    serve = subprocess.Popen([sys.executable, "-m", "sims.bench", "serve", "--board",
                              "bench-ideal", "--seed", "3"], cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        b = _banner(serve)
        out = tmp_path / "run"
        r = subprocess.run([sys.executable, "-m", "hostctl", "-q", "calibrate", "--port",
                            b["PTY"], "--audio-device", f"sim:{b['CONTROL']}", "--max-tones",
                            "14", "--out", str(out), "--no-plot"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        session = out / "session.csv"
        lines = session.read_text().splitlines(keepends=True)
        head = next(i for i, ln in enumerate(lines) if ln.startswith("frequency_hz"))
        session.write_text("".join(lines[:head + 1 + 9]))
        (out / "report.json").unlink()
        r = subprocess.run([sys.executable, "-m", "hostctl", "-q", "calibrate", "--resume",
                            str(out), "--no-plot"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        data = read_session(session)
        assert data.meta["audio_device"] == f"sim:{b['CONTROL']}"
        assert len(data.rows) > 9 + 9
        heard = [m for m in data.rows[9:] if "no-reference" not in m.flags]
        assert len(heard) == len(data.rows) - 9, [m.flags for m in data.rows[9:]]
        assert sum(m.gain_usable for m in data.rows[9:]) >= 9    # the rest of the 7-tone design
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.communicate()
