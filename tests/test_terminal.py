"""The terminal: tables and the progress bar fit the window, the bar completes, the files
written are named; -h, -v (serial trace), -q; exit codes documented."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from hostctl.cli import invoke

ROOT = Path(__file__).parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def run_in_pty(cols: int, *args: str, cwd: Path = ROOT, timeout: float = 300
               ) -> tuple[int, str]:
    """``hostctl ARGS`` on a real pseudo-terminal of ``cols`` columns: (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the terminal
        # an explicit environment: readline (loaded by the test runner) puts COLUMNS and
        # LINES into the C environment, which would override the terminal's size
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["PYTHONPATH"] = str(ROOT)
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "hostctl", *args], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:           # EIO: the child closed the terminal
            break
        if not chunk:
            break
        buf += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), buf.decode("utf-8", "replace")


def screen_lines(out: str) -> list[str]:
    """What the terminal shows line by line: every \\r-overwritten segment counts."""
    return [seg for ln in ANSI.sub("", out).split("\n") for seg in ln.split("\r")]


@pytest.mark.parametrize("cols", [60, 120])
def test_calibrate_fits_the_terminal_and_the_bar_completes(tmp_path: Path, cols: int) -> None:
    out = tmp_path / "r"
    code, text = run_in_pty(cols, "calibrate", "--sim", "bench", "--seed", "3", "--out", "r",
                            "--no-plot", cwd=tmp_path)
    # exit 1 = the fit is NOT TRUSTED: the bench board is the passive build, which the
    # closed-form fit cannot follow yet (issue 12); the screen layout is what is tested
    assert code in (0, 1), text
    lines = screen_lines(text)
    too_wide = [ln for ln in lines if len(ln.rstrip()) > cols]
    assert not too_wide, too_wide
    bars = [ln for ln in lines if ln.startswith("tones")]
    assert len(bars) >= 4, text          # the reference and the designed batch
    last = re.search(r"(\d+)/(\d+)", bars[-1])
    assert last and last.group(1) == last.group(2), bars[-1]       # the bar ends full
    assert "[" + "#" * 10 in bars[-1] and "-]" not in bars[-1]
    # the table says what it is
    body = "\n".join(lines)
    assert "installed" in body and "fitted C, 95%" in body and "buy E24" in body
    assert "why these parts:" in body
    # and where the files are
    wrote = body[body.index("wrote:"):]
    for name in ("session.csv", "report.json"):
        assert f"r/{name}" in wrote and (out / name).exists()


@pytest.mark.parametrize("cols", [60, 120])
def test_fit_and_design_tables_fit_columns(monkeypatch, cols: int) -> None:
    monkeypatch.setenv("COLUMNS", str(cols))
    for args in (["fit", str(ROOT / "examples/notebook_gain.csv"), "--circuit",
                  "color-organ-ideal"],
                 ["design", "--series", "E12", "--led-threshold", "0.5"],
                 ["--help"], ["calibrate", "--help"]):
        code, err, out = invoke(args)
        assert code == 0, err
        limit = cols if args[-1] != "--help" else max(cols, 80)   # help: 80 columns
        wide = [ln for ln in out.splitlines() if len(ln) > limit]
        assert not wide, (args, wide)
    if cols >= 80:   # at 80 and more nothing is dropped: the corner column is there
        code, err, out = invoke(["fit", str(ROOT / "examples/notebook_gain.csv")])
        assert "corner Hz" in out


def test_exit_codes_are_documented() -> None:
    code, _, out = invoke(["-h"])
    assert code == 0
    readme = (ROOT / "README.md").read_text()
    for c, what in (("0", "passed"), ("1", "NOT TRUSTED"), ("2", "bad input"),
                    ("3", "probe"), ("4", "sound card"), ("130", "interrupted")):
        assert re.search(rf"^\s+{c}\s+.*{what}", out, re.M), (c, out)
        assert re.search(rf"^\|\s*`?{c}`?\s*\|.*{what}", readme, re.M), c


def test_dash_h_on_a_command() -> None:
    code, _, out = invoke(["probe", "-h"])
    assert code == 0 and "--port" in out


def test_verbose_traces_the_serial_lines() -> None:
    code, err, out = invoke(["-v", "probe", "--port", "sim://?board=bench&seed=1"])
    assert code == 0, err
    sent = [ln for ln in err.splitlines() if " > " in ln]
    got = [ln for ln in err.splitlines() if " < " in ln]
    assert any(re.search(r"> \d+ HELLO", ln) for ln in sent), err
    assert any(re.search(r"< \d+ OK MEASURE ms=", ln) for ln in got), err
    code, err, out = invoke(["probe", "--port", "sim://?board=bench&seed=1"])
    assert code == 0 and " > " not in err


def test_quiet_prints_no_progress(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "hostctl", "-q", "calibrate", "--sim", "bench",
                        "--seed", "3", "--out", str(tmp_path / "q"), "--no-plot"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode in (0, 1), p.stderr     # 1: NOT TRUSTED on the passive bench board
    assert p.stderr == "" and "wrote:" in p.stdout
