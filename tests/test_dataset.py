"""The measurement CSV format: reading, validation messages, and round trips."""

import math
import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl.dataset import Measurement, MeasurementSet
from hostctl.errors import InputError
from hostctl.sessionlog import Recorder, read_session


def write(tmp_path, text, name="d.csv", mode="w"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return str(p)


def test_reads_gain_led_and_amplitudes(tmp_path):
    p = write(tmp_path, "# board: uno\nfrequency_hz,channel,gain,led,vin_v,vout_v\n"
                        "100,low,0.99,1,,\n200,low,,0,1.0,0.5\n300,high,,1,,\n")
    ms = MeasurementSet.read_csv(p)
    assert ms.meta == {"board": "uno"}
    assert [m.gain for m in ms] == [0.99, 0.5, None]
    assert [m.led for m in ms] == [1, 0, 1]
    assert ms.channels == ["high", "low"]
    assert len(ms.gain_rows()) == 2 and len(ms.led_rows()) == 3


def test_unknown_columns_warn_and_are_ignored(tmp_path):
    p = write(tmp_path, "frequency_hz,channel,gain,colour\n100,low,0.5,red\n")
    with pytest.warns(UserWarning, match="colour"):
        ms = MeasurementSet.read_csv(p)
    assert ms.rows[0].gain == 0.5


@pytest.mark.parametrize("text,where", [
    ("", "no header"),
    ("frequency_hz,gain\n1,2\n", ":1: missing required column 'channel'"),
    ("frequency_hz,channel\n", "no data rows"),
    ("frequency_hz,channel,gain\nabc,low,1\n", ":2: column 'frequency_hz': 'abc' is not a number"),
    ("frequency_hz,channel,gain\n-5,low,1\n", ":2: column 'frequency_hz': -5 must be > 0"),
    ("frequency_hz,channel,gain\n0,low,1\n", ":2: column 'frequency_hz'"),
    ("frequency_hz,channel,gain\nnan,low,1\n", "not a finite number"),
    ("frequency_hz,channel,gain\n10,low,inf\n", ":2: column 'gain': 'inf' is not a finite"),
    ("frequency_hz,channel,gain\n10,low,-1\n", "must be >= 0"),
    ("frequency_hz,channel,led\n10,low,2\n", ":2: column 'led': LED state must be 0 or 1"),
    ("frequency_hz,channel,gain\n10,low\n", ":2: 2 fields, header has 3"),
    ("frequency_hz,channel,channel\n10,low,low\n", "duplicated column 'channel'"),
    ("frequency_hz,channel\n10,\n", "channel is empty"),
])
def test_bad_files_name_file_line_and_column(tmp_path, text, where):
    p = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        MeasurementSet.read_csv(p)
    assert str(e.value).startswith(p)
    assert where in str(e.value)
    assert "\n" not in str(e.value)


def test_not_utf8_and_binary_and_missing(tmp_path):
    with pytest.raises(InputError, match="not UTF-8"):
        MeasurementSet.read_csv(write(tmp_path, b"frequency_hz,channel\n\xff\xfe,low\n"))
    with pytest.raises(InputError, match="NUL"):
        MeasurementSet.read_csv(write(tmp_path, b"\x00\x01\x02", "b.csv"))
    with pytest.raises(InputError, match="no such file"):
        MeasurementSet.read_csv(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="directory"):
        MeasurementSet.read_csv(tmp_path)


finite = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)
freq = st.floats(min_value=0.1, max_value=1e6, allow_nan=False)   # MIN_FREQUENCY_HZ up


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(freq, st.sampled_from(["low", "band", "high"]),
                          st.one_of(st.none(), finite),
                          st.one_of(st.none(), st.sampled_from([0, 1]))),
                min_size=1, max_size=20))
def test_round_trip_is_exact(rows):
    ms = MeasurementSet([Measurement(f, ch, gain=g, led=l) for f, ch, g, l in rows], {"k": "v"})
    back = MeasurementSet.parse_csv(ms.to_csv())
    assert back.rows == ms.rows and back.meta == {"k": "v"}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_either_parses_or_raises_input_error(text):
    try:
        MeasurementSet.parse_csv(text, "fuzz.csv")
    except InputError as e:
        assert str(e).startswith("fuzz.csv") and "\n" not in str(e)


def test_recorder_appends_and_survives_partial_last_line(tmp_path):
    p = tmp_path / "session.csv"
    with Recorder(p, {"circuit": "lowpass"}) as rec:
        rec.append([Measurement(100.0, "low", gain=0.9, led=1)])
        rec.append([Measurement(200.0, "low", gain=0.6, led=0)])
    with open(p, "a") as fh:           # a kill in the middle of a row
        fh.write("300.0,lo")
    ms = read_session(p)
    assert [m.frequency_hz for m in ms] == [100.0, 200.0]
    assert ms.meta["circuit"] == "lowpass"
    with Recorder(p, resume=True) as rec:
        rec.append([Measurement(300.0, "low", gain=0.4, led=0)])
    assert [m.frequency_hz for m in read_session(p)] == [100.0, 200.0, 300.0]
    with pytest.raises(InputError, match="exists already"):
        Recorder(p, {})


def _wait_lines(path, n: int, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Until ``path`` has ``n`` lines (generous time-out: only a stuck writer ends it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"the writer wrote fewer than {n} lines to {path} (exit {proc.poll()})")


def test_kill_at_random_points_leaves_a_readable_session(tmp_path):
    """A writer process is SIGKILLed mid-stream; the file always reads back cleanly."""
    code = (
        "import sys\n"
        "from hostctl.sessionlog import Recorder\n"
        "from hostctl.dataset import Measurement\n"
        "r = Recorder(sys.argv[1], {'circuit': 'lowpass'})\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    r.append([Measurement(float(i), 'low', gain=1.0 / i, led=i % 2)])\n"
    )
    for k in range(4):
        p = tmp_path / f"s{k}.csv"
        proc = subprocess.Popen([sys.executable, "-c", code, str(p)])
        # kill once it has written a different number of rows each time (waiting on the
        # file, not on a guess of how fast a busy machine starts Python)
        _wait_lines(p, 20 + 150 * k, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ms = read_session(p)
        n = len(ms)
        assert n > 0
        assert [m.frequency_hz for m in ms] == [float(i) for i in range(1, n + 1)]
        assert all(math.isclose(m.gain, 1.0 / m.frequency_hz) for m in ms)
