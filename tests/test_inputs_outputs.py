"""Inputs refused before a tone plays, outputs that fail in one line without losing a row.

FIFOs and devices where a file belongs, out-of-range quantities, lookalike digits, unknown
names; ``--out`` that cannot be a folder; a disk that fills mid-session (a real 64 KiB tmpfs
when the tests run as root, else skipped with the reason).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hostctl.cli import invoke

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--no-plot", "--json", "--max-tones", "20", "--window-ms", "100"]
SIM = ["--sim", "notebook"]
CSV = "frequency_hz,channel,gain\n100,low,0.99\n800,low,0.7\n5000,low,0.16\n"


def one_line(code: int, err: str, expect: int) -> str:
    """The run failed with ``expect`` and exactly one error line, no traceback."""
    assert code == expect, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@contextlib.contextmanager
def time_guard(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking open()/read()."""
    def boom(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------ not a regular file
def test_fifo_as_data_file_is_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "f.csv"
    os.mkfifo(fifo)
    # a real process: a blocking open of the FIFO would hang it (the time-out catches that)
    proc = subprocess.run([sys.executable, "-m", "hostctl", "fit", str(fifo),
                           "--circuit", "lowpass"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    line = one_line(proc.returncode, proc.stderr, 2)
    assert f"{fifo}: is a FIFO (named pipe), not a CSV file" in line


@pytest.mark.parametrize("make,kind", [
    (lambda p: os.mkfifo(p), "FIFO"),
    (lambda p: p.mkdir(), "directory"),
])
def test_target_that_is_no_file_is_refused(tmp_path: Path, make, kind: str) -> None:
    t = tmp_path / "t.toml"
    make(t)
    with time_guard(20):
        line = one_line(*invoke(["calibrate", *FAST, *SIM, "--target", str(t),
                                 "--out", str(tmp_path / "run")])[:2], 2)
    assert kind in line and str(t) in line
    assert not (tmp_path / "run").exists()


def test_device_as_data_file_is_refused() -> None:
    with time_guard(20):
        line = one_line(*invoke(["fit", "/dev/zero", "--circuit", "lowpass"])[:2], 2)
    assert "/dev/zero: is a character device, not a CSV file" in line


# ------------------------------------------------------------------ numbers and names
@pytest.mark.parametrize("cell,words", [
    ("1_000", "'1_000' is not a number"),
    ("\u0661\u0660\u0660\u0660", "is not a number"),       # Arabic-Indic 1000
    ("1e-300", "out of range (at least 0.1)"),
    ("0.05", "out of range (at least 0.1)"),
])
def test_csv_numbers_ascii_and_in_range(tmp_path: Path, cell: str, words: str) -> None:
    p = tmp_path / "d.csv"
    p.write_text(CSV.replace("800,low", f"{cell},low"), encoding="utf-8")
    line = one_line(*invoke(["fit", str(p), "--circuit", "lowpass"])[:2], 2)
    assert f"{p}:3: column 'frequency_hz'" in line and words in line


@pytest.mark.parametrize("cap,words", [
    ("1e-300", "not a plausible capacitor (1 pF..1 F)"),
    ("2", "not a plausible capacitor"),
    ("1_0e-6", "not a number of farads"),
    ("C_bogus=1e-6", "'C_bogus' is not a capacitor of lowpass (known: C_low"),
    ("C_low=1e-6,C_low=2e-6", "given twice"),
])
def test_fit_capacitance_checked(tmp_path: Path, cap: str, words: str) -> None:
    p = tmp_path / "d.csv"
    p.write_text(CSV)
    line = one_line(*invoke(["fit", str(p), "--circuit", "lowpass", "--capacitance", cap])[:2],
                    2)
    assert words in line


@pytest.mark.parametrize("args,words", [
    (["--capacitance", "C_hgh=1e-6"], "'C_hgh' is not a capacitor of color-organ"),
    (["--installed", "R_lo=220"], "'R_lo' is not a resistor of color-organ"),
    (["--seed", "-1"], "--seed"),
    (["--max-tones", "1_000"], "'1_000' is not an integer"),
    (["--level", "-\u0666"], "is not a number"),              # Arabic-Indic 6
    (["--precision", "\u0661%"], "is not a percentage"),
    (["--max-tones", "5"], "--max-tones must be at least"),
])
def test_calibrate_options_refused_before_anything(tmp_path: Path, args: list[str],
                                                   words: str) -> None:
    out = tmp_path / "run"
    line = one_line(*invoke(["calibrate", *FAST, *SIM, "--circuit", "color-organ", *args,
                             "--out", str(out)])[:2], 2)
    assert words in line
    assert not out.exists()


def test_seed_in_a_sim_url_must_be_whole(tmp_path: Path) -> None:
    line = one_line(*invoke(["calibrate", *FAST, "--port", "sim://?board=notebook&seed=-1",
                             "--out", str(tmp_path / "run")])[:2], 2)
    assert "seed must be a whole number >= 0" in line


# ------------------------------------------------------------------ --out
@pytest.mark.parametrize("where,words", [
    ("file", "--out names a file"),
    ("under-file", "a part of the path is a file"),
    ("proc", "cannot create the session folder"),
])
def test_out_that_cannot_be_a_folder(tmp_path: Path, where: str, words: str) -> None:
    f = tmp_path / "f"
    f.write_text("keep me\n")
    out = {"file": f, "under-file": f / "run", "proc": Path("/proc/hostctl-run")}[where]
    line = one_line(*invoke(["calibrate", *FAST, *SIM, "--out", str(out)])[:2], 5)
    assert words in line
    assert f.read_text() == "keep me\n"


# ------------------------------------------------------------------ disk full
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 KiB tmpfs (needs root and mount); unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("disk-full tests mount a 64 KiB tmpfs: needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave_pages: int) -> Path:
    """Fill the tmpfs up to ``leave_pages`` free 4 KiB pages."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    assert free < 4096, free
    os.truncate(filler, max(0, filler.stat().st_size - leave_pages * 4096))
    return filler


def rows_in(session: Path) -> int:
    return sum(1 for ln in session.read_text().splitlines()
               if ln and not ln.startswith(("#", "frequency_hz")))


def test_disk_full_mid_session_keeps_rows_then_resumes(small_disk: Path) -> None:
    filler = fill(small_disk, 2)          # one page for the lock, one for the session
    out = small_disk / "run"              # both mode: ~60 rows, more than a page
    line = one_line(*invoke(["calibrate", *FAST, *SIM, "--mode", "both", "--out",
                             str(out)])[:2], 5)
    session = out / "session.csv"
    text = session.read_text()
    n = rows_in(session)
    assert n > 0 and text.endswith("\n")
    assert line == (f"hostctl: error: disk full: session kept with {n} rows; free space and "
                    f"run --resume {out}")
    filler.unlink()
    code, err, stdout = invoke(["calibrate", "--no-plot", "--json", "--resume", str(out)])
    assert code in (0, 1), err
    assert json.loads(stdout)["run"]["tones"] >= 4      # the reference and the batch
    assert session.read_text().startswith(text)     # nothing before the stop was rewritten


def test_disk_full_before_the_first_row_leaves_nothing(small_disk: Path) -> None:
    fill(small_disk, 0)
    out = small_disk / "run"
    line = one_line(*invoke(["calibrate", *FAST, *SIM, "--out", str(out)])[:2], 5)
    assert "disk full: no room to start the session" in line
    assert not out.exists()           # no empty session.csv (nor folder) left behind


def test_disk_full_never_replaces_a_good_report(small_disk: Path) -> None:
    out = small_disk / "run"
    code, err, _ = invoke(["calibrate", *FAST, *SIM, "--out", str(out)])
    assert code in (0, 1), err
    report = (out / "report.json").read_bytes()
    session = (out / "session.csv").read_bytes()
    fill(small_disk, 0)
    line = one_line(*invoke(["calibrate", "--no-plot", "--json", "--resume", str(out)])[:2], 5)
    # the resume stops at its first write that does not fit (a header note, or the report)
    assert line.startswith("hostctl: error: disk full: ")
    assert (out / "report.json").read_bytes() == report          # the old one, whole
    assert (out / "session.csv").read_bytes().startswith(session)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_report_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import errno

    from hostctl import report

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_all", full)    # ENOSPC while writing report/bode
    out = tmp_path / "run"
    line = one_line(*invoke(["calibrate", *FAST, *SIM, "--out", str(out)])[:2], 5)
    assert "disk full: cannot write the report" in line and "hostctl fit" in line
    assert (out / "session.csv").exists()
