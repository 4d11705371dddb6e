"""Fast start: only fitting loads torch.

Each command runs in a fresh interpreter (torch, once imported, stays in ``sys.modules``)
and reports whether ``torch`` was imported by the time it exited. This checks behaviour,
not time: ``benchmarks/bench_startup.py`` measures the time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent

#: run hostctl in this interpreter, optionally against a fake probe on a real pty
RUNNER = r"""
import sys
args = sys.argv[1:]
code = 0
try:
    from hostctl.cli import main
    if "PTY" in args:
        from fakeprobe import FakeDevice, PtyFake
        with PtyFake(FakeDevice()) as fake:
            args = [fake.path if a == "PTY" else a for a in args]
            main(args)
    else:
        main(args)
except SystemExit as e:
    code = e.code
finally:
    sys.stderr.write("\nTORCH-LOADED=%s\n" % ("torch" in sys.modules))
sys.exit(code)
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, bool]:
    """(exit code, stdout+stderr, torch imported?) of ``hostctl ARGS`` in a fresh python."""
    e = dict(env or os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE)])   # hostctl, tests/fakeprobe
    p = subprocess.run([sys.executable, "-c", RUNNER, *args],
                       capture_output=True, text=True, timeout=120, env=e, cwd=ROOT)
    tail = [ln for ln in p.stderr.splitlines() if ln.startswith("TORCH-LOADED=")]
    assert tail, p.stderr
    return p.returncode, p.stdout + p.stderr, tail[-1] == "TORCH-LOADED=True"


@pytest.mark.parametrize("args", [
    ("--help",),
    ("design",),
    ("design", "--led-threshold", "low=0.5,band=0.6,high=0.8", "--json"),
    ("devices", "--no-probe"),
    ("devices", "--port", "PTY"),
    ("probe", "--port", "PTY"),
    ("tone", "--help"),
    ("calibrate", "--help"),
    ("check", "--help"),
    ("report", "--help"),
    ("compare", "--help"),
])
def test_command_does_not_import_torch(args: tuple[str, ...]) -> None:
    code, out, torch_loaded = run_cli(*args)
    assert code == 0, out
    assert not torch_loaded, f"hostctl {' '.join(args)} imported torch:\n{out}"


@pytest.mark.sound_server
def test_tone_plays_without_torch() -> None:
    import audio_server

    try:
        env = audio_server.start_pulse()
    except RuntimeError as e:
        pytest.skip(f"no audio server to play into: {e}")
    code, out, torch_loaded = run_cli("tone", "1000", "--duration", "0.2", env=env)
    assert code == 0, out
    assert "playing 1000 Hz" in out
    assert not torch_loaded


def test_fit_does_import_torch(tmp_path: Path) -> None:
    """The check is real: the one command that fits does load torch."""
    code, out, torch_loaded = run_cli("fit", str(ROOT / "examples/notebook_gain.csv"),
                                      "--circuit", "color-organ-ideal")
    assert code == 0, out
    assert torch_loaded
